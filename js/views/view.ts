// The one interface every panel of the widget implements: the widget places each view's element
// and, on every animation frame, asks each to draw what changed in the run store.

export interface View {
  /** The panel's root element, placed by the widget. */
  readonly el: HTMLElement;
  /**
   * Draw what changed since the last call (the store's version, the user's choices, the width);
   * `tick`: the clock moved on with nothing else changed. False while hidden (width 0): nothing
   * was drawn, and the widget asks again on the next frames.
   */
  draw(tick?: boolean): boolean;
  /** Draw again on the next call even if nothing it shows changed (a new theme, say). */
  invalidate(): void;
  /** The view goes away: it lets go of what it shows outside its element (its tooltip). */
  destroy(): void;
}
