// The widget's predicted-vs-measured lines (summary.predicted, from view/predicted.py): the
// numbers of tests/view/test_predicted_view.py, formatted by hand.
import assert from "node:assert/strict";
import { test } from "node:test";
import { predictedLines } from "../../js/views/summary";

const predicted = {
  kind: "modeled",
  measured_kind: "measured",
  n_runs: 8,
  source: "rapl",
  host: "box-a",
  rows: [
    { key: "total_energy_j", figure: "total energy (prefill + decode)", unit: "J", predicted: 13.54, measured: 13.4888, error: 0.003796, within: true },
    { key: "decode_j_per_token", figure: "decode J/token", unit: "J/token", predicted: 0.41, measured: 0.40795, error: 0.005025, within: false },
    { key: "prefill_energy_j", figure: "prefill energy", unit: "J", predicted: 1.65, measured: 1.65825, error: -0.004975, within: true },
  ],
};

test("predicted lines name the history and give each figure's error", () => {
  assert.deepEqual(predictedLines({ predicted }), [
    "predicted (modeled) from 8 earlier runs of rapl on box-a; measured: measured",
    "total energy (prefill + decode): predicted 13.5 J, measured 13.5 J, +0.4 %",
    "decode J/token: predicted 410 mJ, measured 408 mJ, +0.5 % (outside the interval)",
    "prefill energy: predicted 1.65 J, measured 1.66 J, −0.5 %",
  ]);
});

test("no prediction, no lines", () => {
  assert.deepEqual(predictedLines({}), []);
  assert.deepEqual(predictedLines({ predicted: { rows: [] } }), []);
});
