// Summary cards once the run is done, each with its kind (measured / estimated / modeled).

import { badge, h } from "./dom";
import { fmtEnergy, fmtMs, fmtNum } from "./format";
import type { RunStore } from "./store";

export class SummaryCards {
  el = h("div", "lew-cards");
  private drawn: Record<string, any> | null = null;

  constructor(private store: RunStore) {}

  draw(): void {
    const s = this.store.summary;
    if (s === this.drawn) return;
    this.drawn = s;
    this.el.hidden = !s;
    if (!s) {
      this.el.replaceChildren();
      return;
    }
    const labels = this.store.meta?.labels ?? {};
    const ek = s.energy_kind ?? labels.energy ?? "estimated";
    const peak = s.peak_power_w ?? {};
    const cards: [string, string, string][] = [
      ["decode J/token", fmtEnergy(s.decode_j_per_token), ek],
      ["decode tokens/J", fmtNum(s.decode_tokens_per_j), ek],
      ["prefill energy", fmtEnergy(s.prefill_energy_j), labels.phases ?? ek],
      ["decode energy", fmtEnergy(s.decode_energy_j), labels.phases ?? ek],
      ["total energy", fmtEnergy(s.total_energy_j), ek],
      ["peak power", fmtNum(peak.total_w, "W"), labels.power ?? ek],
      ["avg power", fmtNum(s.avg_power_w, "W"), labels.power ?? ek],
      ["EDP", fmtNum(s.edp_js, "J·s"), ek],
      ["tokens / s", fmtNum(s.tokens_per_s), labels.timing ?? "measured"],
      ["TTFT", fmtMs(s.ttft_ms), labels.timing ?? "measured"],
      ["cost", s.cost_usd == null ? "–" : `$${Number(s.cost_usd).toPrecision(3)}`, labels.cost ?? "modeled"],
      ["CO₂", fmtNum(s.co2_g, "g"), labels.co2 ?? "modeled"],
    ];
    const res = s.energy_resolution_ms ? ` · resolution ${fmtMs(s.energy_resolution_ms)}` : "";
    const note = h(
      "div",
      "lew-muted lew-cards-note",
      `energy source: ${s.energy_source ?? "–"} (${ek})${res} · price ${s.price_per_kwh}/kWh · ` +
        `${s.carbon_g_per_kwh} gCO₂e/kWh`,
    );
    this.el.replaceChildren(
      ...cards.map(([label, value, kind]) => {
        const card = h("div", "lew-card");
        card.append(h("div", "lew-card-label", label), h("div", "lew-card-value", value), badge(kind));
        return card;
      }),
      note,
    );
  }
}
