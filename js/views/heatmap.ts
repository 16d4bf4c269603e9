// Layer x component heatmap: a metric and a colour scale, the token shown (latest, any, or the
// mean over the decode tokens), and what the layers leave out: the token's time and energy
// outside them.

import type { Tooltip } from "../ui/dom";
import { h, keepKeys } from "../ui/dom";
import { fmtEnergy, fmtMetric, fmtMs, fmtPct } from "../format";
import { layerFamily, layerKind, metricLabel, outsideName } from "../ui/names";
import type { RunStore } from "../run_store";
import { colormap, fitCanvas, readTheme, rgb } from "../theme";
import type { HeatScale, TokenMode, ViewState } from "../ui/state";
import type { View } from "./view";

export type { HeatScale, TokenMode } from "../ui/state";
const PAD = { l: 40, r: 86, t: 70, b: 16 };
const SCALES: [HeatScale, string][] = [
  ["robust", "robust scale (2–98 %)"],
  ["linear", "full range"],
  ["log", "log scale"],
];
const ROBUST = [0.02, 0.98];

/**
 * What the mean shows: the decode tokens only (the prefill token carries the whole prompt); with
 * sampled instrumentation, the instrumented ones of them (bare tokens have no row).
 */
export function meanLabel(s: RunStore): string {
  return s.nBare > 0
    ? `mean over ${s.meanTokens} instrumented tokens of ${s.decodeTokens} decode tokens (prefill excluded)`
    : `mean over ${s.meanTokens} decode tokens (prefill excluded)`;
}

/**
 * The token the heatmap shows for a pick: the pick itself when it has a row, else (a bare token,
 * or past the rows) the nearest token that has one, the earlier on a tie; -1: none yet.
 */
export function layerToken(s: RunStore, pick: number): number {
  const list = s.layerTokens();
  if (!list.length) return -1;
  let best = list[0];
  for (const t of list) if (Math.abs(t - pick) < Math.abs(best - pick)) best = t;
  return best;
}

/** "token 12 (instrumented 3 of 5; 24 tokens)": where a sampled run's token is among its rows. */
export function tokenLabel(s: RunStore, t: number): string {
  const head = `token ${t}${s.tokText[t] !== undefined ? `: ${JSON.stringify(s.tokText[t])}` : ""}`;
  if (!(s.nBare > 0)) return head;
  const list = s.layerTokens();
  return `${head} (instrumented ${list.indexOf(t) + 1} of ${list.length}; ${s.nTokens} tokens)`;
}

/** The colour scale of one matrix: values in [lo, hi] spread over the colormap, on a log axis or not. */
export interface ColorScale {
  kind: HeatScale;
  lo: number;
  hi: number;
  /** Values below lo / above hi exist and are drawn at the end colour ("≤ lo", "≥ hi"). */
  clipLo: boolean;
  clipHi: boolean;
}

/**
 * The scale of `values` (NaN: no value). "robust": between the 2nd and 98th percentiles, taken
 * inward (nearest rank), so one outlier cell cannot flatten the others; "linear": min to max;
 * "log": the positive values' min to max on a log axis (zeros drawn at the low end).
 */
export function colorScale(values: ArrayLike<number>, kind: HeatScale): ColorScale {
  const v: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x === x && (kind !== "log" || x > 0)) v.push(x);
  }
  v.sort((a, b) => a - b);
  const n = v.length;
  if (!n) return { kind, lo: 0, hi: 1, clipLo: false, clipHi: false };
  let lo = v[0];
  let hi = v[n - 1];
  if (kind === "robust") {
    const a = v[Math.ceil(ROBUST[0] * (n - 1))];
    const b = v[Math.floor(ROBUST[1] * (n - 1))];
    if (b > a) [lo, hi] = [a, b];
  }
  let clipLo = v[0] < lo;
  if (kind === "log") {
    for (let i = 0; i < values.length; i++) if (values[i] <= 0) clipLo = true;
  }
  return { kind, lo, hi, clipLo, clipHi: v[n - 1] > hi };
}

/** Where value x falls on the scale, in [0, 1] (NaN: no value). */
export function scalePos(s: ColorScale, x: number): number {
  if (x !== x) return NaN;
  if (s.kind === "log") {
    if (!(x > 0)) return 0;
    const span = Math.log(s.hi / s.lo);
    return span > 0 ? Math.min(1, Math.max(0, Math.log(x / s.lo) / span)) : 0.5;
  }
  const span = s.hi - s.lo;
  return span > 0 ? Math.min(1, Math.max(0, (x - s.lo) / span)) : 0.5;
}

/**
 * The caption: which token (or the mean), then how much of it the layers cover and what is left
 * outside them, so the cells are read as the part of the token they are.
 */
export function heatCaption(s: RunStore, mode: TokenMode, t: number, metric: string): string[] {
  const out = outsideName(s.meta);
  if (mode === "mean") {
    const m = s.meanCoverage();
    return [
      meanLabel(s),
      `layers cover ${fmtPct(m.coverage)} of token time · ${out}: ${fmtMs(m.outsideMs)}, ` +
        `${fmtEnergy(m.outsideJ)} per token`,
    ];
  }
  const head = tokenLabel(s, t);
  const saved = savedNote(s, t, metric);
  if (saved && !s.hasLayers(t)) return [head, saved];
  const cov = s.coverage(t);
  if (cov !== cov) return [head];
  return [
    head,
    `layers cover ${fmtPct(cov)} of ${fmtMs(s.tokenMs(t))} · ${out}: ${fmtMs(s.outsideMs(t))}, ` +
      `${fmtEnergy(s.outsideJ(t))}` +
      (metric === "energy_j" ? ` · cells sum to ${fmtEnergy(s.tokEnergy.data[t] * cov)} of ${fmtEnergy(s.tokEnergy.data[t])}` : "") +
      (saved ? ` · ${saved}` : ""),
  ];
}

/** A layer's short name, as on the axis: "layers.16" -> "L16". */
export function shortLayer(name: string): string {
  const m = name.match(/(\d+)$/);
  return m ? `L${m[1]}` : name.slice(-8);
}

/** What a saved snapshot left out of token t's row, for `metric` (null: nothing). */
export function savedNote(s: RunStore, t: number, metric: string): string | null {
  const sv = s.saved;
  if (!sv) return null;
  if (s.rowLeftOut(t)) {
    return `its layer row is not in this saved view (times kept for ${sv.rows.time} of ${sv.rows.of} tokens; the mean is exact; run.layers has every row)`;
  }
  if (s.timesOnly(t) && metric !== "time_ms" && metric !== "energy_j") {
    return "a single token's activation statistics are not in this saved view (their mean is; run.layers has them)";
  }
  return null;
}

/** The tooltip of cell (l, c): "L16 · attention", its value with unit, kind, and how exact it is. */
export function cellTip(
  s: RunStore,
  mode: TokenMode,
  t: number,
  metricIdx: number,
  l: number,
  c: number,
  value: number,
): string[] {
  const metric = s.metricNames[metricIdx] ?? "";
  const k = layerKind(s.meta, metric);
  const kind = metric === "energy_j" ? `${k}: token energy × cell time / token time` : k;
  const where = mode === "mean" ? meanLabel(s) : `token ${t}`;
  const lines = [
    `${shortLayer(s.meta?.layer_names[l] ?? String(l))} · ${s.meta?.component_names[c] ?? c}`,
    `${metricLabel(s.meta, metric)}: ${fmtMetric(metric, value)}`,
    `${where} · ${kind}`,
  ];
  if (mode !== "mean" && metric === "energy_j") {
    lines.push(`token energy ${fmtEnergy(s.tokEnergy.data[t])} · ${outsideName(s.meta)} ${fmtEnergy(s.outsideJ(t))}`);
  }
  if (mode === "mean" && s.meanIsExact(metricIdx)) {
    lines.push("the exact mean of run.layers (float32), saved with the run");
    return lines;
  }
  const saved = mode === "mean" ? null : savedNote(s, t, metric);
  if (saved && value !== value) {
    lines.push(saved);
    return lines;
  }
  const p = mode === "mean" ? s.worstPrecision(metricIdx) : s.precision(t, metricIdx);
  lines.push(
    p === p
      ? `within ±${fmtPct(p, 2)} of run.layers (8-bit log scale)`
      : "8-bit linear display precision; exact values in run.layers",
  );
  return lines;
}

/** The colour bar's end labels: "≥ 18.9 mJ" where cells above the scale are drawn at its end. */
export function scaleLabels(sc: ColorScale, metric: string): { hi: string; lo: string } {
  return {
    hi: `${sc.clipHi ? "≥ " : ""}${fmtMetric(metric, sc.hi)}`,
    lo: `${sc.clipLo ? "≤ " : ""}${fmtMetric(metric, sc.lo)}`,
  };
}

export class Heatmap implements View {
  el = h("div", "lew-panel lew-heatmap");
  private canvas = h("canvas", "lew-canvas");
  private metricSel = h("select", "lew-select");
  private scaleSel = h("select", "lew-select");
  private modeSel = h("select", "lew-select");
  private slider = h("input", "lew-slider");
  private caption = h("div", "lew-caption");
  private captionSub = h("div", "lew-caption-sub");
  private empty = h("div", "lew-empty", "No layer data in this run (profile with level ≥ layer).");
  private drawn = "";
  private metricsKey = "";
  private liveLabel = "";
  private geom = { cw: 0, ch: 0, L: 0, C: 0 };

  constructor(private store: RunStore, private tip: Tooltip, private ui: ViewState) {
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.step = "1";
    this.slider.setAttribute("aria-label", "token");
    for (const [v, label] of [["latest", "latest token (live)"], ["token", "token…"], ["mean", "mean over decode tokens"]]) {
      const o = h("option", "", label);
      o.value = v;
      this.modeSel.append(o);
    }
    for (const [v, label] of SCALES) {
      const o = h("option", "", label);
      o.value = v;
      this.scaleSel.append(o);
    }
    this.metricSel.setAttribute("aria-label", "metric");
    this.scaleSel.setAttribute("aria-label", "colour scale");
    this.scaleSel.title = "robust: from the 2nd to the 98th percentile of the cells shown, so one outlier does not flatten the rest";
    this.modeSel.setAttribute("aria-label", "token shown");
    for (const el of [this.slider, this.metricSel, this.scaleSel, this.modeSel]) keepKeys(el);
    this.metricSel.addEventListener("change", () => {
      this.ui.set({ metric: this.store.metricNames[Number(this.metricSel.value)] ?? null });
    });
    this.scaleSel.addEventListener("change", () => this.ui.set({ scale: this.scaleSel.value as HeatScale }));
    this.modeSel.addEventListener("change", () => {
      const mode = this.modeSel.value as TokenMode;
      this.ui.set(mode === "token" ? { mode, token: this.shownToken() } : { mode });
    });
    // the slider steps over the tokens that have a layer row (never a bare token)
    this.slider.addEventListener("input", () => {
      const list = this.store.layerTokens();
      this.showToken(list[Number(this.slider.value)] ?? Number(this.slider.value));
    });
    const head = h("div", "lew-panel-head");
    head.append(h("span", "lew-title", "Layer × component"), this.metricSel, this.scaleSel, this.modeSel, this.slider);
    this.el.append(head, this.caption, this.captionSub, this.canvas, this.empty);
    this.canvas.addEventListener("mousemove", (ev) => this.onMove(ev));
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
  }

  showToken(i: number): void {
    this.ui.set({ mode: "token", token: i });
  }

  /** The metric shown: the one chosen by name, else time (the measured one). */
  get metric(): number {
    const names = this.store.metricNames;
    const i = this.ui.metric === null ? -1 : names.indexOf(this.ui.metric);
    return i >= 0 ? i : Math.max(0, names.indexOf("time_ms"));
  }

  /** The user's choice, else the latest token while the run is live and the mean once done. */
  get mode(): TokenMode {
    const s = this.store;
    if (this.ui.mode) return this.ui.mode;
    return s.live || s.meanTokens === 0 ? "latest" : "mean";
  }

  /** The token shown: the latest with a row, or the pick (a bare pick: its nearest with a row). */
  shownToken(): number {
    const s = this.store;
    const list = s.layerTokens();
    if (this.mode === "latest" || this.ui.token < 0) return list.length ? list[list.length - 1] : Math.max(0, s.nRows - 1);
    return list.length ? layerToken(s, this.ui.token) : Math.min(this.ui.token, Math.max(0, s.nRows - 1));
  }

  /** The matrix value shown at (l, c) for the current metric and token mode. */
  valueAt(l: number, c: number): number {
    const s = this.store;
    return this.mode === "mean" ? s.mean(l, c, this.metric) : s.value(this.shownToken(), l, c, this.metric);
  }

  private syncControls(): void {
    const s = this.store;
    const key = s.metricNames.join(",");
    if (key !== this.metricsKey) {
      this.metricsKey = key;
      const labels = s.meta?.labels ?? {};
      this.metricSel.replaceChildren(
        ...s.metricNames.map((m, i) => {
          const kind = labels[layerFamily(m)];
          const o = h("option", "", `${metricLabel(s.meta, m)}${kind ? ` (${kind})` : ""}`);
          o.value = String(i);
          return o;
        }),
      );
    }
    // once the run is done there is no "live": the option says what it shows then
    const liveLabel = s.live ? "latest token (live)" : "last token";
    if (liveLabel !== this.liveLabel) this.modeSel.options[0].textContent = this.liveLabel = liveLabel;
    this.metricSel.value = String(this.metric);
    this.scaleSel.value = this.ui.scale;
    this.modeSel.value = this.mode;
    const list = s.layerTokens();
    const shown = this.shownToken();
    this.slider.max = String(Math.max(0, list.length - 1));
    this.slider.value = String(Math.max(0, list.indexOf(shown)));
    this.slider.setAttribute("aria-valuetext", `token ${shown}`);
  }

  /** Draw again on the next frame even if nothing it shows changed (a new theme, say). */
  invalidate(): void {
    this.drawn = "";
  }

  destroy(): void {
    this.tip.hide();
  }

  /** False while hidden (width 0): nothing drawn, to be drawn when shown at its real width. */
  draw(): boolean {
    const s = this.store;
    const w = this.el.clientWidth;
    if (w === 0) return false;
    const key = `${s.version}|${w}|${this.metric}|${this.mode}|${this.shownToken()}|${this.ui.token}|${this.ui.scale}`;
    if (key === this.drawn) return true;
    this.drawn = key;
    this.syncControls();
    const L = s.L;
    const C = s.C;
    const has = L > 0 && C > 0 && s.layerTokens().length > 0;
    this.empty.hidden = has || (L > 0 && C > 0);
    this.canvas.hidden = !has;
    if (!has) {
      this.caption.textContent = L > 0 && C > 0 ? `waiting for the first ${s.nBare ? "instrumented " : ""}token…` : "";
      this.captionSub.textContent = "";
      return true;
    }
    const th = readTheme(this.el);
    const ch = Math.max(6, Math.min(18, Math.floor(320 / L)));
    const H = PAD.t + L * ch + PAD.b;
    const ctx = fitCanvas(this.canvas, w, H);
    ctx.clearRect(0, 0, w, H);
    const cw = Math.max(8, (w - PAD.l - PAD.r) / C);
    this.geom = { cw, ch, L, C };
    const vals = new Float64Array(L * C);
    for (let l = 0; l < L; l++) for (let c = 0; c < C; c++) vals[l * C + c] = this.valueAt(l, c);
    const sc = colorScale(vals, this.ui.scale);
    for (let l = 0; l < L; l++) {
      for (let c = 0; c < C; c++) {
        const v = vals[l * C + c];
        ctx.fillStyle = v === v ? rgb(colormap(scalePos(sc, v))) : th.grid;
        ctx.fillRect(PAD.l + c * cw, PAD.t + l * ch, Math.ceil(cw) - 1, ch - 1);
      }
    }
    ctx.fillStyle = th.muted;
    ctx.font = `10px ${th.font}`;
    ctx.textAlign = "right";
    const every = Math.ceil(11 / ch);
    const names = s.meta?.layer_names ?? [];
    for (let l = 0; l < L; l += every) {
      ctx.fillText(shortLayer(names[l] ?? String(l)), PAD.l - 4, PAD.t + l * ch + ch / 2 + 3);
    }
    ctx.textAlign = "left";
    const comps = s.meta?.component_names ?? [];
    // rotated labels need about 8 px each: thin them out on a narrow panel
    const stepC = Math.ceil(9 / cw);
    for (let c = 0; c < C; c += stepC) {
      ctx.save();
      ctx.translate(PAD.l + c * cw + cw / 2, PAD.t - 4);
      ctx.rotate(-Math.PI / 4);
      ctx.fillText(shortComp(comps[c] ?? String(c)), 0, 0);
      ctx.restore();
    }
    const metric = s.metricNames[this.metric] ?? "";
    const bx = PAD.l + C * cw + 10;
    for (let y = 0; y < L * ch; y++) {
      ctx.fillStyle = rgb(colormap(1 - y / (L * ch)));
      ctx.fillRect(bx, PAD.t + y, 10, 1);
    }
    const lab = scaleLabels(sc, metric);
    ctx.fillStyle = th.muted;
    ctx.fillText(lab.hi, bx + 14, PAD.t + 8);
    ctx.fillText(lab.lo, bx + 14, PAD.t + L * ch);
    if (sc.kind === "log") ctx.fillText("log", bx + 14, PAD.t + (L * ch) / 2 + 3);
    const [head, sub] = heatCaption(s, this.mode, this.shownToken(), metric);
    const pick = this.ui.token;
    // a bare token picked (in the token stream, the power chart): say what is shown instead
    this.caption.textContent =
      this.mode === "token" && s.instrumented(pick) === false
        ? `token ${pick} ran bare (no layer row): showing ${head}`
        : head;
    this.captionSub.textContent = sub ?? "";
    return true;
  }

  private onMove(ev: MouseEvent): void {
    const s = this.store;
    const box = this.canvas.getBoundingClientRect();
    const { cw, ch, L, C } = this.geom;
    const c = Math.floor((ev.clientX - box.left - PAD.l) / cw);
    const l = Math.floor((ev.clientY - box.top - PAD.t) / ch);
    if (c < 0 || c >= C || l < 0 || l >= L) {
      this.tip.hide();
      return;
    }
    this.tip.show(ev, cellTip(s, this.mode, this.shownToken(), this.metric, l, c, this.valueAt(l, c)));
  }
}

function shortComp(name: string): string {
  return name.replace(/_proj$/, "").replace("post_attention_layernorm", "post_attn_ln").replace("input_layernorm", "input_ln");
}
