// Colours for canvases, read from the CSS variables (JupyterLab / VS Code themes, light or dark).

export interface Theme {
  fg: string;
  muted: string;
  grid: string;
  bg: string;
  font: string;
  series: Record<string, string>;
  phase: Record<string, string>;
}

/** Phase bands of the power chart, one per phase of run.PHASES (the tail: after the last token). */
export const PHASE_FILL: Record<string, string> = {
  baseline: "rgba(128,128,128,0.14)",
  tokenize: "rgba(23,190,207,0.14)",
  to_device: "rgba(188,189,34,0.14)",
  prefill: "rgba(255,127,14,0.16)",
  decode: "rgba(31,119,180,0.12)",
  tail: "rgba(227,119,194,0.18)",
  detokenize: "rgba(148,103,189,0.14)",
};

let cached: { el: Element; at: number; theme: Theme } | null = null;

/** Forget the colours read last: the page's theme changed. */
export function clearThemeCache(): void {
  cached = null;
}

export function readTheme(el: Element): Theme {
  const now = performance.now();
  if (cached && cached.el === el && now - cached.at < 1000) return cached.theme;
  const cs = getComputedStyle(el);
  const v = (name: string, fallback: string) => cs.getPropertyValue(name).trim() || fallback;
  const theme: Theme = {
    fg: v("--lew-fg", "#222"),
    muted: v("--lew-muted", "#777"),
    grid: v("--lew-grid", "rgba(128,128,128,0.25)"),
    bg: v("--lew-bg", "#fff"),
    font: v("--lew-font", "system-ui, sans-serif"),
    series: {
      total_w: v("--lew-total", "#d62728"),
      cpu_w: "#1f77b4",
      gpu_w: "#2ca02c",
      ane_w: "#9467bd",
      dram_w: "#ff7f0e",
    },
    phase: PHASE_FILL,
  };
  cached = { el, at: now, theme };
  return theme;
}

// viridis, 9 stops: readable on light and dark backgrounds.
const STOPS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

export function colormap(x: number): [number, number, number] {
  if (!isFinite(x)) return [128, 128, 128];
  const t = Math.min(1, Math.max(0, x)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t));
  const f = t - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f)) as [number, number, number];
}

export function rgb(c: [number, number, number], alpha = 1): string {
  return alpha >= 1 ? `rgb(${c[0]},${c[1]},${c[2]})` : `rgba(${c[0]},${c[1]},${c[2]},${alpha})`;
}

/** Black or white text, whichever reads better on colour c. */
export function textOn(c: [number, number, number]): string {
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 150 ? "#000" : "#fff";
}

/** A canvas sized to its box in CSS pixels, drawn at device resolution. */
export function fitCanvas(canvas: HTMLCanvasElement, cssW: number, cssH: number): CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssW * dpr));
  const h = Math.max(1, Math.round(cssH * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
  }
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}
