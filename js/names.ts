// Display names come from the kernel (core/schema.py via the widget's meta), never spelled here.

import type { Meta } from "./types";

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
