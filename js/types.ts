// The kernel <-> view contract's shapes; the encoder is llm_energy_widget/view/wire.py and the
// constants (codes, columns, buffer dtypes, version) are in ./protocol.ts.

import type { AnyModel } from "@anywidget/types";
import type { BufferName, HEADER_TYPES } from "./protocol";

/** The widget's traits (view/widget.py): what `model.get` returns for each. */
export interface WidgetTraits {
  meta: Meta | null;
  snapshot: { header?: Header; buffers?: Buffer[] } | null;
  _static?: boolean;
}

/**
 * The part of anywidget's model (@anywidget/types) the views use: a static model with the same
 * shape drives the HTML report and saved outputs.
 */
export type ViewModel = Pick<AnyModel<WidgetTraits>, "get" | "on" | "off" | "send">;

export type Kind = "measured" | "estimated" | "modeled";

export interface Meta {
  run_key: string;
  /** The protocol the kernel sent this run with (protocol.WIRE_VERSION); absent: version 1. */
  wire_version?: number;
  run_id: string;
  model: string | null;
  prompt: string;
  max_new_tokens: number | null;
  level: string;
  power: PowerMeta;
  layer_names: string[];
  component_names: string[];
  metric_names: string[];
  live_metrics: string[];
  power_cols: string[];
  labels: Record<string, Kind>;
  /** Display names from core/schema.py: the views never spell a figure's name themselves. */
  names?: Names;
}

export interface PowerMeta {
  source: string | null;
  kind: Kind;
  scope?: string | null;
  interval_ms: number | null;
  native_interval_ms?: number | null;
  /** The energy figures' real resolution (falls back to interval_ms on the kernel side). */
  resolution_ms?: number | null;
  /** The source's power averaging window (NVML: 1000); null: instantaneous readings. */
  power_window_ms?: number | null;
  description?: string | null;
}

export interface Names {
  summary: Record<string, string>;
  definitions: Record<string, string>;
  metrics: Record<string, string>;
  units: Record<string, string>;
  outside_layers: string;
  /** KIND_DEFINITIONS, FIGURE_ORIGINS, ESTIMATE_UNCERTAINTY: what a kind badge says on hover. */
  kinds?: Record<string, string>;
  origins?: Record<string, string>;
  estimate_uncertainty?: string;
}

export interface Phase {
  name: string;
  start_ms: number;
  end_ms: number | null;
}

export interface Header {
  type: (typeof HEADER_TYPES)[number];
  seq: number;
  run_key: string;
  /** Names each binary buffer, in order (protocol.BUFFER_DTYPES gives their element types). */
  buffers: BufferName[];
  /**
   * `instrumented`: the layer hooks ran (a row follows), false: a bare token (no row, ever),
   * null: a token-level run; absent from an older kernel (unknown). `sequence`: the batch row
   * that chose each token, sent only when some token's is not 0 (absent: all 0).
   */
  tokens?: {
    first: number;
    text: string[];
    phase: (string | null)[];
    instrumented?: (boolean | null)[];
    sequence?: number[];
  };
  /**
   * codes "log8": per-token log scale (widget.quantize_rows); absent: the older linear scale.
   * `first`: the rows' token indices run from it, in a row, and no layer_idx buffer is sent.
   */
  layers?: { shape: [number, number, number]; codes?: string; first?: number };
  /** `first`: the indices run from it, in a row, and no te_idx buffer is sent. */
  token_energy?: { first?: number };
  /**
   * A saved snapshot's layer times of tokens sent without their full row (widget.snapshot_of):
   * codes [n][layer][component] for `time_ms` alone, buffers lt_range, lt_q, lt_ms (+ lt_idx).
   */
  layer_time?: { shape: [number, number]; codes?: string; first?: number };
  /**
   * A saved snapshot's exact means over the decode tokens (buffer lm: [layer][component][metric]
   * float32, for `metrics`), and how many tokens' rows it holds: `all` with every metric, `time`
   * with at least their times, `of` the run's rows.
   */
  layer_means?: SavedMeans;
  phases?: Phase[];
  status?: { status: string; reason: string | null };
  error?: { message: string; type: string };
  summary?: Summary;
  /** The power source as it opened (scope, resolution, averaging): replaces meta.power. */
  power_info?: PowerMeta;
  event_ms?: number;
  sent_ms: number;
}

/**
 * The run's summary (core/summary.py, `Run.summary()`): figures by key, numbers for the most part,
 * with strings (the energy source and kind) and nested figures (peak power by rail) among them.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON object whose keys the kernel owns
export type Summary = Record<string, any>;

export interface SavedMeans {
  metrics: string[];
  tokens: number;
  coverage: number | null;
  outside_ms: number | null;
  outside_j: number | null;
  rows: { all: number; time: number; of: number };
}

export type Buffer = DataView | ArrayBuffer | ArrayBufferView;
