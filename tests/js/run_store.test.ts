// The run store (js/run_store.ts): idempotent deltas and snapshots, the layer codes' decoding, the
// derived energies and means, and the refusal of a newer wire protocol.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LAYER_CODES, POWER_COLS, Q_LOG_STEPS, Q_NAN, WIRE_VERSION } from "../../js/protocol";
import { RunStore } from "../../js/run_store";
import type { Header, Meta } from "../../js/types";

const meta = (over: Partial<Meta> = {}): Meta => ({
  run_key: "k",
  run_id: "r1",
  model: "m",
  prompt: "p",
  max_new_tokens: 4,
  level: "layers",
  power: { source: "synthetic", kind: "modeled", interval_ms: 100 },
  layer_names: ["layers.0", "layers.1"],
  component_names: ["attn", "mlp"],
  metric_names: ["time_ms", "energy_j", "act_mean"],
  live_metrics: ["time_ms", "act_mean"],
  power_cols: [...POWER_COLS],
  labels: {},
  wire_version: WIRE_VERSION,
  ...over,
});
const hdr = (over: Partial<Header>): Header => ({ type: "delta", seq: 1, run_key: "k", buffers: [], sent_ms: 0, ...over });
const K = POWER_COLS.length;
/** Power rows: [t_ms, total_w, energy_j] into the full column layout (the rest NaN). */
function powerRows(rows: [number, number, number][]): Float32Array {
  const out = new Float32Array(rows.length * K).fill(NaN);
  rows.forEach(([t, w, e], r) => {
    out[r * K + POWER_COLS.indexOf("t_ms")] = t;
    out[r * K + POWER_COLS.indexOf("total_w")] = w;
    out[r * K + POWER_COLS.indexOf("energy_j")] = e;
  });
  return out;
}
function live(m = meta()): RunStore {
  const s = new RunStore();
  s.reset(m, true);
  return s;
}

test("power rows are kept once, by time, and read by column name", () => {
  const s = live();
  s.receive(hdr({ seq: 1, buffers: ["power"] }), [powerRows([[0, 10, 0], [100, 20, 1.5]])]);
  s.receive(hdr({ type: "snapshot", seq: 1, buffers: ["power"] }), [powerRows([[0, 10, 0], [100, 20, 1.5], [200, 30, 4]])]);
  assert.equal(s.nPower, 3);
  assert.deepEqual([...s.col("total_w").subarray(0, 3)], [10, 20, 30]);
  assert.ok(Number.isNaN(s.col("gpu_w")[0]));
  assert.equal(s.col("no_such").length, 0);
  assert.equal(s.energyAt(150), 2.75);
  assert.ok(Number.isNaN(s.energyAt(250)));
});

test("deltas apply in seq order; an old one or another run's is ignored", () => {
  const s = live();
  const tok = (seq: number, first: number, text: string[], key = "k") =>
    s.receive(hdr({ seq, run_key: key, buffers: ["tok_time"], tokens: { first, text, phase: text.map(() => "decode") } }), [
      new Float32Array(text.flatMap((_, j) => [(first + j) * 10, (first + j) * 10 + 10])).buffer,
    ]);
  tok(1, 0, ["a", "b"]);
  tok(1, 2, ["dup"]);
  tok(2, 2, ["c"], "other");
  assert.equal(s.nTokens, 2);
  tok(2, 2, ["c"]);
  assert.equal(s.nTokens, 3);
  assert.deepEqual(s.tokText, ["a", "b", "c"]);
  assert.equal(s.tokenMs(2), 10);
  assert.equal(s.seq, 2);
});

test("a view that is not synced queues deltas until the snapshot, then applies the newer ones", () => {
  const s = new RunStore();
  s.reset(meta(), false);
  const te = (type: "delta" | "snapshot", seq: number, first: number, vals: number[]) =>
    s.receive(hdr({ type, seq, buffers: ["te_j"], token_energy: { first } }), [new Float32Array(vals).buffer]);
  te("delta", 2, 0, [1]);
  te("delta", 3, 1, [2]);
  assert.ok(Number.isNaN(s.tokEnergy.data[0]));
  te("snapshot", 2, 0, [0.5]);
  assert.equal(s.tokEnergy.data[0], 0.5); // seq 2 is in the snapshot: not applied again
  assert.equal(s.tokEnergy.data[1], 2);
  assert.equal(s.seq, 3);
});

test("log8 layer codes decode within their precision; energy is derived from time", () => {
  const s = live();
  s.receive(
    hdr({ buffers: ["tok_time", "te_j"], tokens: { first: 0, text: ["a", "b"], phase: ["prefill", "decode"] }, token_energy: { first: 0 } }),
    [new Float32Array([0, 10, 10, 30]).buffer, new Float32Array([1, 2]).buffer],
  );
  // token 1: 2 layers x 2 components x 2 live metrics (time_ms, act_mean)
  const lo = 1;
  const hi = 8;
  const code = (v: number) => (v === 0 ? 0 : 1 + Math.round((Math.log(v / lo) / Math.log(hi / lo)) * Q_LOG_STEPS));
  const times = [1, 2, 4, 8];
  const acts = [0, 0.5, 1, NaN];
  const q = new Uint8Array(8);
  times.forEach((v, lc) => {
    q[lc * 2] = code(v);
    q[lc * 2 + 1] = acts[lc] !== acts[lc] ? Q_NAN : Math.round(acts[lc] * 254);
  });
  const range = new Float32Array([lo, hi, 0, 1]); // time: log scale; act_mean: lo 0, linear
  s.receive(hdr({ seq: 2, buffers: ["layer_range", "layer_q", "layer_ms"], layers: { shape: [2, 2, 2], codes: LAYER_CODES, first: 1 } }), [
    range.buffer,
    q.buffer,
    new Float32Array([15]).buffer,
  ]);
  assert.ok(s.hasLayers(1) && !s.hasLayers(0));
  const p = s.precision(1, 0);
  assert.ok(p > 0 && p < 0.01, String(p));
  for (let lc = 0; lc < 4; lc++) {
    const t = s.value(1, lc >> 1, lc & 1, 0);
    assert.ok(Math.abs(t - times[lc]) <= p * times[lc] + 1e-12, `${t} vs ${times[lc]}`);
    // modeled: token energy x cell time / token time (20 ms)
    assert.ok(Math.abs(s.value(1, lc >> 1, lc & 1, 1) - (t / 20) * 2) < 1e-12);
  }
  assert.equal(s.hookedMs(1), 15); // the exact hooked time the kernel sent
  assert.equal(s.coverage(1), 0.75);
  assert.ok(Math.abs(s.outsideJ(1) - 0.5) < 1e-12);
  assert.equal(s.value(1, 0, 0, 2), 0);
  assert.ok(Number.isNaN(s.value(1, 1, 1, 2)));
  assert.ok(Number.isNaN(s.precision(1, 2))); // a linear scale has no relative bound
  // the mean is over the decode token alone, the same values as `value`
  assert.equal(s.meanTokens, 1);
  assert.ok(Math.abs(s.mean(0, 1, 0) - s.value(1, 0, 1, 0)) < 1e-12);
  // a snapshot that repeats the row does not count it twice
  s.receive(hdr({ type: "snapshot", seq: 2, buffers: ["layer_range", "layer_q", "layer_ms"], layers: { shape: [2, 2, 2], codes: LAYER_CODES, first: 1 } }), [
    range.buffer,
    q.buffer,
    new Float32Array([15]).buffer,
  ]);
  assert.equal(s.meanTokens, 1);
});

test("a meta sent with a newer wire protocol is refused, with a message", () => {
  const s = new RunStore();
  s.reset(meta({ wire_version: WIRE_VERSION + 1 }), true);
  assert.equal(s.meta, null);
  assert.match(s.refused ?? "", /newer/);
  s.receive(hdr({ run_key: "k", buffers: ["te_j"], token_energy: { first: 0 } }), [new Float32Array([1]).buffer]);
  assert.equal(s.version, 1); // only the reset
  s.reset(meta(), true);
  assert.equal(s.refused, null);
  assert.equal((s.meta as Meta | null)?.run_key, "k");
  s.reset(meta({ wire_version: undefined }), true); // an older kernel: version 1
  assert.equal(s.refused, null);
});

test("status, summary and elapsed time over the run's window", () => {
  const s = live();
  s.receive(
    hdr({
      phases: [
        { name: "baseline", start_ms: 0, end_ms: 50 },
        { name: "decode", start_ms: 100, end_ms: 300 },
      ],
      status: { status: "completed", reason: null },
      summary: { energy_kind: "measured" },
    }),
    [],
  );
  assert.equal(s.live, false);
  assert.equal(s.elapsedMs(), 200);
  assert.equal(s.powerInfo().kind, "measured");
});
