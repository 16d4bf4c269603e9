// Summary cards once the run is done, each with its kind (measured / estimated / modeled), the
// scope of the energy figures, and the run's warnings.

import { badge, h } from "../ui/dom";
import { fmtCost, fmtEnergy, fmtMs, fmtNum, fmtPct, fmtWindow } from "../format";
import { definition, kindTip, label } from "../ui/names";
import type { RunStore } from "../run_store";
import type { Summary } from "../types";
import { overheadText } from "./status";
import type { View } from "./view";

export interface Card {
  key: string;
  label: string;
  value: string;
  kind: string;
  scope?: string | null;
  /** A second line: which rail, the averaging window, why a figure is unreliable. */
  sub?: string;
  /** The definition (SUMMARY_DEFINITIONS), shown on hover. */
  title?: string;
  unreliable?: boolean;
  /** What its kind badge says on hover: where the number comes from (names.kindTip). */
  tip: string[];
  /** An estimate's range, "0.6–1.8 J, estimate ±50 %" (summary.energy_ranges_j). */
  range?: string;
  /** Which tokens it rests on (summary.figure_basis), in full. */
  basis?: string;
}

/** The estimate's relative uncertainty, read back from the total energy's range. */
function uncertainty(s: Summary): number | null {
  const r = s.energy_ranges_j?.total_energy_j;
  const v = s.total_energy_j;
  return Array.isArray(r) && typeof v === "number" && v > 0 ? r[1] / v - 1 : null;
}

/** "0.6–1.8 J, estimate ±50 %" for a figure of an estimate, else undefined. */
export function rangeText(s: Summary, key: string, fmt: (x: number) => string): string | undefined {
  const r = s.energy_ranges_j?.[key];
  if (!Array.isArray(r) || r.length !== 2) return undefined;
  const u = uncertainty(s);
  return `${fmt(r[0])}–${fmt(r[1])}, estimate${u !== null ? ` ±${+(u * 100).toPrecision(3)} %` : ""}`;
}

/** With sampled instrumentation, the headline's basis in short: "from 19 bare decode tokens". */
export function basisShort(s: Summary, key: string): string | undefined {
  const po = s.profiling_overhead;
  const bare = po?.bare_tokens ?? 0;
  if (!bare || !po?.instrumented_tokens) return undefined;
  if (["decode_j_per_token", "decode_tokens_per_j", "decode_tokens_per_s"].includes(key)) {
    return `from ${bare} bare decode tokens of ${s.decode_tokens}`;
  }
  if (key === "decode_energy_j" && s.decode_energy_measured_j != null) {
    return `bare J/token × ${s.decode_tokens} tokens (${fmtEnergy(s.decode_energy_measured_j)} as measured)`;
  }
  return undefined;
}

/**
 * The cards, in order, headline first (decode J/token); null figures of optional parts left out.
 * One rate: decode tokens/s (the status line's figure); the all-tokens rate, which counts the
 * prefill's wait as a token, is not a second "tokens/s" (TTFT gives the prefill's time).
 */
export function summaryCards(store: RunStore): Card[] {
  const s = store.summary;
  if (!s) return [];
  const meta = store.meta;
  const labels = meta?.labels ?? {};
  const info = store.powerInfo();
  const ek = info.kind;
  const scope = info.scope;
  const pk = labels.power ?? ek;
  const phk = labels.phases ?? ek;
  const timing = labels.timing ?? "measured";
  const peak = s.peak_power_w ?? {};
  const out: Card[] = [];
  // each card's family in meta.labels: where its number comes from, for the badge's tooltip
  const family = (key: string): string =>
    key === "cost_usd" ? "cost" : key === "co2_g" ? "co2" : key === "outside_layers_energy_j" ? "layers.outside"
      : ["decode_tokens_per_s", "ttft_ms", "layer_coverage"].includes(key) ? "timing"
        : key.endsWith("_w") ? "power" : "energy";
  const fmts: Record<string, (x: number) => string> = {
    decode_tokens_per_j: (x) => fmtNum(x),
    avg_power_w: (x) => fmtNum(x, "W"),
    edp_js: (x) => fmtNum(x, "J·s"),
    cost_usd: fmtCost,
    co2_g: (x) => fmtNum(x, "g"),
  };
  const add = (key: string, value: string, kind: string, extra: Partial<Card> = {}) => {
    const tip = kindTip(meta, info, kind, family(key));
    const basis: string | undefined = s.figure_basis?.[key];
    const short = basisShort(s, key);
    const sub = [extra.sub, short].filter(Boolean).join(" · ") || undefined;
    const title = [definition(meta, key), basis ? `rests on: ${basis}` : ""].filter(Boolean).join("\n") || undefined;
    const range = rangeText(s, key, fmts[key] ?? fmtEnergy);
    out.push({ key, label: label(meta, key), value, kind, title, tip, ...extra, sub, range, basis });
  };
  // energy and power figures cover what the source covers: say so next to their kind
  const E = { scope };
  add("decode_j_per_token", fmtEnergy(s.decode_j_per_token), ek, E);
  add("decode_tokens_per_j", fmtNum(s.decode_tokens_per_j), ek, E);
  add("prefill_j_per_prompt_token", fmtEnergy(s.prefill_j_per_prompt_token), ek, {
    ...E,
    sub: s.input_tokens ? `${s.input_tokens} prompt tokens` : undefined,
  });
  add("prefill_energy_j", fmtEnergy(s.prefill_energy_j), phk, E);
  add("decode_energy_j", fmtEnergy(s.decode_energy_j), phk, E);
  if (s.tail_energy_j != null) {
    add("tail_energy_j", fmtEnergy(s.tail_energy_j), phk, { ...E, sub: s.tail_ms != null ? fmtMs(s.tail_ms) : undefined });
  }
  add("total_energy_j", fmtEnergy(s.total_energy_j), ek, E);
  if (s.net_energy_j != null) {
    const bad = s.net_energy_reliable === false;
    add("net_energy_j", fmtEnergy(s.net_energy_j), ek, {
      ...E,
      unreliable: bad,
      sub: bad ? "unreliable: the idle baseline is above the run's average power" : `baseline ${fmtNum(s.baseline_w, "W")}`,
    });
  }
  const win = info.power_window_ms;
  add("peak_power_w", fmtNum(peak.total_w, "W"), pk, {
    ...E,
    sub: `total${win ? ` · ${fmtWindow(win)} average` : ""}` +
      (s.peak_power_readings != null ? ` · ${s.peak_power_readings} readings` : ""),
  });
  add("avg_power_w", fmtNum(s.avg_power_w, "W"), pk, E);
  add("decode_tokens_per_s", fmtNum(s.decode_tokens_per_s), timing);
  add("ttft_ms", fmtMs(s.ttft_ms), timing);
  add("edp_js", fmtNum(s.edp_js, "J·s"), ek, E);
  add("cost_usd", fmtCost(s.cost_usd), labels.cost ?? "modeled");
  add("co2_g", fmtNum(s.co2_g, "g"), labels.co2 ?? "modeled");
  if (s.layer_coverage != null) add("layer_coverage", fmtPct(s.layer_coverage), timing);
  if (s.outside_layers_energy_j != null) {
    const gen = s.generation_energy_j;
    add("outside_layers_energy_j", fmtEnergy(s.outside_layers_energy_j), labels["layers.outside"] ?? "modeled", {
      sub: gen ? `${fmtPct(s.outside_layers_energy_j / gen)} of generation energy` : undefined,
    });
  }
  return out;
}

/** A row of `summary.predicted` (view/predicted.py): a modeled figure next to its measurement. */
interface PredictedRow {
  key: string;
  figure: string;
  unit: string;
  predicted: number;
  measured: number;
  error: number | null;
  within: boolean;
}

/**
 * What the store's earlier runs predicted for this one (modeled), next to what it measured:
 * "decode J/token: predicted 410 mJ (modeled), measured 408 mJ, +0.5 %", one line a figure, after
 * a line naming the runs the fit learned from; [] when the summary has no prediction.
 */
export function predictedLines(s: Summary): string[] {
  const p = s.predicted;
  if (!p || !Array.isArray(p.rows) || !p.rows.length) return [];
  const fmt = (r: PredictedRow, x: number) => (r.unit === "J" || r.unit === "J/token" ? fmtEnergy(x) : fmtNum(x, r.unit));
  const n = Number(p.n_runs);
  const head = `predicted (modeled) from ${n} earlier run${n === 1 ? "" : "s"} of ${p.source} on ${p.host}; measured: ${p.measured_kind}`;
  return [
    head,
    ...(p.rows as PredictedRow[]).map((r) => {
      const err = r.error == null ? "–" : `${r.error >= 0 ? "+" : "−"}${Math.abs(r.error * 100).toFixed(1)} %`;
      return `${r.figure}: predicted ${fmt(r, r.predicted)}, measured ${fmt(r, r.measured)}, ${err}` +
        (r.within ? "" : " (outside the interval)");
    }),
  ];
}

/** The line under the cards: source, kind and scope, resolution, price and carbon intensity. */
export function summaryNote(store: RunStore): string {
  const s = store.summary ?? {};
  const info = store.powerInfo();
  const res = info.resolution_ms ? ` · resolution ${fmtMs(info.resolution_ms)}` : "";
  const scope = info.scope ? ` · ${info.scope}` : "";
  return (
    `energy source: ${info.source ?? "–"} (${info.kind}${scope})${res} · price ${s.price_per_kwh} USD/kWh · ` +
    `${s.carbon_g_per_kwh} gCO₂e/kWh`
  );
}

export class SummaryCards implements View {
  el = h("div", "lew-cards");
  /** The summary drawn (null: none yet); undefined: draw again. */
  private drawn: Summary | null | undefined = null;

  constructor(private store: RunStore) {}

  invalidate(): void {
    this.drawn = undefined;
  }

  destroy(): void {} // nothing outside its element

  /** The cards once the run's summary is there; never hidden. */
  draw(): boolean {
    const s = this.store.summary;
    if (s === this.drawn) return true;
    this.drawn = s;
    this.el.hidden = !s;
    if (!s) {
      this.el.replaceChildren();
      return true;
    }
    const warnings: string[] = Array.isArray(s.warnings) ? s.warnings : [];
    const overhead = overheadText(this.store);
    this.el.replaceChildren(
      ...warnings.map((w) => {
        const d = h("div", "lew-warning", `⚠ ${w}`);
        d.setAttribute("role", "status");
        return d;
      }),
      ...summaryCards(this.store).map((c, i) => {
        const card = h("div", `lew-card${i === 0 ? " lew-card-headline" : ""}${c.unreliable ? " lew-unreliable" : ""}`);
        card.dataset.key = c.key;
        if (c.title) card.title = c.title;
        card.append(h("div", "lew-card-label", c.label), h("div", "lew-card-value", c.value));
        if (c.range) card.append(h("div", "lew-card-range", `(${c.range})`));
        if (c.sub) card.append(h("div", "lew-card-sub", c.sub));
        card.append(badge(c.kind, c.scope, c.tip));
        return card;
      }),
      ...predictedLines(s).map((line) => h("div", "lew-muted lew-cards-note lew-predicted", line)),
      ...(overhead ? [h("div", "lew-muted lew-cards-note", `${label(this.store.meta, "profiling_overhead")} ${overhead}`)] : []),
      h("div", "lew-muted lew-cards-note", summaryNote(this.store)),
    );
    return true;
  }
}
