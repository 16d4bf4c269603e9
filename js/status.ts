// Current operation: phase, token k of N, decode tokens/s, elapsed, energy so far, and Stop.

import { badge, h } from "./dom";
import { fmtEnergy, fmtMs, fmtNum } from "./format";
import { label } from "./names";
import type { RunStore } from "./store";

export interface StatusItem {
  label: string;
  value: string;
  kind?: string;
  scope?: string | null;
}

/**
 * The status line's fields. The rate is the summary's `decode_tokens_per_s` (decode tokens over
 * the time from the first to the last token), named as the summary names it. Energy so far is
 * over the run's window (first non-baseline phase to the latest token or phase end), clipped to
 * the power curve: never the readings after the run.
 */
export function statusItems(s: RunStore): StatusItem[] {
  const m = s.meta;
  const st = s.status.status;
  const live = st === "running" || st === "pending";
  const open = [...s.phases].reverse().find((p) => p.end_ms === null);
  const phase = open ? open.name : s.phases.length ? s.phases[s.phases.length - 1].name : "–";
  const n = s.nTokens;
  const N = m?.max_new_tokens;
  const w = s.runWindow();
  const tps = n > 1 ? (n - 1) / ((s.tokEnd.data[n - 1] - s.tokEnd.data[0]) / 1000) : NaN;
  const info = s.powerInfo();
  return [
    { label: "phase", value: live ? phase : st },
    { label: "token", value: N ? `${n} / ${N}` : String(n) },
    { label: label(m, "decode_tokens_per_s"), value: fmtNum(tps, "", 3), kind: "measured" },
    { label: "elapsed", value: fmtMs(w.end - w.start), kind: "measured" },
    { label: "energy so far", value: fmtEnergy(s.energySoFar()), kind: info.kind, scope: info.scope },
  ];
}

export class StatusBar {
  el = h("div", "lew-status");
  private title = h("div", "lew-run-title");
  private fields = h("div", "lew-fields");
  private stop = h("button", "lew-stop", "Stop");
  private error = h("div", "lew-error");
  private drawnVersion = -1;
  private stopping = false;

  constructor(private store: RunStore, private onStop: (() => void) | null) {
    this.stop.type = "button";
    this.stop.title = "Stop the generation; the run keeps what it measured";
    this.stop.addEventListener("click", () => {
      if (!this.onStop) return;
      this.stopping = true;
      this.onStop();
      this.drawnVersion = -1;
      this.draw();
    });
    const row = h("div", "lew-status-row");
    row.append(this.title, this.stop);
    this.error.hidden = true;
    this.error.setAttribute("role", "alert");
    this.el.append(row, this.fields, this.error);
  }

  draw(): void {
    const s = this.store;
    if (s.version === this.drawnVersion) return;
    this.drawnVersion = s.version;
    const m = s.meta;
    const st = s.status.status;
    const live = st === "running" || st === "pending";
    if (!live) this.stopping = false;
    this.title.replaceChildren(
      h("strong", "", m?.model ?? "no run yet"),
      h("span", "lew-muted", m ? ` · run ${m.run_id} · ` : ""),
      h("span", `lew-state lew-state-${st}`, this.stopping ? "stopping…" : st),
      ...(s.status.reason && !live ? [h("span", "lew-muted", ` (${s.status.reason})`)] : []),
    );
    this.stop.hidden = !this.onStop || !m;
    this.stop.disabled = !live || this.stopping;
    this.fields.replaceChildren(
      ...statusItems(s).map((it) => {
        const f = h("span", "lew-field");
        f.append(h("span", "lew-muted", `${it.label} `), h("span", "lew-value", it.value));
        if (it.kind) f.append(badge(it.kind, it.scope));
        return f;
      }),
    );
    this.error.hidden = !s.error;
    this.error.textContent = s.error ? `Error: ${s.error.message}` : "";
  }
}
