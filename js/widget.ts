// Entry point: anywidget's { initialize, render }, plus `staticModel` for the offline report.

import { fromBase64 } from "./codec";
import { h, Tooltip } from "./ui/dom";
import { Heatmap } from "./views/heatmap";
import { PowerChart } from "./views/power_chart";
import { RunStore } from "./run_store";
import { StatusBar } from "./views/status";
import { SummaryCards } from "./views/summary";
import { clearThemeCache } from "./theme";
import { TokenStream } from "./views/tokens";
import type { View } from "./views/view";
import type { AnyWidget } from "@anywidget/types";
import type { Buffer, Header, Meta, ViewModel, WidgetTraits } from "./types";
import { newViewState, ViewState } from "./ui/state";

/** What every view of one widget model shares: the run's data and the user's choices. */
interface Shared {
  store: RunStore;
  ui: ViewState;
}

// anywidget hands initialize and each render a fresh proxy of the model, so the proxy is no key:
// the model's `meta` value is (the same object for every proxy until it changes, and re-keyed
// when it does), so a re-render finds the store and the choices its model already has.
const shared = new WeakMap<object, Shared>();
const MAX_HIDDEN_FRAMES = 60; // about a second of frames
const CLOCK_MS = 100; // the elapsed clock's tick while a phase runs

type Snapshot = WidgetTraits["snapshot"];

function keyOf(model: ViewModel): object {
  const meta = model.get("meta");
  return meta && typeof meta === "object" ? meta : model;
}

function sharedFor(model: ViewModel): Shared | undefined {
  return shared.get(keyOf(model));
}

function applySnapshotTrait(store: RunStore, snap: Snapshot | null | undefined): boolean {
  if (!snap || !snap.header) return false;
  store.receive(snap.header, snap.buffers ?? []);
  return true;
}

/** Once per model: the store every view of this model reads, fed by traits and messages. */
function initialize({ model }: { model: ViewModel }): () => void {
  const sh: Shared = sharedFor(model) ?? { store: new RunStore(), ui: newViewState() };
  shared.set(keyOf(model), sh);
  const store = sh.store;
  const meta = model.get("meta");
  store.reset(meta, false);
  if (!applySnapshotTrait(store, model.get("snapshot")) && store.meta) {
    model.send({ type: "snapshot" }); // a late view of a live run: catch up, then follow deltas
  }
  const onMeta = () => {
    shared.set(keyOf(model), sh);
    store.reset(model.get("meta"), true);
  };
  const onSnap = () => applySnapshotTrait(store, model.get("snapshot"));
  const onMsg = (msg: Header, buffers: Buffer[]) => {
    if (msg && (msg.type === "delta" || msg.type === "snapshot")) store.receive(msg, buffers ?? []);
  };
  model.on("change:meta", onMeta);
  model.on("change:snapshot", onSnap);
  model.on("msg:custom", onMsg);
  return () => {
    model.off("change:meta", onMeta);
    model.off("change:snapshot", onSnap);
    model.off("msg:custom", onMsg);
  };
}

export interface FrameDetail {
  version: number;
  seq: number;
  drawMs: number;
  frameAt: number;
}

function render({ model, el }: { model: ViewModel; el: HTMLElement }): () => void {
  let sh = sharedFor(model);
  let offInit: (() => void) | null = null;
  if (!sh) {
    offInit = initialize({ model });
    sh = sharedFor(model)!;
  }
  const { store, ui } = sh;
  const root = h("div", "lew-root");
  root.dataset.testid = "llm-energy-widget";
  el.replaceChildren(root);
  const tip = new Tooltip(root);
  let raf = 0;
  const schedule = () => {
    if (!raf) raf = requestAnimationFrame(frame);
  };
  const interactive = model.get("_static") !== true;
  const status = new StatusBar(store, interactive ? () => model.send({ type: "stop" }) : null);
  const heat = new Heatmap(store, tip, ui);
  const tokens = new TokenStream(store, tip, (i) => heat.showToken(i));
  const power = new PowerChart(store, tip, schedule, ui, (i) => tokens.highlight(i), (i) => heat.showToken(i));
  const cards = new SummaryCards(store);
  const views: View[] = [status, power, heat, tokens, cards];
  const grid = h("div", "lew-grid");
  grid.append(heat.el, tokens.el);
  root.append(status.el, power.el, grid, cards.el);

  // A chart hidden for a moment (JupyterLab hides outputs while it swaps themes, showing them
  // again within the same frame) is skipped and no resize is ever observed: look again on the
  // next frames, for a while; a longer hide ends with a resize, which schedules a frame.
  let hiddenFrames = 0;
  let tick = false;
  function frame(): void {
    raf = 0;
    const t0 = performance.now();
    // no run yet: nothing but the status line's "no run yet" (no panels claiming data)
    const empty = !store.meta;
    root.classList.toggle("lew-no-run", empty);
    power.el.hidden = grid.hidden = empty;
    status.draw(tick);
    tick = false;
    const shown = empty || [power.draw(), heat.draw()].every(Boolean);
    tokens.draw();
    cards.draw();
    fetchRow();
    if (shown) hiddenFrames = 0;
    else if (hiddenFrames++ < MAX_HIDDEN_FRAMES) schedule();
    const drawMs = performance.now() - t0;
    root.dataset.version = String(store.version);
    const detail: FrameDetail = { version: store.version, seq: store.seq, drawMs, frameAt: Date.now() };
    el.dispatchEvent(new CustomEvent("lew-frame", { detail }));
  }
  // A saved snapshot holds a token's layer times, not its full row: a view with a kernel behind
  // it asks for the row of the token it shows (once each); the answer is applied like a snapshot.
  const asked = new Set<number>();
  const fetchRow = () => {
    if (!interactive || heat.mode === "mean") return;
    const t = heat.shownToken();
    if (t < 0 || asked.has(t) || !(store.rowLeftOut(t) || store.timesOnly(t))) return;
    asked.add(t);
    model.send({ type: "rows", index: [t] });
  };
  const off = store.onChange(schedule);
  const offUi = ui.onChange(schedule);
  // the elapsed clock moves between events while a phase of the run is open
  const clock = setInterval(() => {
    if (!store.working) return;
    tick = true;
    schedule();
  }, CLOCK_MS);
  // The panels themselves: each can go from hidden (width 0) to shown without the root resizing.
  const ro = new ResizeObserver(schedule);
  ro.observe(root);
  ro.observe(power.el);
  ro.observe(heat.el);
  const offTheme = onThemeChange(() => {
    clearThemeCache();
    power.invalidate();
    heat.invalidate();
    schedule();
  });
  schedule();
  return () => {
    off();
    offUi();
    offTheme();
    offInit?.();
    clearInterval(clock);
    ro.disconnect();
    if (raf) cancelAnimationFrame(raf);
    for (const v of views) v.destroy();
    tip.hide();
  };
}

/**
 * Call `fn` when the page's theme changes: JupyterLab's theme attributes on <body>, or the system
 * colour scheme (VS Code and plain pages follow it). Canvases keep the colours they were drawn
 * with, so they must be redrawn. Returns the function that stops watching.
 */
function onThemeChange(fn: () => void): () => void {
  const body = document.body;
  // VS Code marks its theme with body classes (vscode-light, vscode-dark, vscode-high-contrast);
  // other class changes (JupyterLab's drag cursor, say) are no theme change.
  const themeKey = () =>
    [
      body.dataset.jpThemeName,
      body.dataset.jpThemeLight,
      ...[...body.classList].filter((c) => c.startsWith("vscode-")),
    ].join("|");
  let key = themeKey();
  const mo = new MutationObserver(() => {
    const next = themeKey();
    if (next === key) return;
    key = next;
    fn();
  });
  mo.observe(body, {
    attributes: true,
    attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class"],
  });
  const mq = typeof window.matchMedia === "function" ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  mq?.addEventListener("change", fn);
  return () => {
    mo.disconnect();
    mq?.removeEventListener("change", fn);
  };
}

/**
 * A read-only model over data embedded in a page (the HTML report, a saved notebook output): no
 * kernel behind it. Buffers as base64 strings or already decoded.
 */
export function staticModel(data: {
  meta: Meta;
  snapshot: { header: Header; buffers: (string | Buffer)[] };
}): ViewModel {
  const snapshot = {
    header: data.snapshot.header,
    buffers: data.snapshot.buffers.map((b) => (typeof b === "string" ? fromBase64(b) : b)),
  };
  const state: WidgetTraits = { meta: data.meta, snapshot, _static: true };
  return {
    get: (name) => state[name],
    on: () => undefined,
    off: () => undefined,
    send: () => undefined,
  };
}

// The views' text, as pure functions of the store: what the tests check without a browser.
export { cellTip, colorScale, heatCaption, layerToken, meanLabel, scaleLabels, scalePos, tokenLabel } from "./views/heatmap";
export { fmtCost, fmtG, fmtMs } from "./format";
export { kindTip } from "./ui/names";
export { baselineGap, fitLabels, powerTip, sourceNote, timeTicks, tokenAt } from "./views/power_chart";
export { overheadText, statusItems } from "./views/status";
export { basisShort, rangeText, summaryCards, summaryNote } from "./views/summary";
export { PHASE_FILL } from "./theme";
export { nextTokenScale, tokenParts, tokenTip } from "./views/tokens";
export { ViewState };
export { RunStore };
export default { initialize, render } satisfies AnyWidget<WidgetTraits>;
