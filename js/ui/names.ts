// Display names come from the kernel (core/schema.py via the widget's meta), never spelled here.

import type { PowerInfo } from "../run_store";
import type { Meta } from "../types";

const bare = (key: string) => key.replace(/_/g, " ");

/** A summary figure's name (SUMMARY_LABELS); a meta from an older kernel falls back to the key. */
export function label(meta: Meta | null | undefined, key: string): string {
  return meta?.names?.summary?.[key] ?? bare(key);
}

/** A summary figure's definition (SUMMARY_DEFINITIONS), for a tooltip. */
export function definition(meta: Meta | null | undefined, key: string): string {
  return meta?.names?.definitions?.[key] ?? "";
}

/** A layer metric's name (METRIC_LABELS): "mean |x|", not "activation mean". */
export function metricLabel(meta: Meta | null | undefined, metric: string): string {
  return meta?.names?.metrics?.[metric] ?? bare(metric);
}

/** The name of a token's time and energy outside the hooked decoder layers. */
export function outsideName(meta: Meta | null | undefined): string {
  return meta?.names?.outside_layers ?? "outside_layers";
}

/** A kind with the scope it covers, where known: "estimated · process". */
export function kindText(kind: string | null | undefined, scope?: string | null): string {
  const k = kind || "estimated";
  return scope ? `${k} · ${scope}` : k;
}

/** The `meta.labels` family of a layer metric: its time, its modeled energy, or an activation statistic. */
export function layerFamily(metric: string): string {
  return metric === "time_ms" || metric === "energy_j" ? `layers.${metric}` : "layers.activations";
}

/**
 * The kind of a layer metric's values, as the kernel labels it (`meta.labels`); a meta without
 * labels: the modeled energy is modeled, the rest measured.
 */
export function layerKind(meta: Meta | null | undefined, metric: string): string {
  return meta?.labels?.[layerFamily(metric)] ?? (metric === "energy_j" ? "modeled" : "measured");
}

/** Families of figures computed from the run's energy: they inherit its kind and uncertainty. */
const FROM_ENERGY = new Set(["layers.energy_j", "layers.outside", "cost", "co2"]);

/**
 * What a kind badge says on hover: what the kind means (KIND_DEFINITIONS), where the number comes
 * from (the power source's own description for energy and power; FIGURE_ORIGINS for the rest) and,
 * for an estimate, its model and uncertainty. `family`: the figure's key in `meta.labels`
 * ("energy", "timing", "layers.energy_j", "cost"…); energy, power, phases and tokens are the source's.
 */
export function kindTip(meta: Meta | null | undefined, info: PowerInfo, kind: string, family = "energy"): string[] {
  const n = meta?.names;
  const lines = [n?.kinds?.[kind] ?? kind];
  const origin = n?.origins?.[family];
  const src = `${info.source ?? "–"}${info.description ? `: ${info.description}` : ""}`;
  const uncertainty = (): string =>
    (info.source ?? "").startsWith("estimate")
      ? `uncertainty: ${n?.estimate_uncertainty ?? "not stated"}`
      : "uncertainty: that of the source's own model (not recorded with the run)";
  if (origin) {
    lines.push(`from ${origin}`);
    if (FROM_ENERGY.has(family)) {
      lines.push(`energy: ${kindText(info.kind, info.scope)}, from ${src}`);
      if (info.kind === "estimated") lines.push(uncertainty());
    }
  } else {
    lines.push(`source ${src}`);
    if (info.scope) lines.push(`scope: ${info.scope}`);
    if (kind === "estimated") lines.push(uncertainty());
  }
  return lines;
}
