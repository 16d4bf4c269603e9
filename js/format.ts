// Numbers with units, scaled to a readable prefix.

export function fmtEnergy(j: number | null | undefined): string {
  if (j === null || j === undefined || !isFinite(j)) return "–";
  const a = Math.abs(j);
  if (a >= 3.6e6) return `${(j / 3.6e6).toPrecision(3)} kWh`;
  if (a >= 1000) return `${(j / 1000).toPrecision(3)} kJ`;
  if (a >= 1) return `${j.toPrecision(3)} J`;
  if (a >= 1e-3) return `${(j * 1e3).toPrecision(3)} mJ`;
  if (a === 0) return "0 J";
  return `${(j * 1e6).toPrecision(3)} µJ`;
}

export function fmtNum(x: number | null | undefined, unit = "", digits = 3): string {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const s = Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(digits);
  return unit ? `${s} ${unit}` : s;
}

/** A duration in µs, ms or s, whichever reads best (3 significant digits). */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) return "–";
  const a = Math.abs(ms);
  if (a >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (a >= 1 || a === 0) return `${ms.toPrecision(3)} ms`;
  return `${(ms * 1000).toPrecision(3)} µs`;
}

/**
 * Python's `format(x, ".{p}g")`: p significant digits, trailing zeros dropped, scientific below
 * 1e-4 or from 10^p up, exponent with two digits at least ("3.1e-06"). The kernel's views format
 * the same figures with it (view/text.py), so a number reads the same everywhere.
 */
export function fmtG(x: number, p = 3): string {
  if (!isFinite(x)) return "–";
  if (x === 0) return "0";
  const [mant, e] = x.toExponential(p - 1).split("e");
  const exp = Number(e);
  const trim = (s: string) => (s.includes(".") ? s.replace(/\.?0+$/, "") : s);
  if (exp < -4 || exp >= p) {
    return `${trim(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return trim(x.toFixed(Math.max(0, p - 1 - exp)));
}

/** Cost in US dollars, one format in every view: "$3.1e-06" (view/text.format_cost). */
export function fmtCost(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !isFinite(usd)) return "–";
  return `$${fmtG(usd, 3)}`;
}

/** A metric value with its unit (time in ms, energy in J, sparsity as a share). */
export function fmtMetric(metric: string, v: number): string {
  if (!isFinite(v)) return "not measured";
  if (metric === "time_ms") return fmtMs(v);
  if (metric === "energy_j") return fmtEnergy(v);
  if (metric === "sparsity") return `${(v * 100).toPrecision(3)} %`;
  return v.toPrecision(4);
}

/** A percentage of a share in [0, 1]. */
export function fmtPct(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  return `${(x * 100).toPrecision(digits)} %`;
}

/** A power averaging window as an adjective: 1000 -> "1-s", 100 -> "100-ms". */
export function fmtWindow(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toPrecision(3)}-s` : `${+ms.toPrecision(3)}-ms`;
}

/** Nice axis ticks between lo and hi (about `count` of them). */
export function ticks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

/** A "nice" step (1, 2 or 5 x 10^k) at least `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !isFinite(raw)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw * (1 - 1e-12)) ?? 10 * mag;
}
