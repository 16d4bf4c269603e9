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

// The palette: the same values as llm_energy_widget/view/palette.py, the one source of every
// view's colours (tests/view_units/test_palette.py checks the two agree).

/** The power rails' lines. */
export const RAIL_COLORS: Record<string, string> = {
  total: "#d62728",
  cpu: "#1f77b4",
  gpu: "#2ca02c",
  ane: "#9467bd",
  dram: "#ff7f0e",
};

/** The phase bands' colours and alphas, one per phase of run.PHASES (the tail: after the last token). */
export const PHASE_COLORS: Record<string, string> = {
  baseline: "#808080",
  tokenize: "#17becf",
  to_device: "#bcbd22",
  prefill: "#ff7f0e",
  decode: "#1f77b4",
  tail: "#e377c2",
  detokenize: "#9467bd",
};
export const PHASE_ALPHA: Record<string, number> = {
  baseline: 0.14,
  tokenize: 0.14,
  to_device: 0.14,
  prefill: 0.16,
  decode: 0.12,
  tail: 0.18,
  detokenize: 0.14,
};

/** A phase without a colour, a cell without a value. */
export const NEUTRAL = "#808080";

// viridis, 9 stops: readable on light and dark backgrounds.
export const SEQUENTIAL: ReadonlyArray<readonly [number, number, number]> = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

function hexRgb(hex: string): [number, number, number] {
  const h = hex.replace("#", "");
  return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)];
}

/** Phase bands of the power chart: each phase's colour at its alpha ("rgba(255,127,14,0.16)"). */
export const PHASE_FILL: Record<string, string> = Object.fromEntries(
  Object.entries(PHASE_COLORS).map(([name, hex]) => {
    const [r, g, b] = hexRgb(hex);
    return [name, `rgba(${r},${g},${b},${PHASE_ALPHA[name]})`];
  }),
);

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
      total_w: v("--lew-total", RAIL_COLORS.total),
      cpu_w: RAIL_COLORS.cpu,
      gpu_w: RAIL_COLORS.gpu,
      ane_w: RAIL_COLORS.ane,
      dram_w: RAIL_COLORS.dram,
    },
    phase: PHASE_FILL,
  };
  cached = { el, at: now, theme };
  return theme;
}

export function colormap(x: number): [number, number, number] {
  if (!isFinite(x)) return hexRgb(NEUTRAL);
  const t = Math.min(1, Math.max(0, x)) * (SEQUENTIAL.length - 1);
  const i = Math.min(SEQUENTIAL.length - 2, Math.floor(t));
  const f = t - i;
  const a = SEQUENTIAL[i];
  const b = SEQUENTIAL[i + 1];
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
