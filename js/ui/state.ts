// What the user chose in the views (metric, colour scale, token shown, hidden rails): kept per
// widget model, so a new run on the same widget and a re-render of its output keep them. It is
// UI-only state: it never goes to the kernel.

export type HeatScale = "robust" | "linear" | "log";
export type TokenMode = "latest" | "token" | "mean";

export class ViewState {
  /** The heatmap's metric by name (a new run may list its metrics in another order). */
  metric: string | null = null;
  scale: HeatScale = "robust";
  /** null: the default, the latest token while the run is live and the mean once it is done. */
  mode: TokenMode | null = null;
  /** The token picked (slider or click); -1: none yet. */
  token = -1;
  hiddenRails = new Set<string>();
  private listeners = new Set<() => void>();

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Every view of the model shows the change. */
  set(patch: Partial<Pick<ViewState, "metric" | "scale" | "mode" | "token">>): void {
    Object.assign(this, patch);
    lastChosen = this;
    this.listeners.forEach((cb) => cb());
  }

  toggleRail(name: string): void {
    if (!this.hiddenRails.delete(name)) this.hiddenRails.add(name);
    lastChosen = this;
    this.listeners.forEach((cb) => cb());
  }
}

// A finished run's output is replaced by its saved view (another model), and a new run shows in a
// new output: both start from the choices the user made last on this page.
let lastChosen: ViewState | null = null;

/** A view state seeded with the user's latest choices on this page (defaults if none yet). */
export function newViewState(): ViewState {
  const v = new ViewState();
  if (lastChosen) {
    v.metric = lastChosen.metric;
    v.scale = lastChosen.scale;
    v.mode = lastChosen.mode;
    v.token = lastChosen.token;
    v.hiddenRails = new Set(lastChosen.hiddenRails);
  }
  return v;
}
