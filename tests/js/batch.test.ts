// A batch in the run store (js/run_store.ts) and the token stream's picker labels: each token's
// sequence from the wire (absent: 0), a sequence's tokens, and how many tokens shared a step.
import assert from "node:assert/strict";
import { test } from "node:test";
import { POWER_COLS, WIRE_VERSION } from "../../js/protocol";
import { RunStore } from "../../js/run_store";
import type { Header, Meta } from "../../js/types";
import { sequenceLabel } from "../../js/views/tokens";

const meta: Meta = {
  run_key: "k",
  run_id: "r1",
  model: "m",
  prompt: "p",
  max_new_tokens: 4,
  level: "token",
  power: { source: "synthetic", kind: "measured", interval_ms: 100 },
  layer_names: [],
  component_names: [],
  metric_names: [],
  live_metrics: [],
  power_cols: [...POWER_COLS],
  labels: { tokens: "modeled" },
  wire_version: WIRE_VERSION,
};

function tokens(s: RunStore, seq: number, first: number, times: [number, number][], sequence?: number[]): void {
  const h: Header = {
    type: "delta",
    seq,
    run_key: "k",
    buffers: ["tok_time", "te_idx", "te_j"],
    sent_ms: 0,
    tokens: { first, text: times.map((_, j) => `t${first + j}`), phase: times.map(() => "decode"), ...(sequence ? { sequence } : {}) },
    token_energy: {},
  };
  const idx = new Uint32Array(times.map((_, j) => first + j));
  const e = new Float32Array(times.map(([a, b]) => (b - a) / 100)); // 10 W x ms / 1000 / ... by hand below
  s.receive(h, [new Float32Array(times.flat()).buffer, idx.buffer, e.buffer]);
}

test("a single prompt: every token is sequence 0, one per step, no batch", () => {
  const s = new RunStore();
  s.reset(meta, true);
  tokens(s, 1, 0, [[0, 10], [10, 20]]);
  assert.equal(s.nSequences, 1);
  assert.deepEqual(s.tokensOf(0), [0, 1]);
  assert.equal(s.stepTokens(1), 1);
});

test("a batch: sequences from the wire, a step's tokens share it, finished rows drop out", () => {
  const s = new RunStore();
  s.reset(meta, true);
  // step 1: rows 0, 1, 2; step 2: rows 0, 2 (row 1 finished)
  tokens(s, 1, 0, [[0, 10], [0, 10], [0, 10]], [0, 1, 2]);
  tokens(s, 2, 3, [[10, 30], [10, 30]], [0, 2]);
  assert.equal(s.nSequences, 3);
  assert.deepEqual(s.tokensOf(0), [0, 3]);
  assert.deepEqual(s.tokensOf(1), [1]);
  assert.deepEqual(s.tokensOf(2), [2, 4]);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => s.stepTokens(i)), [3, 3, 3, 2, 2]);
  // energies sent: (end - start) / 100 J: 0.1 J for step 1's tokens, 0.2 J for step 2's
  assert.equal(sequenceLabel(s, 0), "sequence 0 · 2 tokens · 300 mJ");
  assert.equal(sequenceLabel(s, 1), "sequence 1 · 1 tokens · 100 mJ");
});

test("a later delta of sequence-0 tokens alone (no sequence list) keeps the batch", () => {
  const s = new RunStore();
  s.reset(meta, true);
  tokens(s, 1, 0, [[0, 10], [0, 10]], [0, 1]);
  tokens(s, 2, 2, [[10, 20]]);
  assert.equal(s.nSequences, 2);
  assert.deepEqual(s.tokensOf(0), [0, 2]);
});
