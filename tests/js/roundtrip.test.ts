// The round-trip contract: a snapshot the Python encoder wrote (llm_energy_widget.view.wire,
// from tests/js/test_node_units.py) decoded by the store, against the values Python wrote with it.
// Skipped without LEW_WIRE_FIXTURE (plain `npm test`).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { POWER_COLS } from "../../js/protocol";
import { RunStore } from "../../js/run_store";

const dir = process.env.LEW_WIRE_FIXTURE;
const read = (name: string) => JSON.parse(readFileSync(join(dir!, name), "utf8"));

interface Expected {
  n_tokens: number;
  token_text: string[];
  token_energy_j: number[];
  /** float32 power rows as the encoder sent them, [reading][POWER_COLS] (null: NaN). */
  power: (number | null)[][];
  /** run.layers, [token][layer][component][metric_names] (null: NaN). */
  layers: (number | null)[][][][];
  layers_ms: number[];
  /** wire.relative_precision of each token's live metric ranges, [token][live_metric]. */
  precision: (number | null)[][];
  total_energy_j: number;
}

function load(): { store: RunStore; want: Expected } {
  const meta = read("meta.json");
  const header = read("header.json");
  const buffers = header.buffers.map((_: string, i: number) => {
    const b = readFileSync(join(dir!, `buffer_${i}.bin`));
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  });
  const store = new RunStore();
  store.reset(meta, false);
  store.receive(header, buffers);
  return { store, want: read("expected.json") };
}

const close = (a: number, b: number, rel: number, abs = 0) => Math.abs(a - b) <= rel * Math.abs(b) + abs;

test("the Python encoder's snapshot decodes to the run's values", { skip: dir ? false : "LEW_WIRE_FIXTURE not set" }, () => {
  const { store: s, want } = load();
  assert.ok(s.meta, s.refused ?? "no meta");
  assert.deepEqual(s.meta.power_cols, [...POWER_COLS]);
  // tokens, their energies
  assert.equal(s.nTokens, want.n_tokens);
  assert.deepEqual(s.tokText, want.token_text);
  want.token_energy_j.forEach((e, t) => assert.ok(close(s.tokEnergy.data[t], e, 1e-6), `token ${t} energy`));
  // every power column, exactly the float32 values sent
  assert.equal(s.nPower, want.power.length);
  POWER_COLS.forEach((name, c) => {
    const col = s.col(name);
    want.power.forEach((row, r) => {
      const v = row[c];
      if (v === null) assert.ok(Number.isNaN(col[r]), `${name}[${r}] NaN`);
      else assert.equal(col[r], v, `${name}[${r}]`);
    });
  });
  // layers: every cell of every metric within the documented precision of run.layers
  const names = s.metricNames;
  let checked = 0;
  want.layers.forEach((rows, t) => {
    assert.ok(s.hasLayers(t), `token ${t} has its row`);
    assert.ok(close(s.hookedMs(t), want.layers_ms[t], 1e-6), `token ${t} hooked time`);
    rows.forEach((comps, l) =>
      comps.forEach((vals, c) =>
        vals.forEach((x, m) => {
          const v = s.value(t, l, c, m);
          if (x === null) return assert.ok(Number.isNaN(v), `${names[m]} NaN`);
          const p = s.precision(t, m);
          const live = s.meta!.live_metrics.indexOf(names[m] === "energy_j" ? "time_ms" : names[m]);
          const py = want.precision[t][live];
          // the JS bound is the Python one (times: with the scale to the exact hooked time)
          if (py !== null && names[m] !== "time_ms" && names[m] !== "energy_j") assert.ok(close(p, py, 1e-5), `bound ${p} vs ${py}`);
          assert.ok(p === p, `${names[m]} has a bound`);
          assert.ok(close(v, x, p * (1 + 1e-6), 1e-12), `token ${t} ${l}/${c} ${names[m]}: ${v} vs ${x} (±${p})`);
          checked++;
        }),
      ),
    );
  });
  assert.ok(checked > 0);
  assert.equal(s.status.status, "completed");
  assert.ok(close(s.summary!.total_energy_j, want.total_energy_j, 1e-9));
});
