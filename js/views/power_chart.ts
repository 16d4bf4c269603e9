// Power against time: rails and total, phase bands, the token lane, a hover readout that names
// the token at that time, drag to zoom (double-click or the button to reset), and the source.

import type { Tooltip } from "../ui/dom";
import { badge, h } from "../ui/dom";
import { fmtEnergy, fmtMs, fmtNum, fmtWindow, ticks } from "../format";
import { definition, kindText, kindTip } from "../ui/names";
import { POWER_COLS } from "../protocol";
import type { RunStore } from "../run_store";
import { fitCanvas, readTheme } from "../theme";
import type { Theme } from "../theme";
import type { Meta } from "../types";
import type { ViewState } from "../ui/state";
import type { View } from "./view";



const RAIL_LABELS: Record<string, string> = {
  total_w: "total",
  cpu_w: "CPU",
  gpu_w: "GPU",
  ane_w: "ANE",
  dram_w: "DRAM",
};
const LANE = 8; // the token lane under the plot: one band per token, alternating shades
const PAD = { l: 44, r: 10, t: 8, b: 22 + LANE + 8 };
const HEIGHT = 210;
const MIN_DRAG_PX = 5;
const MIN_GAP_MS = 1;
const laneY = (ph: number) => PAD.t + ph + 7;

/** One draw's canvas, theme, axes (X: s -> px, Y: W -> px) and the samples and rails in view. */
interface Frame {
  ctx: CanvasRenderingContext2D;
  th: Theme;
  measure: (text: string) => number;
  x0: number;
  x1: number;
  pw: number;
  ph: number;
  ymax: number;
  X: (s: number) => number;
  Y: (w: number) => number;
  t: Float64Array;
  i0: number;
  i1: number;
  rails: string[];
  shown: string[];
  same: Set<string>;
}

/** The watt columns the kernel sends (meta.power_cols), the total last: drawn first, under the rails. */
export function railCols(meta: Meta | null | undefined): string[] {
  const cols = (meta?.power_cols ?? POWER_COLS).filter((c) => c.endsWith("_w"));
  return [...cols.filter((c) => c !== "total_w"), ...cols.filter((c) => c === "total_w")];
}

/**
 * The source line's text after the badge: the energy figures' real resolution (the source's
 * native one, not the poll interval), the poll interval where it differs, and the power
 * averaging window where readings are averages (NVML: 1 s).
 */
export function sourceNote(s: RunStore): string {
  const p = s.powerInfo();
  const parts: string[] = [];
  if (p.resolution_ms) parts.push(`resolution ${fmtMs(p.resolution_ms)}`);
  if (p.interval_ms && p.resolution_ms && p.interval_ms !== p.resolution_ms) {
    parts.push(`polled every ${fmtMs(p.interval_ms)}`);
  }
  if (p.power_window_ms) parts.push(`power: ${fmtWindow(p.power_window_ms)} average`);
  return parts.join(" · ");
}

/**
 * The time between the baseline's end and the next phase's start (the model's warm-up, a wait):
 * in no phase, so in neither the baseline's power nor the run's energy. null: none (or < 1 ms).
 */
export function baselineGap(s: RunStore): { start_ms: number; end_ms: number; next: string } | null {
  const base = s.phases.find((p) => p.name === "baseline" && p.end_ms !== null);
  if (!base || base.end_ms === null) return null;
  const next = s.phases.find((p) => p !== base && p.start_ms >= base.end_ms!);
  if (!next || next.start_ms - base.end_ms < MIN_GAP_MS) return null;
  return { start_ms: base.end_ms, end_ms: next.start_ms, next: next.name };
}

/** The token whose span [start, end) holds time tMs (-1: none), by bisection on the starts. */
export function tokenAt(s: RunStore, tMs: number): number {
  let lo = 0;
  let hi = s.nTokens - 1;
  if (hi < 0 || tMs < s.tokStart.data[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (s.tokStart.data[mid] <= tMs) lo = mid;
    else hi = mid - 1;
  }
  return tMs <= s.tokEnd.data[lo] ? lo : -1;
}

/** The hover readout at time tMs: the time, the token then (its energy and kind), rails, phase. */
export function powerTip(s: RunStore, tMs: number, rails: string[]): string[] {
  const t = s.col("t_ms");
  let best = 0;
  for (let i = 1; i < s.nPower; i++) if (Math.abs(t[i] - tMs) < Math.abs(t[best] - tMs)) best = i;
  const info = s.powerInfo();
  const lines = [`t = ${(tMs / 1000).toFixed(3)} s`];
  const k = tokenAt(s, tMs);
  if (k >= 0) {
    const kind = kindText(s.meta?.labels?.tokens ?? info.kind, info.scope);
    lines.push(
      `token ${k}: ${JSON.stringify(s.tokText[k] ?? "")} · ${fmtEnergy(s.tokEnergy.data[k])} (${kind}) over ${fmtMs(s.tokenMs(k))}`,
    );
  }
  if (s.nPower) {
    lines.push(`reading at ${(t[best] / 1000).toFixed(3)} s:`);
    for (const r of rails) lines.push(`  ${RAIL_LABELS[r] ?? r}: ${fmtNum(s.col(r)[best], "W")}`);
  }
  const gap = baselineGap(s);
  const phase = s.phases.find((p) => tMs >= p.start_ms && (p.end_ms === null || tMs <= p.end_ms));
  if (phase) {
    const def = definition(s.meta, `${phase.name}_energy_j`);
    lines.push(`phase: ${phase.name}${phase.name === "tail" && def ? ` (${def})` : ""}`);
  } else if (gap && tMs > gap.start_ms && tMs < gap.end_ms) {
    lines.push(
      `gap after the baseline: ${fmtMs(gap.end_ms - gap.start_ms)} before ${gap.next}, in no phase ` +
        "(neither the baseline nor the run's energy)",
    );
  }
  lines.push(`${info.source ?? ""} · ${kindText(info.kind, info.scope)}`);
  return lines;
}

/** Labels that fit: each centred-left at its x, kept only if it fits its width and clears the last one. */
export function fitLabels(
  items: { text: string; x: number; width: number }[],
  measure: (text: string) => number,
  gap = 4,
): { text: string; x: number }[] {
  const out: { text: string; x: number }[] = [];
  let right = -Infinity;
  for (const it of items) {
    const w = measure(it.text);
    if (w + 6 > it.width || it.x < right + gap) continue;
    out.push({ text: it.text, x: it.x });
    right = it.x + w;
  }
  return out;
}

/** Time ticks (s) that do not overlap at this width: as many as the widest label allows. */
export function timeTicks(x0: number, x1: number, pw: number, measure: (text: string) => number): number[] {
  let n = Math.max(2, Math.floor(pw / 80));
  for (let k = 0; k < 4; k++) {
    const vs = ticks(x0, x1, n);
    const widest = Math.max(...vs.map((v) => measure(tickLabel(v))));
    const fit = Math.max(1, Math.floor(pw / (widest + 14)));
    if (vs.length <= fit + 1) return vs;
    n = Math.max(1, fit - 1);
  }
  return ticks(x0, x1, n);
}

export function tickLabel(v: number): string {
  return `${fmtNum(v, "", 3)} s`;
}

export class PowerChart implements View {
  el = h("div", "lew-panel lew-power");
  private canvas = h("canvas", "lew-canvas");
  private legend = h("div", "lew-legend");
  private source = h("div", "lew-source");
  private reset = h("button", "lew-reset", "reset zoom");
  private hoverX: number | null = null;
  private hoverTok = -1;
  private drag: { a: number; b: number } | null = null;
  /** The time window shown (s); null: the whole run, following it live. */
  zoom: [number, number] | null = null;
  private runKey = "";
  private drawnKey = "";
  private legendKey = "";
  private view = { x0: 0, x1: 1, pw: 1 };

  constructor(
    private store: RunStore,
    private tip: Tooltip,
    private redraw: () => void,
    private ui: ViewState,
    private onHoverToken: (i: number) => void,
    private onPickToken: (i: number) => void,
  ) {
    const head = h("div", "lew-panel-head");
    this.reset.type = "button";
    this.reset.hidden = true;
    this.reset.title = "Show the whole run (or double-click the chart)";
    this.reset.addEventListener("click", () => this.setZoom(null));
    head.append(h("span", "lew-title", "Power (W)"), this.legend, this.reset, this.source);
    this.canvas.setAttribute("aria-label", "power against time; drag to zoom, double-click to reset");
    this.el.append(head, this.canvas);
    const c = this.canvas;
    c.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      const px = this.px(ev);
      if (px < PAD.l || px > PAD.l + this.view.pw) return;
      this.drag = { a: px, b: px };
      c.setPointerCapture?.(ev.pointerId);
    });
    c.addEventListener("pointermove", (ev) => {
      if (this.drag) {
        this.drag.b = Math.max(PAD.l, Math.min(PAD.l + this.view.pw, this.px(ev)));
        this.tip.hide();
        this.dirty();
        return;
      }
      this.onMove(ev);
    });
    c.addEventListener("pointerup", (ev) => {
      const d = this.drag;
      this.drag = null;
      if (!d) return;
      if (Math.abs(d.b - d.a) >= MIN_DRAG_PX) {
        const a = this.timeAt(Math.min(d.a, d.b));
        const b = this.timeAt(Math.max(d.a, d.b));
        this.setZoom([a, b]);
      } else {
        // a click: show the token at that time in the heatmap
        const k = tokenAt(this.store, this.timeAt(this.px(ev)) * 1000);
        if (k >= 0) this.onPickToken(k);
        this.dirty();
      }
    });
    c.addEventListener("dblclick", () => this.setZoom(null));
    c.addEventListener("pointerleave", () => {
      if (this.drag) return;
      this.hoverX = null;
      this.setHoverToken(-1);
      this.tip.hide();
      this.dirty();
    });
  }

  private px(ev: MouseEvent): number {
    return ev.clientX - this.canvas.getBoundingClientRect().left;
  }

  private timeAt(px: number): number {
    const { x0, x1, pw } = this.view;
    return x0 + ((px - PAD.l) / pw) * (x1 - x0);
  }

  private setZoom(z: [number, number] | null): void {
    this.zoom = z;
    this.dirty();
  }

  private dirty(): void {
    this.drawnKey = "";
    this.redraw();
  }

  private setHoverToken(i: number): void {
    if (i === this.hoverTok) return;
    this.hoverTok = i;
    this.onHoverToken(i);
  }

  /** Rails with readings, total last (it is drawn first, under the others). */
  private rails(): string[] {
    const s = this.store;
    const out: string[] = [];
    for (const name of railCols(s.meta)) {
      const col = s.col(name);
      for (let i = 0; i < s.nPower; i++) {
        if (col[i] === col[i]) {
          out.push(name);
          break;
        }
      }
    }
    return out;
  }

  /** Rails that coincide with the total (a one-rail source): drawn dashed so both show. */
  private sameAsTotal(rails: string[]): Set<string> {
    const s = this.store;
    const tot = s.col("total_w");
    const out = new Set<string>();
    for (const r of rails) {
      if (r === "total_w") continue;
      const col = s.col(r);
      let same = s.nPower > 0;
      for (let i = 0; i < s.nPower && same; i++) {
        const a = col[i];
        const b = tot[i];
        if (a === a && b === b && Math.abs(a - b) > 0.005 * Math.max(Math.abs(b), 1e-9)) same = false;
      }
      if (same) out.add(r);
    }
    return out;
  }

  private fullDomain(): [number, number] {
    const s = this.store;
    const t = s.col("t_ms");
    let t1 = s.nPower ? t[s.nPower - 1] : 1;
    const t0 = s.nPower ? Math.min(t[0], s.phases.length ? s.phases[0].start_ms : t[0]) : 0;
    if (s.nTokens) t1 = Math.max(t1, s.tokEnd.data[s.nTokens - 1]);
    return [t0 / 1000, Math.max(t1 / 1000, t0 / 1000 + 1e-3)];
  }

  /** Draw again on the next frame even if the data did not change (a new theme, say). */
  invalidate(): void {
    this.drawnKey = "";
  }

  destroy(): void {
    this.drag = null;
    this.tip.hide();
  }

  /** False while hidden (width 0): nothing drawn, to be drawn when shown at its real width. */
  draw(): boolean {
    const w = this.el.clientWidth;
    if (w === 0) return false;
    this.followRun();
    if (!this.needsDraw(w)) return true;
    const f = this.layout(w);
    const gap = baselineGap(this.store);
    this.drawBands(f, gap);
    this.drawAxes(f);
    this.clipped(f, () => {
      this.drawTokenLane(f);
      this.drawRails(f);
      this.drawCursor(f);
    });
    this.drawLegend(f.rails, f.same, gap, f.th);
    return true;
  }

  /** Another run, another time axis: the zoom is reset. */
  private followRun(): void {
    if (this.store.runKey === this.runKey) return;
    this.runKey = this.store.runKey;
    this.zoom = null;
  }

  /** Whether anything drawn changed since the last draw (data, width, rails, zoom, hover, drag). */
  private needsDraw(w: number): boolean {
    const hidden = [...this.ui.hiddenRails].join(",");
    const key = `${this.store.version}|${w}|${hidden}|${this.zoom}|${this.hoverX}|${this.drag?.a}|${this.drag?.b}`;
    if (key === this.drawnKey) return false;
    this.drawnKey = key;
    return true;
  }

  /** The canvas cleared at width w, the time and power axes, and the samples and rails shown. */
  private layout(w: number): Frame {
    const s = this.store;
    const th = readTheme(this.el);
    const ctx = fitCanvas(this.canvas, w, HEIGHT);
    ctx.clearRect(0, 0, w, HEIGHT);
    ctx.font = `11px ${th.font}`;
    const measure = (text: string) => ctx.measureText(text).width;
    const [x0, x1] = this.zoom ?? this.fullDomain();
    const pw = w - PAD.l - PAD.r;
    const ph = HEIGHT - PAD.t - PAD.b;
    this.view = { x0, x1, pw };
    this.reset.hidden = this.zoom === null;
    const X = (ts: number) => PAD.l + ((ts - x0) / (x1 - x0)) * pw;
    const t = s.col("t_ms");
    const rails = this.rails();
    const shown = rails.filter((r) => !this.ui.hiddenRails.has(r));
    const same = this.sameAsTotal(rails);
    // the visible samples, one either side so lines run to the edges
    let i0 = 0;
    while (i0 < s.nPower - 1 && t[i0 + 1] / 1000 < x0) i0++;
    let i1 = s.nPower - 1;
    while (i1 > 0 && t[i1 - 1] / 1000 > x1) i1--;
    let ymax = 0;
    for (const r of shown.length ? shown : rails) {
      const col = s.col(r);
      for (let i = i0; i <= i1; i++) if (col[i] > ymax) ymax = col[i];
    }
    ymax = ymax > 0 ? ymax * 1.1 : 1;
    const Y = (wv: number) => PAD.t + ph - (wv / ymax) * ph;
    return { ctx, th, measure, x0, x1, pw, ph, ymax, X, Y, t, i0, i1, rails, shown, same };
  }

  /** `fn` drawn clipped to the plot's width. */
  private clipped(f: Frame, fn: () => void): void {
    const { ctx } = f;
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.l, 0, f.pw, HEIGHT);
    ctx.clip();
    fn();
    ctx.restore();
  }

  /** The phase bands, the hatched gap after the baseline, and the band names that fit. */
  private drawBands(f: Frame, gap: ReturnType<typeof baselineGap>): void {
    const s = this.store;
    const { ctx, th, X, t, pw, ph } = f;
    this.clipped(f, () => {
      const bands: { text: string; x: number; width: number }[] = [];
      for (const p of s.phases) {
        const a = X(p.start_ms / 1000);
        const end = p.end_ms ?? (s.nPower ? t[s.nPower - 1] : p.start_ms);
        const b = X(end / 1000);
        ctx.fillStyle = th.phase[p.name] || "rgba(128,128,128,0.1)";
        ctx.fillRect(a, PAD.t, Math.max(1, b - a), ph);
        const left = Math.max(a, PAD.l);
        bands.push({ text: p.name, x: left + 3, width: Math.min(b, PAD.l + pw) - left });
      }
      if (gap) {
        const a = X(gap.start_ms / 1000);
        const b = X(gap.end_ms / 1000);
        hatch(ctx, a, PAD.t, Math.max(1, b - a), ph, th.muted);
        bands.push({ text: "gap", x: Math.max(a, PAD.l) + 3, width: Math.min(b, PAD.l + pw) - Math.max(a, PAD.l) });
        bands.sort((p, q) => p.x - q.x);
      }
      ctx.fillStyle = th.muted;
      ctx.textAlign = "left";
      for (const l of fitLabels(bands, f.measure)) ctx.fillText(l.text, l.x, PAD.t + 11);
    });
  }

  /** The power grid lines and ticks, the time ticks, and the token lane's name. */
  private drawAxes(f: Frame): void {
    const { ctx, th, X, Y, pw, ph } = f;
    ctx.strokeStyle = th.grid;
    ctx.fillStyle = th.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (const v of ticks(0, f.ymax, Math.max(2, Math.floor(ph / 40)))) {
      ctx.beginPath();
      ctx.moveTo(PAD.l, Y(v));
      ctx.lineTo(PAD.l + pw, Y(v));
      ctx.stroke();
      ctx.fillText(fmtNum(v, "", 3), PAD.l - 4, Y(v) + 4);
    }
    ctx.textAlign = "center";
    for (const v of timeTicks(f.x0, f.x1, pw, f.measure)) ctx.fillText(tickLabel(v), X(v), HEIGHT - 6);
    ctx.textAlign = "right";
    ctx.font = `9px ${th.font}`;
    ctx.fillText("tokens", PAD.l - 4, laneY(ph) + LANE - 1);
  }

  /** The token lane: each token's span, alternating shades, so its boundaries show; the hovered one's span shaded. */
  private drawTokenLane(f: Frame): void {
    const s = this.store;
    const { ctx, th, X, pw, ph } = f;
    const y = laneY(ph);
    ctx.fillStyle = th.fg;
    for (let k = 0; k < s.nTokens; k++) {
      const a = X(s.tokStart.data[k] / 1000);
      const b = X(s.tokEnd.data[k] / 1000);
      if (b < PAD.l || a > PAD.l + pw) continue;
      ctx.globalAlpha = k === this.hoverTok ? 0.9 : k % 2 ? 0.18 : 0.4;
      ctx.fillRect(a, y, Math.max(1, b - a - (b - a > 3 ? 1 : 0)), LANE);
    }
    if (this.hoverTok >= 0 && this.hoverTok < s.nTokens) {
      const a = X(s.tokStart.data[this.hoverTok] / 1000);
      const b = X(s.tokEnd.data[this.hoverTok] / 1000);
      ctx.globalAlpha = 0.08;
      ctx.fillRect(a, PAD.t, Math.max(1, b - a), ph);
    }
    ctx.globalAlpha = 1;
  }

  /** The rails shown: total under the rails, wider; a rail equal to it dashed on top, so neither hides the other. */
  private drawRails(f: Frame): void {
    const { ctx, th } = f;
    const order = [...f.shown].sort((a, b) => (a === "total_w" ? -1 : b === "total_w" ? 1 : 0));
    for (const r of order) {
      ctx.strokeStyle = th.series[r] || th.fg;
      ctx.lineWidth = r === "total_w" ? 2.6 : 1.4;
      ctx.setLineDash(f.same.has(r) ? [5, 4] : []);
      this.strokeSeries(f, this.store.col(r));
    }
    ctx.setLineDash([]);
  }

  /** One series as a line, min/max per pixel column once samples outnumber pixels; NaN breaks it. */
  private strokeSeries(f: Frame, col: Float64Array): void {
    const { ctx, X, Y, t } = f;
    ctx.beginPath();
    let pen = false;
    let lastPx = -1;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = f.i0; i <= f.i1; i++) {
      const v = col[i];
      if (v !== v) {
        pen = false;
        continue;
      }
      const px = Math.round(X(t[i] / 1000));
      if (px === lastPx && pen) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
        continue;
      }
      if (pen && hi > lo) {
        ctx.lineTo(lastPx, Y(lo));
        ctx.lineTo(lastPx, Y(hi));
      }
      if (pen) ctx.lineTo(px, Y(v));
      else ctx.moveTo(px, Y(v));
      pen = true;
      lastPx = px;
      lo = hi = v;
    }
    ctx.stroke();
  }

  /** The hover line, or the span being dragged to zoom. */
  private drawCursor(f: Frame): void {
    const { ctx, th, ph } = f;
    if (this.hoverX !== null && !this.drag) {
      ctx.strokeStyle = th.fg;
      ctx.globalAlpha = 0.5;
      ctx.beginPath();
      ctx.moveTo(this.hoverX, PAD.t);
      ctx.lineTo(this.hoverX, PAD.t + ph);
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    if (this.drag) {
      const a = Math.min(this.drag.a, this.drag.b);
      ctx.fillStyle = th.fg;
      ctx.globalAlpha = 0.12;
      ctx.fillRect(a, PAD.t, Math.abs(this.drag.b - this.drag.a), ph);
      ctx.globalAlpha = 1;
    }
  }

  private drawLegend(
    rails: string[],
    same: Set<string>,
    gap: ReturnType<typeof baselineGap>,
    th: Theme,
  ): void {
    const s = this.store;
    const info = s.powerInfo();
    const phaseNames = [...new Set(s.phases.map((p) => p.name))];
    const key = [rails, [...same], [...this.ui.hiddenRails], phaseNames, gap?.end_ms, s.summary !== null, JSON.stringify(info), th.fg].join("|");
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren(
      // rails toggle on click, like a plotly legend
      ...rails.map((r) => {
        const on = !this.ui.hiddenRails.has(r);
        const name = RAIL_LABELS[r] || r;
        const item = h("button", `lew-legend-item lew-legend-rail${same.has(r) ? " lew-dashed" : ""}${r === "total_w" ? " lew-total" : ""}`, same.has(r) ? `${name} (= total)` : name);
        item.type = "button";
        item.dataset.rail = r;
        item.setAttribute("aria-pressed", String(on));
        item.title = `${on ? "Hide" : "Show"} ${name}`;
        item.style.setProperty("--lew-swatch", th.series[r] || th.fg);
        item.addEventListener("click", () => this.ui.toggleRail(r));
        return item;
      }),
      // phases named in the legend too: a short one (the tail, say) is too narrow for its label
      ...phaseNames.map((p) => {
        const item = h("span", "lew-legend-item lew-legend-phase", p);
        item.dataset.phase = p;
        item.style.setProperty("--lew-swatch", th.phase[p] || "rgba(128,128,128,0.1)");
        const def = definition(s.meta, `${p}_energy_j`);
        if (def) item.title = def;
        return item;
      }),
      ...(gap
        ? [
            (() => {
              const item = h("span", "lew-legend-item lew-legend-phase lew-legend-gap", "gap after baseline");
              item.dataset.phase = "gap";
              item.title = `${fmtMs(gap.end_ms - gap.start_ms)} between the baseline's end and ${gap.next}'s start: in no phase, so in neither the baseline nor the run's energy`;
              return item;
            })(),
          ]
        : []),
    );
    this.source.title = info.description ?? "";
    this.source.replaceChildren(
      h("span", "", `source: ${info.source ?? "–"}`),
      badge(info.kind, info.scope, kindTip(s.meta, info, info.kind, "power")),
      h("span", "lew-muted", sourceNote(s)),
    );
  }

  private onMove(ev: MouseEvent): void {
    const s = this.store;
    const px = this.px(ev);
    const { pw } = this.view;
    if (px < PAD.l || px > PAD.l + pw || (!s.nPower && !s.nTokens)) {
      this.tip.hide();
      this.hoverX = null;
      this.setHoverToken(-1);
      this.dirty();
      return;
    }
    const tMs = this.timeAt(px) * 1000;
    const rails = this.rails().filter((r) => !this.ui.hiddenRails.has(r));
    this.tip.show(ev, powerTip(s, tMs, rails));
    this.hoverX = px;
    this.setHoverToken(tokenAt(s, tMs));
    this.dirty();
  }
}

/** Diagonal hatching in a box: a band that is in no phase. */
function hatch(ctx: CanvasRenderingContext2D, x: number, y: number, w: number, hgt: number, colour: string): void {
  ctx.save();
  ctx.beginPath();
  ctx.rect(x, y, w, hgt);
  ctx.clip();
  ctx.strokeStyle = colour;
  ctx.globalAlpha = 0.35;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let d = -hgt; d < w; d += 6) {
    ctx.moveTo(x + d, y + hgt);
    ctx.lineTo(x + d + hgt, y);
  }
  ctx.stroke();
  ctx.restore();
}
