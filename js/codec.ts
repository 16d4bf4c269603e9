// Binary buffers -> typed arrays, without copying when the buffer is aligned.

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
}

const KINDS: Record<string, Ctor<any>> = {
  power: Float32Array,
  tok_time: Float32Array,
  tok_id: Int32Array,
  te_idx: Uint32Array,
  te_j: Float32Array,
  layer_idx: Uint32Array,
  layer_range: Float32Array,
  layer_q: Uint8Array,
};

export function decode(header: Header, buffers: Buffer[]): Decoded {
  const out: Record<string, unknown> = {};
  header.buffers.forEach((name, i) => {
    const C = KINDS[name];
    if (C && buffers[i] !== undefined) out[name] = typed(buffers[i], C);
  });
  return out as Decoded;
}

/** base64 -> DataView, for data embedded in the HTML report. */
export function fromBase64(s: string): DataView {
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}
