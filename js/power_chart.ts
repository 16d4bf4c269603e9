// Power against time: rails and total, phase bands, a hover readout and the source badge.

import { badge, h, Tooltip } from "./dom";
import { fmtMs, fmtNum, fmtWindow, ticks } from "./format";
import { definition, kindText } from "./names";
import type { RunStore } from "./store";
import { fitCanvas, readTheme } from "./theme";

const RAIL_LABELS: Record<string, string> = {
  total_w: "total",
  cpu_w: "CPU",
  gpu_w: "GPU",
  ane_w: "ANE",
  dram_w: "DRAM",
};
const PAD = { l: 44, r: 10, t: 8, b: 24 };

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
const HEIGHT = 190;

export class PowerChart {
  el = h("div", "lew-panel lew-power");
  private canvas = h("canvas", "lew-canvas");
  private legend = h("div", "lew-legend");
  private source = h("div", "lew-source");
  private hoverX: number | null = null;
  private drawnVersion = -1;
  private width = 0;

  constructor(private store: RunStore, private tip: Tooltip, private redraw: () => void) {
    const head = h("div", "lew-panel-head");
    head.append(h("span", "lew-title", "Power (W)"), this.legend, this.source);
    this.el.append(head, this.canvas);
    this.canvas.addEventListener("mousemove", (ev) => this.onMove(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.hoverX = null;
      this.tip.hide();
      this.drawnVersion = -1;
      this.redraw();
    });
  }

  private rails(): string[] {
    const s = this.store;
    const out: string[] = [];
    for (const name of ["cpu_w", "gpu_w", "ane_w", "dram_w", "total_w"]) {
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

  private domain(): [number, number, number] {
    const s = this.store;
    const t = s.col("t_ms");
    const tot = s.col("total_w");
    let t1 = s.nPower ? t[s.nPower - 1] : 1;
    const t0 = s.nPower ? Math.min(t[0], s.phases.length ? s.phases[0].start_ms : t[0]) : 0;
    if (s.nTokens) t1 = Math.max(t1, s.tokEnd.data[s.nTokens - 1]);
    let ymax = 0;
    for (let i = 0; i < s.nPower; i++) if (tot[i] > ymax) ymax = tot[i];
    return [t0 / 1000, Math.max(t1 / 1000, t0 / 1000 + 1e-3), ymax > 0 ? ymax * 1.1 : 1];
  }

  /** Draw again on the next frame even if the data did not change (a new theme, say). */
  invalidate(): void {
    this.drawnVersion = -1;
  }

  /** False while hidden (width 0): nothing drawn, to be drawn when shown at its real width. */
  draw(): boolean {
    const s = this.store;
    const w = this.el.clientWidth;
    if (w === 0) return false;
    if (this.drawnVersion === s.version && this.width === w) return true;
    this.drawnVersion = s.version;
    this.width = w;
    const th = readTheme(this.el);
    const ctx = fitCanvas(this.canvas, w, HEIGHT);
    ctx.clearRect(0, 0, w, HEIGHT);
    ctx.font = `11px ${th.font}`;
    const [x0, x1, ymax] = this.domain();
    const pw = w - PAD.l - PAD.r;
    const ph = HEIGHT - PAD.t - PAD.b;
    const X = (ts: number) => PAD.l + ((ts - x0) / (x1 - x0)) * pw;
    const Y = (wv: number) => PAD.t + ph - (wv / ymax) * ph;

    for (const p of s.phases) {
      const a = X(p.start_ms / 1000);
      const end = p.end_ms ?? (s.nPower ? s.col("t_ms")[s.nPower - 1] : p.start_ms);
      const b = X(end / 1000);
      ctx.fillStyle = th.phase[p.name] || "rgba(128,128,128,0.1)";
      ctx.fillRect(a, PAD.t, Math.max(1, b - a), ph);
      ctx.fillStyle = th.muted;
      if (b - a > 30) ctx.fillText(p.name, a + 3, PAD.t + 11);
    }
    ctx.strokeStyle = th.grid;
    ctx.fillStyle = th.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (const v of ticks(0, ymax, 4)) {
      ctx.beginPath();
      ctx.moveTo(PAD.l, Y(v));
      ctx.lineTo(PAD.l + pw, Y(v));
      ctx.stroke();
      ctx.fillText(fmtNum(v, "", 3), PAD.l - 4, Y(v) + 4);
    }
    ctx.textAlign = "center";
    for (const v of ticks(x0, x1, Math.max(2, Math.floor(pw / 80)))) {
      ctx.fillText(`${fmtNum(v, "", 3)} s`, X(v), HEIGHT - 6);
    }
    ctx.textAlign = "left";

    const t = s.col("t_ms");
    const rails = this.rails();
    // phases named in the legend too: a short one (the tail, say) is too narrow for its label
    const phaseNames = [...new Set(s.phases.map((p) => p.name))];
    this.legend.replaceChildren(
      ...rails.map((r) => {
        const item = h("span", "lew-legend-item", RAIL_LABELS[r] || r);
        item.style.setProperty("--lew-swatch", th.series[r] || th.fg);
        return item;
      }),
      ...phaseNames.map((p) => {
        const item = h("span", "lew-legend-item lew-legend-phase", p);
        item.dataset.phase = p;
        item.style.setProperty("--lew-swatch", th.phase[p] || "rgba(128,128,128,0.1)");
        const def = definition(s.meta, `${p}_energy_j`);
        if (def) item.title = def;
        return item;
      }),
    );
    for (const r of rails) {
      const col = s.col(r);
      ctx.strokeStyle = th.series[r] || th.fg;
      ctx.lineWidth = r === "total_w" ? 2 : 1.2;
      ctx.beginPath();
      let pen = false;
      // min/max per pixel column once samples outnumber pixels
      let lastPx = -1;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < s.nPower; i++) {
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
    if (this.hoverX !== null) {
      ctx.strokeStyle = th.fg;
      ctx.globalAlpha = 0.5;
      ctx.beginPath();
      ctx.moveTo(this.hoverX, PAD.t);
      ctx.lineTo(this.hoverX, PAD.t + ph);
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    const info = s.powerInfo();
    this.source.title = info.description ?? "";
    this.source.replaceChildren(
      h("span", "", `source: ${info.source ?? "–"}`),
      badge(info.kind, info.scope),
      h("span", "lew-muted", sourceNote(s)),
    );
    return true;
  }

  private onMove(ev: MouseEvent): void {
    const s = this.store;
    if (!s.nPower) return;
    const box = this.canvas.getBoundingClientRect();
    const px = ev.clientX - box.left;
    const [x0, x1] = this.domain();
    const pw = box.width - PAD.l - PAD.r;
    const tS = x0 + ((px - PAD.l) / pw) * (x1 - x0);
    const t = s.col("t_ms");
    let best = 0;
    for (let i = 1; i < s.nPower; i++) {
      if (Math.abs(t[i] / 1000 - tS) < Math.abs(t[best] / 1000 - tS)) best = i;
    }
    const lines = [`t = ${(t[best] / 1000).toFixed(3)} s`];
    for (const r of this.rails()) lines.push(`${RAIL_LABELS[r]}: ${fmtNum(s.col(r)[best], "W")}`);
    const phase = s.phases.find(
      (p) => t[best] >= p.start_ms && (p.end_ms === null || t[best] <= p.end_ms),
    );
    if (phase) {
      const def = definition(s.meta, `${phase.name}_energy_j`);
      lines.push(`phase: ${phase.name}${phase.name === "tail" && def ? ` (${def})` : ""}`);
    }
    const info = s.powerInfo();
    lines.push(`${info.source ?? ""} · ${kindText(info.kind, info.scope)}`);
    this.tip.show(ev, lines);
    this.hoverX = PAD.l + ((t[best] / 1000 - x0) / (x1 - x0)) * pw;
    this.drawnVersion = -1;
    this.redraw();
  }
}
