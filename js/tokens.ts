// The generated text as tokens coloured by energy; hover for details, click to show in the heatmap.

import { h, Tooltip } from "./dom";
import { fmtEnergy, fmtMs, fmtNum, fmtPct } from "./format";
import { kindText, outsideName } from "./names";
import type { RunStore } from "./store";
import { colormap, rgb, textOn } from "./theme";

/**
 * A token's tooltip. A token shorter than the power source's resolution says so: its energy is
 * interpolated between readings, not resolved (never a bare "0 J").
 */
export function tokenTip(s: RunStore, i: number): string[] {
  const dur = s.tokenMs(i);
  const e = s.tokEnergy.data[i];
  const info = s.powerInfo();
  const kind = kindText(s.meta?.labels?.tokens ?? info.kind, info.scope);
  const lines = [
    `token ${i}: ${JSON.stringify(s.tokText[i] ?? "")}`,
    `id ${s.tokId.data[i]} · phase ${s.tokPhase[i] ?? "–"}`,
    `duration ${fmtMs(dur)}`,
    `energy ${fmtEnergy(e)} (${kind})`,
  ];
  if (s.belowResolution(i)) {
    lines.push(`< resolution (${fmtMs(info.resolution_ms)}), interpolated between readings`);
  }
  lines.push(`average power ${fmtNum(dur > 0 ? e / (dur / 1000) : NaN, "W")}`);
  const cov = s.coverage(i);
  if (cov === cov) {
    lines.push(`layers ${fmtPct(cov)} of its time · ${outsideName(s.meta)} ${fmtEnergy(s.outsideJ(i))}`);
  }
  lines.push("click: show in the heatmap");
  return lines;
}

export class TokenStream {
  el = h("div", "lew-panel lew-tokens");
  private box = h("div", "lew-token-box");
  private scaleNote = h("span", "lew-muted");
  private spans: HTMLSpanElement[] = [];
  private texts: string[] = [];
  private coloured: Float64Array = new Float64Array(0); // energy each span was coloured with
  private lo = Infinity;
  private hi = -Infinity;
  private drawnVersion = -1;
  private runKey = "";
  recolours = 0;

  constructor(private store: RunStore, private tip: Tooltip, private onPick: (i: number) => void) {
    const head = h("div", "lew-panel-head");
    head.append(h("span", "lew-title", "Tokens (colour: energy per token)"), this.scaleNote);
    this.el.append(head, this.box);
    this.box.addEventListener("mousemove", (ev) => this.onMove(ev));
    this.box.addEventListener("mouseleave", () => this.tip.hide());
    this.box.addEventListener("click", (ev) => {
      const i = this.indexOf(ev.target);
      if (i >= 0) this.onPick(i);
    });
  }

  private indexOf(target: EventTarget | null): number {
    const el = target as HTMLElement | null;
    if (!el || !el.dataset || el.dataset.i === undefined) return -1;
    return Number(el.dataset.i);
  }

  draw(): void {
    const s = this.store;
    if (s.version === this.drawnVersion) return;
    this.drawnVersion = s.version;
    if (this.runKey !== s.runKey) {
      this.runKey = s.runKey;
      this.spans = [];
      this.texts = [];
      this.box.replaceChildren();
      this.lo = Infinity;
      this.hi = -Infinity;
      this.coloured = new Float64Array(0);
    }
    if (this.coloured.length < s.nTokens) {
      const next = new Float64Array(Math.max(256, s.nTokens * 2)).fill(NaN);
      next.set(this.coloured);
      this.coloured = next;
    }
    const frag = document.createDocumentFragment();
    for (let i = this.spans.length; i < s.nTokens; i++) {
      const span = h("span", "lew-tok", s.tokText[i] ?? "");
      span.dataset.i = String(i);
      this.spans.push(span);
      this.texts.push(s.tokText[i] ?? "");
      frag.append(span);
    }
    if (frag.childNodes.length) this.box.append(frag);
    for (let i = 0; i < s.nTokens; i++) {
      const text = s.tokText[i] ?? "";
      if (this.texts[i] !== text) this.spans[i].textContent = this.texts[i] = text;
    }
    // The colour scale only widens (with headroom), so a recolour of every token is rare.
    let grow = false;
    const e = s.tokEnergy.data;
    for (let i = 0; i < s.nTokens; i++) {
      const v = e[i];
      if (v !== v || v === this.coloured[i]) continue;
      if ((v < this.lo || v > this.hi) && (s.tokPhase[i] !== "prefill" || s.nTokens === 1)) grow = true;
    }
    if (grow || !(this.hi > this.lo)) {
      let lo = Infinity;
      let hi = -Infinity;
      // The prefill token carries the whole prompt's work: it is clamped, not allowed to flatten
      // the scale of the decode tokens.
      for (let i = 0; i < s.nTokens; i++) {
        if (e[i] === e[i] && (s.tokPhase[i] !== "prefill" || s.nTokens === 1)) {
          lo = Math.min(lo, e[i]);
          hi = Math.max(hi, e[i]);
        }
      }
      const pad = (hi - lo) * 0.25 || Math.abs(hi) * 0.1;
      this.lo = Math.min(this.lo, lo - pad);
      this.hi = Math.max(this.hi, hi + pad);
      this.coloured.fill(NaN);
      this.recolours++;
      this.scaleNote.textContent = `${fmtEnergy(Math.max(0, this.lo))} … ${fmtEnergy(this.hi)} per token (prefill clamped)`;
    }
    for (let i = 0; i < s.nTokens; i++) {
      const v = e[i];
      if (v !== v || v === this.coloured[i]) continue;
      const c = colormap((v - this.lo) / (this.hi - this.lo || 1));
      this.spans[i].style.background = rgb(c);
      this.spans[i].style.color = textOn(c);
      this.coloured[i] = v;
    }
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
