// The wire decoder (js/codec.ts): buffers by name to the typed arrays protocol.BUFFER_DTYPES gives.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decode, fromBase64 } from "../../js/codec";
import { BUFFER_DTYPES } from "../../js/protocol";
import type { Header } from "../../js/types";

const header = (over: Partial<Header>): Header => ({ type: "delta", seq: 1, run_key: "k", buffers: [], sent_ms: 0, ...over });

test("every buffer name decodes to its dtype's typed array", () => {
  const ctor: Record<string, unknown> = { float32: Float32Array, int32: Int32Array, uint32: Uint32Array, uint8: Uint8Array };
  const names = Object.keys(BUFFER_DTYPES) as (keyof typeof BUFFER_DTYPES)[];
  const d = decode(header({ buffers: names }), names.map(() => new ArrayBuffer(8))) as Record<string, unknown>;
  for (const n of names) assert.equal((d[n] as object).constructor, ctor[BUFFER_DTYPES[n]], n);
});

test("an aligned view is not copied, an unaligned one is", () => {
  const buf = new ArrayBuffer(13);
  new Float32Array(buf, 4, 2).set([1.5, -2]);
  const aligned = decode(header({ buffers: ["te_j"] }), [new DataView(buf, 4, 8)]).te_j!;
  assert.equal(aligned.buffer, buf);
  assert.deepEqual([...aligned], [1.5, -2]);
  const bytes = new Uint8Array(buf);
  bytes.copyWithin(1, 4, 12);
  const odd = decode(header({ buffers: ["te_j"] }), [new DataView(buf, 1, 8)]).te_j!;
  assert.notEqual(odd.buffer, buf);
  assert.deepEqual([...odd], [1.5, -2]);
});

test("an unknown buffer name or a missing buffer is skipped", () => {
  const d = decode(header({ buffers: ["nope" as never, "te_j"] }), [new ArrayBuffer(4)]);
  assert.equal(Object.keys(d).length, 0);
});

test("indices in a row come as their first one", () => {
  const d = decode(
    header({
      buffers: ["te_j", "layer_range", "lt_range"],
      token_energy: { first: 3 },
      layers: { shape: [1, 1, 2], first: 5 },
      layer_time: { shape: [1, 1], first: 7 },
    }),
    [new Float32Array([1, 2]).buffer, new Float32Array(2 * 2 * 3).buffer, new Float32Array(2 * 2).buffer],
  );
  assert.deepEqual([...d.te_idx!], [3, 4]);
  assert.deepEqual([...d.layer_idx!], [5, 6, 7]);
  assert.deepEqual([...d.lt_idx!], [7, 8]);
});

test("an index buffer wins over `first`", () => {
  const d = decode(header({ buffers: ["te_idx", "te_j"], token_energy: { first: 0 } }), [
    new Uint32Array([2, 9]).buffer,
    new Float32Array([1, 2]).buffer,
  ]);
  assert.deepEqual([...d.te_idx!], [2, 9]);
});

test("fromBase64 gives the bytes", () => {
  const v = fromBase64(Buffer.from([0, 1, 254, 255]).toString("base64"));
  assert.deepEqual([...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)], [0, 1, 254, 255]);
});
