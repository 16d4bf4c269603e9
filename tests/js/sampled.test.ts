// Sampled instrumentation in the views: bare tokens (instrumented false) have no layer row, so the
// heatmap steps over the instrumented ones only and never shows a bare token as zeros; the mean
// says over how many; the status line and the cards say the profiling overhead and the basis.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LAYER_CODES, POWER_COLS, Q_NAN, WIRE_VERSION } from "../../js/protocol";
import { RunStore } from "../../js/run_store";
import type { Header, Meta } from "../../js/types";
import { heatCaption, layerToken, meanLabel, tokenLabel } from "../../js/views/heatmap";
import { overheadText, statusItems } from "../../js/views/status";
import { summaryCards } from "../../js/views/summary";
import { tokenTip } from "../../js/views/tokens";

const N = 24;
const INST = [0, 7, 15, 22];
const meta: Meta = {
  run_key: "k",
  run_id: "r1",
  model: "m",
  prompt: "p",
  max_new_tokens: N,
  level: "component",
  power: { source: "estimate", kind: "estimated", interval_ms: 100 },
  layer_names: ["layers.0", "layers.1"],
  component_names: ["attn", "mlp"],
  metric_names: ["time_ms", "energy_j", "act_mean"],
  live_metrics: ["time_ms", "act_mean"],
  power_cols: [...POWER_COLS],
  labels: {},
  wire_version: WIRE_VERSION,
  names: {
    summary: { profiling_overhead: "profiling overhead", decode_j_per_token: "decode J/token" },
    definitions: {},
    metrics: {},
    units: {},
    outside_layers: "outside layers",
  },
};
const hdr = (over: Partial<Header>): Header => ({ type: "delta", seq: 1, run_key: "k", buffers: [], sent_ms: 0, ...over });

/** 2 x 2 cells x 2 live metrics of one token; every time code 128 on [1, 2] ms. */
function rows(idx: number[], nan = false): [Header, ArrayBuffer[]] {
  const cell = 8;
  const q = new Uint8Array(idx.length * cell).fill(nan ? Q_NAN : 128);
  const r = new Float32Array(idx.flatMap(() => [1, 2, 1, 2]));
  const h = hdr({ seq: 0, buffers: ["layer_idx", "layer_range", "layer_q"], layers: { shape: [2, 2, 2], codes: LAYER_CODES } });
  return [h, [new Uint32Array(idx).buffer, r.buffer, q.buffer]];
}

function sampled(withFlags = true): RunStore {
  const s = new RunStore();
  s.reset(meta, true);
  const text = Array.from({ length: N }, (_, i) => ` t${i}`);
  const times = new Float32Array(Array.from({ length: N }, (_, i) => [i * 10, i * 10 + 10]).flat());
  s.receive(
    hdr({
      seq: 1,
      buffers: ["tok_time", "te_j"],
      tokens: {
        first: 0,
        text,
        phase: text.map((_, i) => (i ? "decode" : "prefill")),
        ...(withFlags ? { instrumented: text.map((_, i) => INST.includes(i)) } : {}),
      },
      token_energy: { first: 0 },
    }),
    [times.buffer, new Float32Array(N).fill(0.5).buffer],
  );
  const [h, b] = rows(INST);
  s.receive({ ...h, seq: 2 }, b);
  return s;
}

test("the heatmap steps over the instrumented tokens only", () => {
  const s = sampled();
  assert.equal(s.nInstr, 4);
  assert.equal(s.nBare, 20);
  assert.deepEqual(s.layerTokens(), INST);
  // a pick between them lands on the nearest instrumented token (the earlier on a tie)
  assert.equal(layerToken(s, 3), 0);
  assert.equal(layerToken(s, 5), 7);
  assert.equal(layerToken(s, 11), 7);
  assert.equal(layerToken(s, 12), 15);
  assert.equal(layerToken(s, 100), 22);
  for (let t = 0; t < N; t++) assert.ok(INST.includes(layerToken(s, t)), `pick ${t}`);
  assert.equal(tokenLabel(s, 15), 'token 15: " t15" (instrumented 3 of 4; 24 tokens)');
  assert.equal(heatCaption(s, "token", 15, "time_ms")[0], tokenLabel(s, 15));
});

test("a bare token is never shown as zeros: no row, NaN values, not in the mean", () => {
  const s = sampled();
  // a bare token's NaN row (an older kernel sent one) is dropped, and never counted
  const [h, b] = rows([3], true);
  s.receive({ ...h, seq: 3 }, b);
  assert.ok(!s.hasLayers(3));
  assert.ok(Number.isNaN(s.value(3, 0, 0, 0)));
  assert.ok(s.value(7, 0, 0, 0) > 0);
  assert.deepEqual(s.layerTokens(), INST);
  assert.equal(s.meanTokens, 3);
  assert.equal(meanLabel(s), "mean over 3 instrumented tokens of 23 decode tokens (prefill excluded)");
  assert.ok(heatCaption(s, "mean", 0, "time_ms")[0].startsWith("mean over 3 instrumented tokens of 23"));
  assert.ok(s.mean(0, 0, 0) > 0);
  const tip = tokenTip(s, 3);
  assert.ok(tip.includes("bare: ran at plain speed (no layer row)"), tip.join("\n"));
  assert.ok(tokenTip(s, 7).includes("instrumented: layer hooks ran"));
});

test("a row sent before its token was known bare is dropped from the mean", () => {
  const s = new RunStore();
  s.reset(meta, true);
  const times = new Float32Array([0, 10, 10, 20, 20, 30]);
  const tok = (seq: number, flags?: boolean[]) =>
    s.receive(hdr({ seq, buffers: ["tok_time"], tokens: { first: 0, text: ["a", "b", "c"], phase: ["prefill", "decode", "decode"], ...(flags ? { instrumented: flags } : {}) } }), [times.buffer]);
  tok(1);
  const [h, b] = rows([0, 1, 2]);
  s.receive({ ...h, seq: 2 }, b);
  assert.equal(s.meanTokens, 2);
  tok(3, [true, false, true]);
  assert.equal(s.meanTokens, 1);
  assert.deepEqual(s.layerTokens(), [0, 2]);
});

test("a run with every token instrumented (or no flags) behaves as before", () => {
  for (const s of [sampled(false)]) {
    assert.equal(s.nBare, 0);
    assert.deepEqual(s.layerTokens(), INST);
    assert.equal(tokenLabel(s, 7), 'token 7: " t7"');
    assert.equal(meanLabel(s), "mean over 3 decode tokens (prefill excluded)");
    assert.equal(overheadText(s), null);
    assert.ok(!tokenTip(s, 7).some((l) => l.startsWith("instrumented")));
  }
});

test("status and cards: the profiling overhead, the basis of J/token, estimate ranges", () => {
  const s = sampled();
  assert.equal(overheadText(s), "4 instrumented, 20 bare so far");
  s.receive(
    hdr({
      seq: 3,
      status: { status: "completed", reason: null },
      summary: {
        decode_tokens: 23,
        decode_j_per_token: 1.2,
        total_energy_j: 30,
        decode_energy_j: 27.6,
        decode_energy_measured_j: 28,
        energy_ranges_j: { total_energy_j: [15, 45], decode_j_per_token: [0.6, 1.8] },
        profiling_overhead: { fraction: 0.041, added_fraction: 0.004, instrumented_tokens: 3, bare_tokens: 20, basis: "median" },
        figure_basis: { decode_j_per_token: "the 20 bare decode tokens of 23 (not the instrumented)" },
        warnings: [],
      },
    }),
    [],
  );
  assert.equal(overheadText(s), "+4.1 % on 3 instrumented tokens, 20 bare");
  const item = statusItems(s).find((i) => i.label === "profiling overhead");
  assert.ok(item && item.value === "+4.1 % on 3 instrumented tokens, 20 bare");
  const cards = summaryCards(s);
  const jpt = cards.find((c) => c.key === "decode_j_per_token")!;
  assert.equal(jpt.sub, "from 20 bare decode tokens of 23");
  assert.equal(jpt.range, "600 mJ–1.80 J, estimate ±50 %");
  assert.ok(jpt.title?.includes("rests on: the 20 bare decode tokens of 23"), jpt.title);
  assert.equal(cards.find((c) => c.key === "decode_energy_j")!.sub, "bare J/token × 23 tokens (28.0 J as measured)");
  assert.equal(cards.find((c) => c.key === "prefill_energy_j")!.range, undefined);
});
