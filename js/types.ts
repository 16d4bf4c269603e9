// The kernel <-> view contract, mirrored from llm_energy_widget/widget.py.

export type Callback = (...args: any[]) => void;

/** The part of anywidget's model the views use (a fake with the same shape drives the report). */
export interface AnyModel {
  get(name: string): any;
  on(event: string, cb: Callback): void;
  off(event?: string | null, cb?: Callback | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
}

export type Kind = "measured" | "estimated" | "modeled";

export interface Meta {
  run_key: string;
  run_id: string;
  model: string | null;
  prompt: string;
  max_new_tokens: number | null;
  level: string;
  power: { source: string | null; kind: Kind; interval_ms: number | null };
  layer_names: string[];
  component_names: string[];
  metric_names: string[];
  live_metrics: string[];
  power_cols: string[];
  labels: Record<string, Kind>;
}

export interface Phase {
  name: string;
  start_ms: number;
  end_ms: number | null;
}

export interface Header {
  type: "delta" | "snapshot";
  seq: number;
  run_key: string;
  buffers: string[];
  tokens?: { first: number; text: string[]; phase: (string | null)[] };
  layers?: { shape: [number, number, number] };
  phases?: Phase[];
  status?: { status: string; reason: string | null };
  error?: { message: string; type: string };
  summary?: Record<string, any>;
  event_ms?: number;
  sent_ms: number;
}

export type Buffer = DataView | ArrayBuffer | ArrayBufferView;
