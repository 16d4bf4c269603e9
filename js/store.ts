// One run's columns in the browser, shared by every view of a model. Applying a delta or snapshot
// is idempotent (tokens/layers by index, power by time), so a snapshot that overlaps live deltas
// never doubles anything.

import { decode } from "./codec";
import type { Buffer, Header, Meta, Phase } from "./types";

const Q_NAN = 255;
const Q_MAX = 254;

class Grow<T extends Float64Array | Int32Array | Uint8Array | Float32Array> {
  data: T;
  constructor(private make: (n: number) => T, n = 256) {
    this.data = make(n);
  }
  ensure(n: number, fill?: number): void {
    if (n <= this.data.length) return;
    let cap = this.data.length;
    while (cap < n) cap *= 2;
    const next = this.make(cap);
    if (fill !== undefined) next.fill(fill);
    next.set(this.data);
    this.data = next;
  }
}

export class RunStore {
  meta: Meta | null = null;
  runKey = "";
  seq = 0;
  synced = true;
  version = 0;
  private queue: [Header, Buffer[]][] = [];
  private listeners = new Set<() => void>();

  // power: one column per meta.power_cols entry
  nPower = 0;
  power: Grow<Float64Array>[] = [];
  // tokens
  nTokens = 0;
  tokStart = new Grow((n) => new Float64Array(n));
  tokEnd = new Grow((n) => new Float64Array(n));
  tokId = new Grow((n) => new Int32Array(n));
  tokEnergy = new Grow((n) => new Float64Array(n).fill(NaN));
  tokText: string[] = [];
  tokPhase: (string | null)[] = [];
  // layers: uint8 codes [token][layer][component][live metric], ranges [token][metric][lo, hi]
  L = 0;
  C = 0;
  M = 0;
  private q = new Grow((n) => new Uint8Array(n).fill(Q_NAN));
  private range = new Grow((n) => new Float32Array(n));
  private hasRow = new Grow((n) => new Uint8Array(n));
  private rowTime = new Grow((n) => new Float64Array(n));
  nRows = 0;
  private sums = new Float64Array(0);
  private counts = new Float64Array(0);
  private timeM = -1;
  metricNames: string[] = [];

  phases: Phase[] = [];
  status: { status: string; reason: string | null } = { status: "pending", reason: null };
  error: { message: string; type: string } | null = null;
  summary: Record<string, any> | null = null;
  /** Timing of the last applied message, for the benchmark and tests. */
  last: { seq: number; event_ms?: number; sent_ms: number; recv_ms: number } | null = null;

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private changed(): void {
    this.version++;
    this.listeners.forEach((cb) => cb());
  }

  /** A new run (or the first meta of a fresh model). `live`: deltas from seq 1 will follow. */
  reset(meta: Meta | null, live: boolean): void {
    this.meta = meta && meta.run_key ? meta : null;
    this.runKey = this.meta ? this.meta.run_key : "";
    this.seq = 0;
    this.synced = live || !this.meta;
    this.queue = [];
    const m = this.meta;
    this.power = (m ? m.power_cols : []).map(() => new Grow((n) => new Float64Array(n)));
    this.nPower = 0;
    this.nTokens = 0;
    this.tokStart = new Grow((n) => new Float64Array(n));
    this.tokEnd = new Grow((n) => new Float64Array(n));
    this.tokId = new Grow((n) => new Int32Array(n));
    this.tokEnergy = new Grow((n) => new Float64Array(n).fill(NaN));
    this.tokText = [];
    this.tokPhase = [];
    this.L = m ? m.layer_names.length : 0;
    this.C = m ? m.component_names.length : 0;
    this.M = m ? m.live_metrics.length : 0;
    this.metricNames = m ? m.metric_names.slice() : [];
    this.timeM = m ? m.live_metrics.indexOf("time_ms") : -1;
    this.q = new Grow((n) => new Uint8Array(n).fill(Q_NAN));
    this.range = new Grow((n) => new Float32Array(n));
    this.hasRow = new Grow((n) => new Uint8Array(n));
    this.rowTime = new Grow((n) => new Float64Array(n));
    this.nRows = 0;
    const cells = this.L * this.C * this.metricNames.length;
    this.sums = new Float64Array(cells);
    this.counts = new Float64Array(cells);
    this.phases = [];
    this.status = { status: "pending", reason: null };
    this.error = null;
    this.summary = null;
    this.last = null;
    this.changed();
  }

  /** A delta or snapshot from the kernel (custom message or the `snapshot` trait). */
  receive(header: Header, buffers: Buffer[]): void {
    if (!header || header.run_key !== this.runKey) return;
    if (header.type === "snapshot") {
      this.apply(header, buffers);
      this.seq = Math.max(this.seq, header.seq);
      if (!this.synced) {
        this.synced = true;
        const queued = this.queue;
        this.queue = [];
        for (const [h, b] of queued) if (h.seq > this.seq) this.receive(h, b);
      }
      return;
    }
    if (!this.synced) {
      this.queue.push([header, buffers]);
      return;
    }
    if (header.seq <= this.seq) return;
    this.seq = header.seq;
    this.apply(header, buffers);
  }

  private apply(h: Header, buffers: Buffer[]): void {
    const d = decode(h, buffers);
    if (d.power) this.applyPower(d.power);
    if (h.tokens && d.tok_time) this.applyTokens(h.tokens, d.tok_time, d.tok_id);
    if (d.te_idx && d.te_j) {
      for (let i = 0; i < d.te_idx.length; i++) this.setEnergy(d.te_idx[i], d.te_j[i]);
    }
    if (h.layers && d.layer_idx && d.layer_range && d.layer_q) {
      this.applyLayers(h.layers.shape, d.layer_idx, d.layer_range, d.layer_q);
    }
    if (h.phases) {
      for (const p of h.phases) {
        const i = this.phases.findIndex((x) => x.name === p.name && x.start_ms === p.start_ms);
        if (i >= 0) this.phases[i] = p;
        else this.phases.push(p);
      }
      this.phases.sort((a, b) => a.start_ms - b.start_ms);
    }
    if (h.status) this.status = h.status;
    if (h.error) this.error = h.error;
    if (h.summary) this.summary = h.summary;
    this.last = { seq: h.seq, event_ms: h.event_ms, sent_ms: h.sent_ms, recv_ms: Date.now() };
    this.changed();
  }

  private applyPower(p: Float32Array): void {
    const k = this.power.length;
    if (!k) return;
    const n = Math.floor(p.length / k);
    for (let r = 0; r < n; r++) {
      const t = p[r * k];
      if (this.nPower > 0 && t <= this.power[0].data[this.nPower - 1]) continue;
      const i = this.nPower++;
      for (let c = 0; c < k; c++) {
        this.power[c].ensure(this.nPower);
        this.power[c].data[i] = p[r * k + c];
      }
    }
  }

  private applyTokens(
    t: NonNullable<Header["tokens"]>,
    times: Float32Array,
    ids: Int32Array | undefined,
  ): void {
    for (let j = 0; j < t.text.length; j++) {
      const i = t.first + j;
      const n = Math.max(this.nTokens, i + 1);
      this.tokStart.ensure(n);
      this.tokEnd.ensure(n);
      this.tokId.ensure(n);
      this.tokEnergy.ensure(n, NaN);
      this.tokStart.data[i] = times[2 * j];
      this.tokEnd.data[i] = times[2 * j + 1];
      this.tokId.data[i] = ids ? ids[j] : -1;
      this.tokText[i] = t.text[j];
      this.tokPhase[i] = t.phase[j];
      this.nTokens = n;
    }
  }

  private setEnergy(i: number, e: number): void {
    this.tokEnergy.ensure(i + 1, NaN);
    const had = i < this.nRows && this.hasRow.data[i] === 1;
    if (had) this.accumulate(i, -1);
    this.tokEnergy.data[i] = e;
    if (had) this.accumulate(i, +1);
  }

  private applyLayers(
    shape: [number, number, number],
    idx: Uint32Array,
    ranges: Float32Array,
    codes: Uint8Array,
  ): void {
    const [L, C, M] = shape;
    if (L !== this.L || C !== this.C || M !== this.M) return;
    const cell = L * C * M;
    for (let j = 0; j < idx.length; j++) {
      const t = idx[j];
      this.q.ensure((t + 1) * cell, Q_NAN);
      this.range.ensure((t + 1) * M * 2);
      this.hasRow.ensure(t + 1);
      this.rowTime.ensure(t + 1);
      const had = this.hasRow.data[t] === 1;
      if (had) this.accumulate(t, -1);
      this.q.data.set(codes.subarray(j * cell, (j + 1) * cell), t * cell);
      this.range.data.set(ranges.subarray(j * M * 2, (j + 1) * M * 2), t * M * 2);
      this.hasRow.data[t] = 1;
      this.nRows = Math.max(this.nRows, t + 1);
      let sum = 0;
      if (this.timeM >= 0) {
        for (let lc = 0; lc < L * C; lc++) {
          const v = this.liveValue(t, lc, this.timeM);
          if (v === v) sum += v;
        }
      }
      this.rowTime.data[t] = sum;
      this.accumulate(t, +1);
    }
  }

  private liveValue(t: number, lc: number, m: number): number {
    const code = this.q.data[(t * this.L * this.C + lc) * this.M + m];
    if (code === Q_NAN) return NaN;
    const r = (t * this.M + m) * 2;
    const lo = this.range.data[r];
    const hi = this.range.data[r + 1];
    return lo + (code / Q_MAX) * (hi - lo);
  }

  hasLayers(t: number): boolean {
    return t >= 0 && t < this.nRows && this.hasRow.data[t] === 1;
  }

  /** Value of metric `metric` (index into meta.metric_names) at token t, layer l, component c. */
  value(t: number, l: number, c: number, metric: number): number {
    if (!this.hasLayers(t)) return NaN;
    const name = this.metricNames[metric];
    const lc = l * this.C + c;
    if (name === "energy_j") {
      const e = this.tokEnergy.data[t];
      const total = this.rowTime.data[t];
      if (this.timeM < 0 || !(total > 0) || e !== e) return NaN;
      return (this.liveValue(t, lc, this.timeM) / total) * e;
    }
    const m = this.meta ? this.meta.live_metrics.indexOf(name) : -1;
    return m < 0 ? NaN : this.liveValue(t, lc, m);
  }

  /** Mean over every token that has the value (kept incrementally, so it costs O(cells)). */
  mean(l: number, c: number, metric: number): number {
    const k = (l * this.C + c) * this.metricNames.length + metric;
    return this.counts[k] > 0 ? this.sums[k] / this.counts[k] : NaN;
  }

  private accumulate(t: number, sign: number): void {
    const nm = this.metricNames.length;
    for (let l = 0; l < this.L; l++) {
      for (let c = 0; c < this.C; c++) {
        for (let m = 0; m < nm; m++) {
          const v = this.value(t, l, c, m);
          if (v !== v) continue;
          const k = (l * this.C + c) * nm + m;
          this.sums[k] += sign * v;
          this.counts[k] += sign;
        }
      }
    }
  }

  col(name: string): Float64Array {
    const i = this.meta ? this.meta.power_cols.indexOf(name) : -1;
    return i >= 0 ? this.power[i].data : new Float64Array(0);
  }

  /** Cumulative energy E(t) from the power column, interpolated (NaN outside the samples). */
  energyAt(tMs: number): number {
    const t = this.col("t_ms");
    const e = this.col("energy_j");
    const n = this.nPower;
    if (n < 2 || tMs < t[0] || tMs > t[n - 1]) return NaN;
    let lo = 0;
    let hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (t[mid] <= tMs) lo = mid;
      else hi = mid;
    }
    const span = t[hi] - t[lo];
    return span > 0 ? e[lo] + ((e[hi] - e[lo]) * (tMs - t[lo])) / span : e[lo];
  }
}
