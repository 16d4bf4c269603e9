// The kernel -> view wire protocol's constants, in one place. The Python encoder is
// llm_energy_widget/view/wire.py; tests/js/test_protocol_contract.py checks every value here
// against its `protocol_constants()`, so the two sides cannot drift.

/** The protocol version this view reads (run meta `wire_version`); a newer one is refused. */
export const WIRE_VERSION = 1;

/** Layer codes on the "log8" scale: 0 is exactly 0, 1..254 log-spaced from lo to hi, 255 NaN. */
export const Q_NAN = 255;
export const Q_MAX = 254;
export const Q_ZERO = 0;
export const Q_LOG_STEPS = 253;
/** The header's name for the log scale (header.layers.codes); absent: the older linear scale. */
export const LAYER_CODES = "log8";

/** The power rails (the source's `<rail>_w` columns), in wire order. */
export const RAILS = ["cpu", "gpu", "ane", "dram"] as const;
/** The power buffer's columns, one float32 row per reading (meta.power_cols sends the same). */
export const POWER_COLS = ["t_ms", "cpu_w", "gpu_w", "ane_w", "dram_w", "total_w", "energy_j"] as const;
export type PowerCol = (typeof POWER_COLS)[number];
/** The power columns that are watts: the rails, then the total. */
export const WATT_COLS = POWER_COLS.filter((c) => c.endsWith("_w"));

/** Metrics the view derives from others (never sent): energy_j from time_ms and token energy. */
export const DERIVED_METRICS = ["energy_j"] as const;
/** What a derived metric is decoded from. */
export const DERIVED_FROM: Record<string, string> = { energy_j: "time_ms" };

/** header.type: a delta (in seq order) or a snapshot (a catch-up, idempotent). */
export const HEADER_TYPES = ["delta", "snapshot"] as const;

/** Each binary buffer's element type, by the name header.buffers gives it. */
export const BUFFER_DTYPES = {
  power: "float32",
  tok_time: "float32",
  tok_id: "int32",
  te_idx: "uint32",
  te_j: "float32",
  layer_idx: "uint32",
  layer_range: "float32",
  layer_q: "uint8",
  layer_ms: "float32",
  lt_idx: "uint32",
  lt_range: "float32",
  lt_q: "uint8",
  lt_ms: "float32",
  lm: "float32",
} as const;
export type BufferName = keyof typeof BUFFER_DTYPES;

/** Every constant above, as `protocol_constants()` returns them (for the contract test). */
export const PROTOCOL = {
  WIRE_VERSION,
  Q_NAN,
  Q_MAX,
  Q_ZERO,
  Q_LOG_STEPS,
  LAYER_CODES,
  RAILS,
  POWER_COLS,
  DERIVED_METRICS,
  HEADER_TYPES,
  BUFFER_DTYPES,
};

/** Why the view refuses this meta (a newer protocol than it reads), or null. */
export function refusal(meta: { wire_version?: number } | null | undefined): string | null {
  const v = meta?.wire_version;
  if (typeof v !== "number" || v <= WIRE_VERSION) return null;
  return (
    `This run was sent with wire protocol version ${v}, newer than this view reads (${WIRE_VERSION}): ` +
    "update llm-energy-widget's frontend (reinstall the package and reload the page) to show it."
  );
}
