// One run's columns in the browser, shared by every view of a model. Applying a delta or snapshot
// is idempotent (tokens/layers by index, power by time), so a snapshot that overlaps live deltas
// never doubles anything.

import { decode } from "./codec";
import { DERIVED_FROM, LAYER_CODES, Q_LOG_STEPS, Q_MAX, Q_NAN, Q_ZERO, refusal } from "./protocol";
import type { Buffer, Header, Meta, Phase, SavedMeans, Summary } from "./types";


/** What the views say about the power source: the summary's figures once the run is done. */
export interface PowerInfo {
  source: string | null;
  kind: string;
  scope: string | null;
  resolution_ms: number | null;
  interval_ms: number | null;
  power_window_ms: number | null;
  description: string | null;
}

const LIVE = new Set(["queued", "pending", "running"]);
const LAG_MS = 250;
const num = (x: unknown): number | null => (typeof x === "number" && isFinite(x) ? x : null);

class Grow<T extends Float64Array | Int32Array | Int8Array | Uint8Array | Float32Array> {
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
  /** Why the last meta was refused (a newer wire protocol than this view reads), or null. */
  refused: string | null = null;
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
  /** 1: instrumented, 0: bare (no layer row), -1: unknown (token level, an older kernel). */
  tokInstr = new Grow((n) => new Int8Array(n).fill(-1));
  /** The batch row that chose each token (0 for a single prompt; absent on the wire: 0). */
  tokSeq = new Grow((n) => new Int32Array(n));
  /** Sequences in the batch seen so far (1 for a single prompt). */
  nSequences = 1;
  /** Tokens flagged instrumented and bare so far (sampled instrumentation: nBare > 0). */
  nInstr = 0;
  nBare = 0;
  private stepCache: { v: number; list: number[] } = { v: -1, list: [] };
  // layers: uint8 codes [token][layer][component][live metric], ranges [token][metric][lo, hi];
  // layerMs: each row's hooked time, exact from the kernel; timeScale: layerMs / decoded sum.
  L = 0;
  C = 0;
  M = 0;
  private q = new Grow((n) => new Uint8Array(n).fill(Q_NAN));
  private range = new Grow((n) => new Float32Array(n));
  private hasRow = new Grow((n) => new Uint8Array(n));
  private layerMs = new Grow((n) => new Float64Array(n).fill(NaN));
  private timeScale = new Grow((n) => new Float64Array(n).fill(1));
  private logCodes = false;
  nRows = 0;
  // the mean over the run: decode tokens only (the prefill token carries the whole prompt)
  private sums = new Float64Array(0);
  private counts = new Float64Array(0);
  /** Tokens in the mean; and their summed hooked time, token time, outside-layers energy. */
  private meanCount = 0;
  private meanSums = { hooked: 0, token: 0, outsideJ: 0, outsideN: 0 };
  private timeM = -1;
  /** For each of meta.metric_names: the live metric its value is decoded from (-1: none). */
  private metricLive: number[] = [];
  private table = new Float64Array(0);
  metricNames: string[] = [];
  /**
   * A saved snapshot (widget.snapshot_of with full_rows / time_rows): the exact means it carries
   * ([layer][component][metric], NaN for a metric it does not carry), and which of the rows it
   * holds. Rows of `partial` tokens hold their times only (no activation statistics).
   */
  saved: SavedMeans | null = null;
  private exactMean: Float64Array | null = null;
  private exactMetric: boolean[] = [];
  private partial = new Grow((n) => new Uint8Array(n));

  phases: Phase[] = [];
  /** The latest event time of the run (token or phase) and when it arrived (performance.now). */
  private anchor = { t: -Infinity, at: 0 };
  /** The highest elapsed time shown for this run while live: elapsed never goes backwards. */
  private elapsedShown = -Infinity;
  status: { status: string; reason: string | null } = { status: "pending", reason: null };
  error: { message: string; type: string } | null = null;
  summary: Summary | null = null;
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
    this.refused = refusal(meta);
    this.meta = meta && meta.run_key && !this.refused ? meta : null;
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
    this.tokInstr = new Grow((n) => new Int8Array(n).fill(-1));
    this.tokSeq = new Grow((n) => new Int32Array(n));
    this.nSequences = 1;
    this.nInstr = this.nBare = 0;
    this.L = m ? m.layer_names.length : 0;
    this.C = m ? m.component_names.length : 0;
    this.M = m ? m.live_metrics.length : 0;
    this.metricNames = m ? m.metric_names.slice() : [];
    this.timeM = m ? m.live_metrics.indexOf("time_ms") : -1;
    this.metricLive = this.metricNames.map((name) =>
      m ? m.live_metrics.indexOf(DERIVED_FROM[name] ?? name) : -1,
    );
    this.q = new Grow((n) => new Uint8Array(n).fill(Q_NAN));
    this.range = new Grow((n) => new Float32Array(n));
    this.hasRow = new Grow((n) => new Uint8Array(n));
    this.layerMs = new Grow((n) => new Float64Array(n).fill(NaN));
    this.timeScale = new Grow((n) => new Float64Array(n).fill(1));
    this.logCodes = false;
    this.nRows = 0;
    const cells = this.L * this.C * this.metricNames.length;
    this.sums = new Float64Array(cells);
    this.counts = new Float64Array(cells);
    this.meanCount = 0;
    this.saved = null;
    this.exactMean = null;
    this.exactMetric = [];
    this.partial = new Grow((n) => new Uint8Array(n));
    this.meanSums = { hooked: 0, token: 0, outsideJ: 0, outsideN: 0 };
    this.phases = [];
    this.anchor = { t: -Infinity, at: 0 };
    this.elapsedShown = -Infinity;
    this.status = { status: "pending", reason: null };
    this.error = null;
    this.summary = null;
    this.last = null;
    this.changed();
  }

  /**
   * A delta or snapshot from the kernel (custom message or the `snapshot` trait); `now`: when it
   * arrived (performance.now(); the elapsed clock runs from it).
   */
  receive(header: Header, buffers: Buffer[], now: number = performance.now()): void {
    if (!header || header.run_key !== this.runKey) return;
    if (header.type === "snapshot") {
      this.apply(header, buffers, now);
      this.seq = Math.max(this.seq, header.seq);
      if (!this.synced) {
        this.synced = true;
        const queued = this.queue;
        this.queue = [];
        for (const [h, b] of queued) if (h.seq > this.seq) this.receive(h, b, now);
      }
      return;
    }
    if (!this.synced) {
      this.queue.push([header, buffers]);
      return;
    }
    if (header.seq <= this.seq) return;
    this.seq = header.seq;
    this.apply(header, buffers, now);
  }

  private apply(h: Header, buffers: Buffer[], now: number): void {
    const d = decode(h, buffers);
    if (h.phases) {
      for (const p of h.phases) {
        const i = this.phases.findIndex((x) => x.name === p.name && x.start_ms === p.start_ms);
        if (i >= 0) this.phases[i] = p;
        else this.phases.push(p);
      }
      this.phases.sort((a, b) => a.start_ms - b.start_ms);
    }
    if (d.power) this.applyPower(d.power);
    if (h.tokens && d.tok_time) this.applyTokens(h.tokens, d.tok_time, d.tok_id);
    if (d.te_idx && d.te_j) {
      for (let i = 0; i < d.te_idx.length; i++) this.setEnergy(d.te_idx[i], d.te_j[i]);
    }
    if (h.layers && d.layer_idx && d.layer_range && d.layer_q) {
      this.logCodes = h.layers.codes === LAYER_CODES;
      this.applyLayers(h.layers.shape, d.layer_idx, d.layer_range, d.layer_q, d.layer_ms);
    }
    if (h.layer_time && d.lt_idx && d.lt_range && d.lt_q) {
      this.logCodes = h.layer_time.codes === LAYER_CODES;
      this.applyTimeRows(d.lt_idx, d.lt_range, d.lt_q, d.lt_ms);
    }
    if (h.layer_means && d.lm) this.applyMeans(h.layer_means, d.lm);
    if (h.status) this.status = h.status;
    if (h.error) this.error = h.error;
    if (h.summary) this.summary = h.summary;
    if (h.power_info && this.meta) this.meta = { ...this.meta, power: h.power_info };
    const latest = this.latestEvent(this.phases.filter((p) => p.name !== "baseline"));
    if (latest > this.anchor.t) this.anchor = { t: latest, at: now };
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
      this.tokInstr.ensure(n, -1);
      this.tokSeq.ensure(n, 0);
      const b = t.sequence?.[j] ?? 0;
      this.tokSeq.data[i] = b;
      if (b + 1 > this.nSequences) this.nSequences = b + 1;
      const f = t.instrumented?.[j];
      const flag = f === true ? 1 : f === false ? 0 : -1;
      const was = this.tokInstr.data[i];
      if (was !== flag) {
        this.nInstr += (flag === 1 ? 1 : 0) - (was === 1 ? 1 : 0);
        this.nBare += (flag === 0 ? 1 : 0) - (was === 0 ? 1 : 0);
        this.tokInstr.data[i] = flag;
        // a bare token has no layer row: one sent before its flag (NaN codes) is dropped
        if (flag === 0 && this.hasLayers(i)) {
          this.accumulate(i, -1);
          this.hasRow.data[i] = 0;
        }
      }
      // its time and phase enter the row's energies and whether it is in the mean
      const had = this.hasLayers(i);
      if (had) this.accumulate(i, -1);
      this.tokStart.data[i] = times[2 * j];
      this.tokEnd.data[i] = times[2 * j + 1];
      this.tokId.data[i] = ids ? ids[j] : -1;
      this.tokText[i] = t.text[j];
      this.tokPhase[i] = t.phase[j];
      this.nTokens = n;
      if (had) this.accumulate(i, +1);
    }
  }

  /** The indices of sequence b's tokens, in order (every token for a single prompt). */
  tokensOf(b: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.nTokens; i++) if (this.tokSeq.data[i] === b) out.push(i);
    return out;
  }

  /** Tokens its decoding step chose (a batch's rows still running; 1 for a single prompt):
   * the tokens of one step share its start and end (`core.batch` on the kernel side). */
  stepTokens(i: number): number {
    const s = this.tokStart.data;
    const e = this.tokEnd.data;
    const same = (j: number) => j >= 0 && j < this.nTokens && s[j] === s[i] && e[j] === e[i];
    let a = i;
    let z = i;
    while (same(a - 1)) a--;
    while (same(z + 1)) z++;
    return z - a + 1;
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
    hooked: Float32Array | undefined,
    keep = false,
  ): void {
    const [L, C, M] = shape;
    if (L !== this.L || C !== this.C || M !== this.M) return;
    const cell = L * C * M;
    for (let j = 0; j < idx.length; j++) {
      const t = idx[j];
      this.q.ensure((t + 1) * cell, Q_NAN);
      this.range.ensure((t + 1) * M * 2);
      this.hasRow.ensure(t + 1);
      this.layerMs.ensure(t + 1, NaN);
      this.timeScale.ensure(t + 1, 1);
      const had = this.hasRow.data[t] === 1;
      if (had && keep) continue; // a saved row's times never replace a full row
      if (this.instrumented(t) === false) continue; // a bare token has no row
      if (had) this.accumulate(t, -1);
      this.partial.ensure(t + 1);
      this.partial.data[t] = keep ? 1 : 0;
      this.q.data.set(codes.subarray(j * cell, (j + 1) * cell), t * cell);
      this.range.data.set(ranges.subarray(j * M * 2, (j + 1) * M * 2), t * M * 2);
      this.hasRow.data[t] = 1;
      this.nRows = Math.max(this.nRows, t + 1);
      let sum = 0;
      let any = false;
      if (this.timeM >= 0) {
        for (let lc = 0; lc < L * C; lc++) {
          const v = this.liveValue(t, lc, this.timeM);
          if (v === v) {
            sum += v;
            any = true;
          }
        }
      }
      // the exact hooked time when the kernel sent it: the decoded times are scaled to it, so
      // the cells sum exactly to the token's energy x coverage
      const exact = hooked && j < hooked.length ? hooked[j] : NaN;
      this.layerMs.data[t] = exact === exact ? exact : any ? sum : NaN;
      this.timeScale.data[t] = exact === exact && sum > 0 ? exact / sum : 1;
      this.accumulate(t, +1);
    }
  }

  /**
   * A saved snapshot's time-only rows: expanded to full rows (the other metrics NaN) and applied
   * where the token has no row yet, marked partial.
   */
  private applyTimeRows(idx: Uint32Array, ranges: Float32Array, codes: Uint8Array, hooked?: Float32Array): void {
    const { L, C, M } = this;
    if (this.timeM < 0 || !M) return;
    const n = idx.length;
    const LC = L * C;
    if (codes.length < n * LC || ranges.length < n * 2) return;
    const full = new Uint8Array(n * LC * M).fill(Q_NAN);
    const r = new Float32Array(n * M * 2);
    for (let j = 0; j < n; j++) {
      for (let lc = 0; lc < LC; lc++) full[(j * LC + lc) * M + this.timeM] = codes[j * LC + lc];
      r[(j * M + this.timeM) * 2] = ranges[j * 2];
      r[(j * M + this.timeM) * 2 + 1] = ranges[j * 2 + 1];
    }
    this.applyLayers([L, C, M], idx, r, full, hooked, true);
  }

  /** A saved snapshot's exact means: the mean view shows them for the metrics they cover. */
  private applyMeans(info: SavedMeans, lm: Float32Array): void {
    const nm = this.metricNames.length;
    const k = info.metrics.length;
    const LC = this.L * this.C;
    if (lm.length < LC * k) return;
    const out = new Float64Array(LC * nm).fill(NaN);
    const exact = this.metricNames.map(() => false);
    info.metrics.forEach((name, j) => {
      const m = this.metricNames.indexOf(name);
      if (m < 0) return;
      exact[m] = true;
      for (let lc = 0; lc < LC; lc++) out[lc * nm + m] = lm[lc * k + j];
    });
    this.saved = info;
    this.exactMean = out;
    this.exactMetric = exact;
  }

  /** The mean of `metric` is the kernel's exact one (a saved snapshot), not decoded codes. */
  meanIsExact(metric: number): boolean {
    return this.exactMetric[metric] === true;
  }

  /** Token t has a row with its layer times only: its activation statistics were not saved. */
  timesOnly(t: number): boolean {
    return this.hasLayers(t) && this.partial.data[t] === 1;
  }

  /** A saved snapshot left out token t's layer row (a live view can ask the kernel for it). */
  rowLeftOut(t: number): boolean {
    return this.saved !== null && t >= 0 && t < this.nTokens && !this.hasLayers(t) && this.instrumented(t) !== false;
  }

  /** Token t ran with the layer hooks (true), bare (false: no row), or unknown (null). */
  instrumented(t: number): boolean | null {
    const f = t >= 0 && t < this.nTokens ? this.tokInstr.data[t] : -1;
    return f === 1 ? true : f === 0 ? false : null;
  }

  /**
   * The tokens the heatmap steps over: those with a layer row (or one a saved view left out),
   * never a bare token. With every token instrumented, every token with a row, as before.
   */
  layerTokens(): number[] {
    if (this.stepCache.v === this.version) return this.stepCache.list;
    const list: number[] = [];
    const n = Math.max(this.nRows, this.saved ? this.nTokens : 0);
    for (let t = 0; t < n; t++) if (this.hasLayers(t) || this.rowLeftOut(t)) list.push(t);
    this.stepCache = { v: this.version, list };
    return list;
  }

  /** Decode tokens so far (the prefill's left out), bare ones included. */
  get decodeTokens(): number {
    let n = 0;
    for (let t = 0; t < this.nTokens; t++) if (this.tokPhase[t] !== "prefill") n++;
    return n;
  }

  /** Tokens in the mean over the run (the decode tokens). */
  get meanTokens(): number {
    return this.saved ? this.saved.tokens : this.meanCount;
  }

  /** All 256 codes of token t's live metric m, decoded, into out[at..at + 256). */
  private decodeTable(t: number, m: number, out: Float64Array, at: number): void {
    const r = (t * this.M + m) * 2;
    const lo = this.range.data[r];
    const hi = this.range.data[r + 1];
    if (this.logCodes && lo > 0) {
      const k = Math.log(hi / lo) / Q_LOG_STEPS;
      out[at + Q_ZERO] = 0;
      for (let c = 1; c <= Q_MAX; c++) out[at + c] = lo * Math.exp((c - 1) * k);
    } else {
      for (let c = 0; c <= Q_MAX; c++) out[at + c] = lo + (c / Q_MAX) * (hi - lo);
    }
    out[at + Q_NAN] = NaN;
  }

  private liveValue(t: number, lc: number, m: number): number {
    const code = this.q.data[(t * this.L * this.C + lc) * this.M + m];
    if (code === Q_NAN) return NaN;
    const r = (t * this.M + m) * 2;
    const lo = this.range.data[r];
    const hi = this.range.data[r + 1];
    if (this.logCodes && lo > 0) {
      return code === Q_ZERO ? 0 : lo * Math.pow(hi / lo, (code - 1) / Q_LOG_STEPS);
    }
    return lo + (code / Q_MAX) * (hi - lo);
  }

  /**
   * The worst relative error of token t's decoded `metric` (index into meta.metric_names) from
   * the 8-bit code: half a log step, exp(ln(hi / lo) / 506) - 1; NaN on a linear scale (an older
   * snapshot, or a metric with negative values), where small values have no relative bound.
   */
  precision(t: number, metric: number): number {
    if (!this.hasLayers(t) || !this.logCodes) return NaN;
    const name = this.metricNames[metric];
    const live = DERIVED_FROM[name] ?? name;
    const m = this.meta ? this.meta.live_metrics.indexOf(live) : -1;
    if (m < 0) return NaN;
    const r = (t * this.M + m) * 2;
    const lo = this.range.data[r];
    const hi = this.range.data[r + 1];
    if (!(lo > 0)) return NaN;
    const p = Math.expm1(Math.log(hi / lo) / (2 * Q_LOG_STEPS));
    if (live !== "time_ms") return p;
    // times are scaled to the exact hooked time: that factor's own deviation adds to the bound
    const k = this.timeScale.data[t];
    return (1 + p) * Math.max(k, 1 / k) - 1;
  }

  /** The worst `precision` over the tokens in the mean (NaN if any of them has no bound). */
  worstPrecision(metric: number): number {
    if (this.meanIsExact(metric)) return 0;
    let worst = 0;
    for (let t = 0; t < this.nRows; t++) {
      if (!this.hasLayers(t) || !this.inMean(t)) continue;
      const p = this.precision(t, metric);
      if (p !== p) return NaN;
      worst = Math.max(worst, p);
    }
    return this.meanCount > 0 ? worst : NaN;
  }

  hasLayers(t: number): boolean {
    return t >= 0 && t < this.nRows && this.hasRow.data[t] === 1;
  }

  /** Token t's wall time (end - start). */
  tokenMs(t: number): number {
    return t >= 0 && t < this.nTokens ? this.tokEnd.data[t] - this.tokStart.data[t] : NaN;
  }

  /** Token t's time inside the hooked decoder layers (NaN without a layer row). */
  hookedMs(t: number): number {
    return this.hasLayers(t) ? this.layerMs.data[t] : NaN;
  }

  /**
   * What cell shares are taken of: the token's time, or the hooked time if the clocks disagree
   * and it is longer (core/attribution.share_denominator_ms), so a share never exceeds 1.
   */
  shareMs(t: number): number {
    const tok = this.tokenMs(t);
    const hooked = this.hookedMs(t);
    if (!(tok > 0)) return hooked > 0 ? hooked : NaN;
    return hooked === hooked ? Math.max(tok, hooked) : tok;
  }

  /** Hooked layer time / token time, at most 1. */
  coverage(t: number): number {
    const d = this.shareMs(t);
    const hooked = this.hookedMs(t);
    return d > 0 && hooked === hooked ? hooked / d : NaN;
  }

  /** The token's time outside the hooked layers (embedding, lm_head, sampling, the loop). */
  outsideMs(t: number): number {
    const d = this.shareMs(t);
    const hooked = this.hookedMs(t);
    return d > 0 && hooked === hooked ? d - hooked : NaN;
  }

  /** The token's energy outside the hooked layers: its energy x (1 - coverage). */
  outsideJ(t: number): number {
    return this.tokEnergy.data[t] * (1 - this.coverage(t));
  }

  /** Value of metric `metric` (index into meta.metric_names) at token t, layer l, component c. */
  value(t: number, l: number, c: number, metric: number): number {
    if (!this.hasLayers(t)) return NaN;
    const name = this.metricNames[metric];
    const lc = l * this.C + c;
    if (name === "time_ms" || name === "energy_j") {
      if (this.timeM < 0) return NaN;
      const ms = this.liveValue(t, lc, this.timeM) * this.timeScale.data[t];
      if (name === "time_ms") return ms;
      // modeled: the token's energy x cell time / token time (not / hooked time: the rest of the
      // token is the outside-layers remainder, shown on its own)
      const e = this.tokEnergy.data[t];
      const d = this.shareMs(t);
      return d > 0 && e === e ? (ms / d) * e : NaN;
    }
    const m = this.meta ? this.meta.live_metrics.indexOf(name) : -1;
    return m < 0 ? NaN : this.liveValue(t, lc, m);
  }

  /** Whether token t is in the mean over the run: every token but the prefill. */
  inMean(t: number): boolean {
    return this.tokPhase[t] !== "prefill";
  }

  /**
   * Mean over the decode tokens that have the value (kept incrementally, so it costs O(cells));
   * the prefill token is left out: it carries the whole prompt's work.
   */
  mean(l: number, c: number, metric: number): number {
    const k = (l * this.C + c) * this.metricNames.length + metric;
    if (this.exactMean !== null && this.exactMetric[metric]) return this.exactMean[k];
    return this.counts[k] > 0 ? this.sums[k] / this.counts[k] : NaN;
  }

  /** Over the tokens in the mean: hooked time / token time, and the mean outside-layers figures. */
  meanCoverage(): { coverage: number; outsideMs: number; outsideJ: number } {
    const sv = this.saved;
    if (sv) return { coverage: sv.coverage ?? NaN, outsideMs: sv.outside_ms ?? NaN, outsideJ: sv.outside_j ?? NaN };
    const m = this.meanSums;
    const n = this.meanCount;
    return {
      coverage: m.token > 0 ? m.hooked / m.token : NaN,
      outsideMs: n > 0 ? (m.token - m.hooked) / n : NaN,
      outsideJ: m.outsideN > 0 ? m.outsideJ / m.outsideN : NaN,
    };
  }

  private accumulate(t: number, sign: number): void {
    if (!this.inMean(t)) return;
    // the same values as `value`, decoded through one table per live metric of this token
    const nm = this.metricNames.length;
    const M = this.M;
    if (this.table.length < 256 * M) this.table = new Float64Array(256 * M);
    const tab = this.table;
    for (let m = 0; m < M; m++) this.decodeTable(t, m, tab, m * 256);
    const e = this.tokEnergy.data[t];
    const d = this.shareMs(t);
    const scale = this.timeScale.data[t];
    const eScale = d > 0 && e === e ? (scale * e) / d : NaN;
    const mult = this.metricLive.map((_, m) =>
      this.metricNames[m] === "energy_j" ? eScale : this.metricNames[m] === "time_ms" ? scale : 1,
    );
    const q = this.q.data;
    const LC = this.L * this.C;
    for (let lc = 0; lc < LC; lc++) {
      const base = (t * LC + lc) * M;
      for (let m = 0; m < nm; m++) {
        const li = this.metricLive[m];
        if (li < 0) continue;
        const v = tab[li * 256 + q[base + li]] * mult[m];
        if (v !== v) continue;
        const k = lc * nm + m;
        this.sums[k] += sign * v;
        this.counts[k] += sign;
      }
    }
    this.meanCount += sign;
    const hooked = this.hookedMs(t);
    if (hooked === hooked && d > 0) {
      this.meanSums.hooked += sign * hooked;
      this.meanSums.token += sign * d;
    }
    const out = this.outsideJ(t);
    if (out === out) {
      this.meanSums.outsideJ += sign * out;
      this.meanSums.outsideN += sign;
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

  /** The run is queued, pending or running: more is coming. */
  get live(): boolean {
    return this.meta !== null && LIVE.has(this.status.status);
  }

  /**
   * The run's window so far: from the first non-baseline phase start (the summary's window; NaN
   * while only the baseline has run) to the latest token or phase end (an open phase counts
   * from its start). `end` is that time, `energyEnd` the same never beyond the power curve: a
   * source that delivers readings ahead of the run (a replay at speed 0 hands over the whole
   * trace at once) must not add them to the run's energy.
   */
  runWindow(): { start: number; end: number; energyEnd: number } {
    const work = this.phases.filter((p) => p.name !== "baseline");
    const t = this.col("t_ms");
    const start = work.length ? work[0].start_ms : !this.phases.length && this.nPower ? t[0] : NaN;
    const end = this.latestEvent(work);
    const energyEnd = this.nPower ? Math.min(end, t[this.nPower - 1]) : NaN;
    return { start, end, energyEnd };
  }

  private latestEvent(work: Phase[]): number {
    let end = -Infinity;
    for (const p of work) end = Math.max(end, p.end_ms ?? p.start_ms);
    for (let i = 0; i < this.nTokens; i++) end = Math.max(end, this.tokEnd.data[i]);
    return end;
  }

  /** A phase of the run (not the baseline) is open: the run's clock is running. */
  get working(): boolean {
    return this.live && this.phases.some((p) => p.end_ms === null && p.name !== "baseline");
  }

  /**
   * The run's elapsed time (ms) over `runWindow()`. Done: the exact window, the summary's
   * duration. Live, with a phase open: a clock from the latest event, advancing at the browser's
   * pace `LAG_MS` after it arrived (a long prefill has no other event; the lag keeps it behind the
   * kernel's next event, which was sent later). It never goes backwards while live: the next
   * event, or a clock that ran ahead of it, is held at the highest value shown.
   */
  elapsedMs(now: number = performance.now()): number {
    const w = this.runWindow();
    if (!(w.end >= w.start)) return NaN;
    if (!this.live) return w.end - w.start;
    let e = w.end - w.start;
    if (this.working && this.anchor.t >= w.start) {
      e = Math.max(e, this.anchor.t - w.start + Math.max(0, now - this.anchor.at - LAG_MS));
    }
    this.elapsedShown = Math.max(this.elapsedShown, e);
    return this.elapsedShown;
  }

  /** Energy over `runWindow()` from the power curve (NaN before the curve covers any of it). */
  energySoFar(): number {
    const w = this.runWindow();
    if (!this.nPower || !(w.energyEnd >= w.start)) return NaN;
    const t0 = this.col("t_ms")[0];
    const e1 = this.energyAt(w.energyEnd);
    const e0 = this.energyAt(Math.max(w.start, t0));
    return e1 - e0;
  }

  /** The power source as the views describe it; the summary's figures win once it is there. */
  powerInfo(): PowerInfo {
    const p = this.meta?.power;
    const s = this.summary ?? {};
    const str = (x: unknown): string | null => (typeof x === "string" && x ? x : null);
    return {
      source: str(s.energy_source) ?? str(p?.source),
      kind: str(s.energy_kind) ?? str(p?.kind) ?? "estimated",
      scope: str(s.energy_scope) ?? str(p?.scope),
      resolution_ms: num(s.energy_resolution_ms) ?? num(p?.resolution_ms) ?? num(p?.interval_ms),
      interval_ms: num(p?.interval_ms),
      power_window_ms: num(s.power_window_ms) ?? num(p?.power_window_ms),
      description: str(p?.description),
    };
  }

  /** Token t is shorter than the power source's resolution: its energy is interpolated. */
  belowResolution(t: number): boolean {
    const res = this.powerInfo().resolution_ms;
    const d = this.tokenMs(t);
    return res !== null && d === d && d < res;
  }
}
