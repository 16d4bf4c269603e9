// Binary buffers -> typed arrays, without copying when the buffer is aligned.

import { BUFFER_DTYPES } from "./protocol";
import type { Buffer, Header } from "./types";

function view(b: Buffer): { buffer: ArrayBuffer; offset: number; length: number } {
  if (b instanceof ArrayBuffer) return { buffer: b, offset: 0, length: b.byteLength };
  return { buffer: b.buffer as ArrayBuffer, offset: b.byteOffset, length: b.byteLength };
}

type Ctor<T> = { new (b: ArrayBuffer, o: number, n: number): T; BYTES_PER_ELEMENT: number };

function typed<T>(b: Buffer, C: Ctor<T>): T {
  const { buffer, offset, length } = view(b);
  const n = Math.floor(length / C.BYTES_PER_ELEMENT);
  if (offset % C.BYTES_PER_ELEMENT === 0) return new C(buffer, offset, n);
  return new C(buffer.slice(offset, offset + length), 0, n);
}

export interface Decoded {
  power?: Float32Array;
  tok_time?: Float32Array;
  tok_id?: Int32Array;
  te_idx?: Uint32Array;
  te_j?: Float32Array;
  layer_idx?: Uint32Array;
  layer_range?: Float32Array;
  layer_q?: Uint8Array;
  layer_ms?: Float32Array;
  lt_idx?: Uint32Array;
  lt_range?: Float32Array;
  lt_q?: Uint8Array;
  lt_ms?: Float32Array;
  lm?: Float32Array;
}

type Typed = Float32Array | Int32Array | Uint32Array | Uint8Array;
const CTORS: Record<string, Ctor<Typed>> = {
  float32: Float32Array,
  int32: Int32Array,
  uint32: Uint32Array,
  uint8: Uint8Array,
};
const KINDS: Record<string, Ctor<Typed>> = Object.fromEntries(
  Object.entries(BUFFER_DTYPES).map(([name, dtype]) => [name, CTORS[dtype]]),
);

function run(first: number, n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = first + i;
  return a;
}

export function decode(header: Header, buffers: Buffer[]): Decoded {
  const out: Record<string, unknown> = {};
  header.buffers.forEach((name, i) => {
    const C = KINDS[name];
    if (C && buffers[i] !== undefined) out[name] = typed(buffers[i], C);
  });
  const d = out as Decoded;
  // indices in a row are sent as their first one
  const te = header.token_energy?.first;
  if (!d.te_idx && te !== undefined && d.te_j) d.te_idx = run(te, d.te_j.length);
  const ly = header.layers;
  if (!d.layer_idx && ly?.first !== undefined && d.layer_range && ly.shape) {
    d.layer_idx = run(ly.first, d.layer_range.length / (2 * ly.shape[2]));
  }
  const lt = header.layer_time;
  if (!d.lt_idx && lt?.first !== undefined && d.lt_range) d.lt_idx = run(lt.first, d.lt_range.length / 2);
  return d;
}

/** base64 -> DataView, for data embedded in the HTML report. */
export function fromBase64(s: string): DataView {
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}
