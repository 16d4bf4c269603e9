// The generated text as tokens coloured by energy; hover for details, click to show in the heatmap.

import type { Tooltip } from "../ui/dom";
import { badge, h, keepKeys } from "../ui/dom";
import { fmtEnergy, fmtMs, fmtNum, fmtPct, niceStep } from "../format";
import { kindText, kindTip, outsideName } from "../ui/names";
import type { RunStore } from "../run_store";
import { colormap, rgb, textOn } from "../theme";
import type { View } from "./view";

/**
 * A token's tooltip. A token shorter than the power source's resolution says so: its energy is
 * interpolated between readings, not resolved (never a bare "0 J").
 */
export function tokenTip(s: RunStore, i: number): string[] {
  const dur = s.tokenMs(i);
  const e = s.tokEnergy.data[i];
  const info = s.powerInfo();
  const kind = kindText(s.meta?.labels?.tokens ?? info.kind, info.scope);
  const k = s.nSequences > 1 ? s.stepTokens(i) : 1;
  const lines = [
    `token ${i}: ${JSON.stringify(s.tokText[i] ?? "")}`,
    `id ${s.tokId.data[i]} · phase ${s.tokPhase[i] ?? "–"}` + (s.nSequences > 1 ? ` · sequence ${s.tokSeq.data[i]}` : ""),
    `duration ${fmtMs(dur)}`,
    `energy ${fmtEnergy(e)} (${kind})`,
  ];
  if (k > 1) lines.push(`1/${k} of its step's energy (${k} sequences chose a token in it; equal split: modeled)`);
  if (s.belowResolution(i)) {
    lines.push(`< resolution (${fmtMs(info.resolution_ms)}), interpolated between readings`);
  }
  lines.push(`average power ${fmtNum(dur > 0 ? (e * k) / (dur / 1000) : NaN, "W")}${k > 1 ? " (the step's)" : ""}`);
  const cov = s.coverage(i);
  if (cov === cov) {
    lines.push(`layers ${fmtPct(cov)} of its time · ${outsideName(s.meta)} ${fmtEnergy(s.outsideJ(i))}`);
  }
  const inst = s.instrumented(i);
  if (inst !== null && s.nBare > 0) lines.push(inst ? "instrumented: layer hooks ran" : "bare: ran at plain speed (no layer row)");
  lines.push(inst === false ? "click: show the nearest instrumented token in the heatmap" : "click: show in the heatmap");
  return lines;
}

export interface TokenPart {
  text: string;
  /** A stand-in for whitespace (↵ newline, · space, → tab, ∅ nothing), shown muted. */
  glyph: boolean;
}

const GLYPH: Record<string, string> = { " ": "·", "\t": "→", "\n": "↵", "\r": "" };

/**
 * How a token's text is shown. Whitespace-only tokens would be invisible (and not hoverable):
 * their characters are shown as ·, → and ↵; every newline gets its ↵ and still breaks the line;
 * an empty token shows ∅. The tooltip keeps the exact text.
 */
export function tokenParts(text: string): TokenPart[] {
  if (text === "") return [{ text: "∅", glyph: true }];
  const out: TokenPart[] = [];
  const add = (t: string, glyph: boolean) => {
    if (!t) return;
    const last = out[out.length - 1];
    if (last && last.glyph === glyph) last.text += t;
    else out.push({ text: t, glyph });
  };
  const blank = /^\s+$/.test(text);
  for (const ch of text) {
    if (ch === "\n") {
      add("↵", true);
      add("\n", false);
    } else if (blank) add(GLYPH[ch] ?? ch, true);
    else add(ch, false);
  }
  return out.length ? out : [{ text: "∅", glyph: true }];
}

export interface TokenScale {
  lo: number;
  hi: number;
  /** Taken from the prefill token alone (no decode token yet): dropped at the first one. */
  prefillOnly: boolean;
}

/**
 * The token colour scale: the decode tokens' energies from the 2nd to the 98th percentile (the
 * prefill token, which carries the whole prompt, is clamped; it is used only while alone),
 * widened outward to a round step. `prev` is kept while that range still fits in it, so colours
 * stay put as tokens arrive: the scale changes in a few steps, not with every token.
 */
export function nextTokenScale(prev: TokenScale | null, s: RunStore): TokenScale | null {
  const e = s.tokEnergy.data;
  const v: number[] = [];
  for (let i = 0; i < s.nTokens; i++) if (e[i] === e[i] && s.tokPhase[i] !== "prefill") v.push(e[i]);
  const prefillOnly = !v.length;
  if (prefillOnly) for (let i = 0; i < s.nTokens; i++) if (e[i] === e[i]) v.push(e[i]);
  if (!v.length) return prev;
  // the prefill token's energy is the whole prompt's: a scale made of it alone is no base to widen
  if (prev && prev.prefillOnly && !prefillOnly) prev = null;
  v.sort((a, b) => a - b);
  const n = v.length;
  const a = n >= 10 ? v[Math.ceil(0.02 * (n - 1))] : v[0];
  const b = n >= 10 ? v[Math.floor(0.98 * (n - 1))] : v[n - 1];
  if (prev && prev.lo <= a && b <= prev.hi) return prev;
  const step = niceStep(b > a ? (b - a) / 4 : Math.abs(b) * 0.1 || 1e-6);
  const lo = Math.max(0, Math.floor(a / step) * step);
  let hi = Math.ceil(b / step) * step;
  if (!(hi > lo)) hi = lo + step;
  return { lo: prev ? Math.min(lo, prev.lo) : lo, hi: prev ? Math.max(hi, prev.hi) : hi, prefillOnly };
}

/** The picker's label for sequence b: its number, tokens and energy (the sum of its shares). */
export function sequenceLabel(s: RunStore, b: number): string {
  const idx = s.tokensOf(b);
  let e = 0;
  let known = 0;
  for (const i of idx) {
    const v = s.tokEnergy.data[i];
    if (v === v) {
      e += v;
      known++;
    }
  }
  return `sequence ${b} · ${idx.length} tokens · ${known ? fmtEnergy(e) : "–"}`;
}

/** Tokens shown since the scale last changed, below which a live run says it is still growing. */
const SETTLED_TOKENS = 10;

export class TokenStream implements View {
  el = h("div", "lew-panel lew-tokens");
  private box = h("div", "lew-token-box");
  private legend = h("span", "lew-scale");
  /** A batch's sequence picker: only that sequence's tokens are shown (hidden for one prompt). */
  private picker = h("select", "lew-select lew-seq-picker");
  private shown = 0;
  private pickerFor = "";
  private spans: HTMLSpanElement[] = [];
  private texts: string[] = [];
  private coloured: Float64Array = new Float64Array(0); // energy each span was coloured with
  private marked: boolean[] = []; // spans marked instrumented
  private scale: TokenScale | null = null;
  private scaleAt = 0; // tokens when the scale last changed
  private drawnVersion = -1;
  private runKey = "";
  private hot = -1;
  recolours = 0;

  constructor(private store: RunStore, private tip: Tooltip, private onPick: (i: number) => void) {
    const head = h("div", "lew-panel-head");
    head.append(h("span", "lew-title", "Tokens (colour: energy per token)"), this.legend);
    this.picker.hidden = true;
    this.picker.title = "a batch: each sequence's tokens, its shares of the steps' energy";
    keepKeys(this.picker);
    this.picker.addEventListener("change", () => {
      this.shown = Number(this.picker.value) || 0;
      this.invalidate();
      this.draw();
    });
    this.el.append(head, this.picker, this.box);
    this.box.addEventListener("mousemove", (ev) => this.onMove(ev));
    this.box.addEventListener("mouseleave", () => this.tip.hide());
    this.box.addEventListener("click", (ev) => {
      const i = this.indexOf(ev.target);
      if (i >= 0) this.onPick(i);
    });
  }

  private indexOf(target: EventTarget | null): number {
    const el = (target as HTMLElement | null)?.closest?.(".lew-tok") as HTMLElement | null;
    if (!el || el.dataset.i === undefined) return -1;
    return Number(el.dataset.i);
  }

  /** Mark token i (the one under the power chart's cursor); -1: none. */
  highlight(i: number): void {
    if (this.hot >= 0) this.spans[this.hot]?.classList.remove("lew-tok-hot");
    this.hot = i;
    if (i >= 0) this.spans[i]?.classList.add("lew-tok-hot");
  }

  private setText(span: HTMLSpanElement, text: string): void {
    const parts = tokenParts(text);
    span.classList.toggle("lew-tok-ws", parts.every((p) => p.glyph || !p.text.trim()));
    span.replaceChildren(...parts.map((p) => (p.glyph ? h("span", "lew-glyph", p.text) : document.createTextNode(p.text))));
  }

  /** Draw again on the next call even if the store did not change. */
  invalidate(): void {
    this.drawnVersion = -1;
  }

  destroy(): void {
    this.tip.hide();
  }

  /** New tokens appended, changed texts and energies recoloured; never hidden. */
  draw(): boolean {
    const s = this.store;
    if (s.version === this.drawnVersion) return true;
    this.drawnVersion = s.version;
    if (this.runKey !== s.runKey) {
      this.runKey = s.runKey;
      this.spans = [];
      this.texts = [];
      this.box.replaceChildren();
      this.scale = null;
      this.scaleAt = 0;
      this.hot = -1;
      this.coloured = new Float64Array(0);
      this.marked = [];
      this.shown = 0;
      this.pickerFor = "";
    }
    if (this.coloured.length < s.nTokens) {
      const next = new Float64Array(Math.max(256, s.nTokens * 2)).fill(NaN);
      next.set(this.coloured);
      this.coloured = next;
    }
    const frag = document.createDocumentFragment();
    for (let i = this.spans.length; i < s.nTokens; i++) {
      const span = h("span", "lew-tok");
      span.dataset.i = String(i);
      this.setText(span, s.tokText[i] ?? "");
      this.spans.push(span);
      this.texts.push(s.tokText[i] ?? "");
      frag.append(span);
    }
    if (frag.childNodes.length) this.box.append(frag);
    for (let i = 0; i < s.nTokens; i++) {
      const text = s.tokText[i] ?? "";
      if (this.texts[i] !== text) this.setText(this.spans[i], (this.texts[i] = text));
    }
    // sampled instrumentation: the instrumented tokens underlined (in the text's own colour)
    for (let i = 0; i < s.nTokens; i++) {
      const mark = s.nBare > 0 && s.instrumented(i) === true;
      if (this.marked[i] !== mark) this.spans[i].classList.toggle("lew-tok-inst", (this.marked[i] = mark));
    }
    this.drawPicker();
    const scale = nextTokenScale(this.scale, s);
    if (scale !== this.scale) {
      this.scale = scale;
      this.scaleAt = s.nTokens;
      this.coloured.fill(NaN);
      this.recolours++;
    }
    const e = s.tokEnergy.data;
    if (scale) {
      for (let i = 0; i < s.nTokens; i++) {
        const v = e[i];
        if (v !== v || v === this.coloured[i]) continue;
        const c = colormap((v - scale.lo) / (scale.hi - scale.lo));
        this.spans[i].style.background = rgb(c);
        this.spans[i].style.color = textOn(c);
        this.coloured[i] = v;
      }
    }
    this.drawLegend();
    return true;
  }

  /** A batch: the picker's options, and only the chosen sequence's tokens shown. */
  private drawPicker(): void {
    const s = this.store;
    const batched = s.nSequences > 1;
    this.picker.hidden = !batched;
    if (!batched) return;
    const labels = Array.from({ length: s.nSequences }, (_, b) => sequenceLabel(s, b));
    const key = labels.join("\n");
    if (key !== this.pickerFor) {
      this.pickerFor = key;
      this.picker.replaceChildren(
        ...labels.map((l, b) => {
          const o = h("option", "", l);
          o.value = String(b);
          return o;
        }),
      );
      this.picker.value = String(this.shown);
    }
    const seq = s.tokSeq.data;
    for (let i = 0; i < s.nTokens; i++) {
      const hide = seq[i] !== this.shown;
      if (this.spans[i].hidden !== hide) this.spans[i].hidden = hide;
    }
  }

  /** The colour legend: a gradient from lo to hi with units, what is clamped, the kind. */
  private drawLegend(): void {
    const s = this.store;
    const sc = this.scale;
    if (!sc) {
      this.legend.replaceChildren();
      return;
    }
    const e = s.tokEnergy.data;
    let above = false;
    let prefillAbove = false;
    for (let i = 0; i < s.nTokens; i++) {
      if (!(e[i] > sc.hi)) continue;
      if (s.tokPhase[i] === "prefill") prefillAbove = true;
      else above = true;
    }
    const bar = h("span", "lew-gradient");
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map((x) => rgb(colormap(x))).join(", ")})`;
    const info = s.powerInfo();
    const kind = s.meta?.labels?.tokens ?? info.kind;
    const notes: string[] = [];
    if (prefillAbove) notes.push("prefill clamped");
    if (s.live && s.nTokens - this.scaleAt < SETTLED_TOKENS) notes.push("scale still growing");
    if (s.nBare > 0) notes.push(`underlined: ${s.nInstr} instrumented, ${s.nBare} bare`);
    this.legend.replaceChildren(
      h("span", "", fmtEnergy(sc.lo)),
      bar,
      h("span", "", `${above ? "≥ " : ""}${fmtEnergy(sc.hi)} per token`),
      badge(kind, info.scope, kindTip(s.meta, info, kind, "tokens")),
      ...(notes.length ? [h("span", "lew-muted", `(${notes.join(", ")})`)] : []),
    );
  }

  private onMove(ev: MouseEvent): void {
    const i = this.indexOf(ev.target);
    if (i < 0) {
      this.tip.hide();
      return;
    }
    this.tip.show(ev, tokenTip(this.store, i));
  }
}
