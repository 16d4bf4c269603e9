// Current operation: phase, token k of N, decode tokens/s, elapsed, energy so far, and Stop.

import { badge, h } from "../ui/dom";
import { fmtEnergy, fmtMs, fmtNum, fmtPct } from "../format";
import { definition, kindTip, label } from "../ui/names";
import type { RunStore } from "../run_store";
import type { View } from "./view";

export interface StatusItem {
  label: string;
  value: string;
  kind?: string;
  scope?: string | null;
  /** What the kind badge says on hover (names.kindTip). */
  tip?: string[];
  /** What the figure is, on hover of its label. */
  title?: string;
}

/**
 * The status line's fields. The rate is decode tokens/s, the one rate every view shows: decode
 * tokens over the time from the first to the last token, live from the tokens so far and the
 * summary's `decode_tokens_per_s` once it is there (the card's figure, to the digit). Elapsed
 * and energy so far are over the run's window (first non-baseline phase to the latest token or
 * phase end; the summary's window), energy clipped to the power curve: never the readings after
 * the run. Elapsed ticks between events while a phase is open and never goes backwards.
 */
/**
 * "+4.1 % on 5 instrumented tokens, 19 bare": the summary's `profiling_overhead` (the slowdown of
 * instrumented decode tokens against bare ones in this run); live, the tokens so far. Null for a
 * token-level run and a run with every token instrumented and no summary saying more.
 */
export function overheadText(s: RunStore): string | null {
  const po = s.summary?.profiling_overhead;
  if (s.meta?.level === "token") return null;
  if (po && typeof po === "object") {
    const on = `on ${po.instrumented_tokens} instrumented tokens, ${po.bare_tokens} bare`;
    const f = po.fraction;
    if (typeof f === "number" && isFinite(f)) return `${f >= 0 ? "+" : "−"}${Math.abs(f * 100).toFixed(1)} % ${on}`;
    return `not measured${po.why_none ? ` (${po.why_none})` : ""}`;
  }
  return s.nBare > 0 ? `${s.nInstr} instrumented, ${s.nBare} bare so far` : null;
}

export function statusItems(s: RunStore, now?: number): StatusItem[] {
  const m = s.meta;
  const st = s.status.status;
  const open = [...s.phases].reverse().find((p) => p.end_ms === null);
  const phase = open ? open.name : s.phases.length ? s.phases[s.phases.length - 1].name : "–";
  const n = s.nTokens;
  const N = m?.max_new_tokens;
  const fromSummary = s.summary?.decode_tokens_per_s;
  const tps =
    typeof fromSummary === "number"
      ? fromSummary
      : n > 1
        ? (n - 1) / ((s.tokEnd.data[n - 1] - s.tokEnd.data[0]) / 1000)
        : NaN;
  const info = s.powerInfo();
  const timing = m?.labels?.timing ?? "measured";
  const timeTip = kindTip(m, info, timing, "timing");
  const ek = m?.labels?.energy ?? info.kind;
  const basis = s.summary?.figure_basis?.decode_tokens_per_s;
  const overhead = overheadText(s);
  const po = s.summary?.profiling_overhead;
  const items: StatusItem[] = [
    { label: "phase", value: s.live ? (st === "queued" ? "queued" : phase) : st },
    { label: "token", value: N ? `${n} / ${N}` : String(n) },
    {
      label: label(m, "decode_tokens_per_s"),
      value: fmtNum(tps, "", 3),
      kind: timing,
      tip: timeTip,
      title: definition(m, "decode_tokens_per_s") + (basis ? `\nrests on: ${basis}` : ""),
    },
    {
      label: "elapsed",
      value: fmtMs(s.elapsedMs(now)),
      kind: timing,
      tip: timeTip,
      title: "the run's window: from the first phase after the baseline to the latest token or phase end",
    },
    {
      label: "energy so far",
      value: fmtEnergy(s.energySoFar()),
      kind: ek,
      scope: info.scope,
      tip: kindTip(m, info, ek, "energy"),
      title: "energy over the run's window so far (the baseline and readings after the run excluded)",
    },
  ];
  if (overhead) {
    items.push({
      label: label(m, "profiling_overhead"),
      value: overhead,
      kind: timing,
      tip: timeTip,
      title: [definition(m, "profiling_overhead"), po?.basis, po?.added_fraction != null ? `added ${fmtPct(po.added_fraction, 2)} to the decode time` : ""]
        .filter(Boolean)
        .join("\n"),
    });
  }
  return items;
}

export class StatusBar implements View {
  el = h("div", "lew-status");
  private title = h("div", "lew-run-title");
  private prompt = h("div", "lew-prompt lew-muted");
  private fields = h("div", "lew-fields");
  private stop = h("button", "lew-stop", "Stop");
  private error = h("div", "lew-error");
  private drawnVersion = -1;
  private stopping = false;

  constructor(private store: RunStore, private onStop: (() => void) | null) {
    this.stop.type = "button";
    this.stop.title = "Stop the generation; the run keeps what it measured";
    this.stop.addEventListener("click", () => {
      if (!this.onStop) return;
      this.stopping = true;
      this.onStop();
      this.drawnVersion = -1;
      this.draw();
    });
    const row = h("div", "lew-status-row");
    row.append(this.title, this.stop);
    this.error.hidden = true;
    this.error.setAttribute("role", "alert");
    this.el.append(row, this.prompt, this.fields, this.error);
  }

  /** `tick`: redraw even if the store did not change (the elapsed clock moves on); never hidden. */
  draw(tick = false): boolean {
    this.paint(tick);
    return true;
  }

  invalidate(): void {
    this.drawnVersion = -1;
  }

  destroy(): void {} // nothing outside its element

  private paint(tick: boolean): void {
    const s = this.store;
    if (s.version === this.drawnVersion && !tick) return;
    this.drawnVersion = s.version;
    const m = s.meta;
    const st = s.status.status;
    const live = s.live;
    if (!live) this.stopping = false;
    this.stop.hidden = !this.onStop || !m;
    this.stop.disabled = !live || this.stopping;
    if (!m && s.refused) {
      // a run sent in a newer protocol than this view reads: say so, show none of its data
      this.title.replaceChildren(h("strong", "", "cannot show this run"));
      this.prompt.hidden = true;
      this.fields.replaceChildren();
      this.error.hidden = false;
      this.error.textContent = s.refused;
      return;
    }
    if (!m) {
      // nothing to follow yet: no state, no fields, no Stop; the panels are hidden by the root
      this.title.replaceChildren(
        h("strong", "", "no run yet"),
        h("span", "lew-muted", " · this widget shows the next run of its profiler (profiler.generate(…))"),
      );
      this.prompt.hidden = true;
      this.fields.replaceChildren();
      this.error.hidden = true;
      return;
    }
    this.title.replaceChildren(
      h("strong", "", m.model ?? "model –"),
      h("span", "lew-muted", ` · run ${m.run_id} · `),
      h("span", `lew-state lew-state-${st}`, this.stopping ? "stopping…" : st),
      // a waiting run says how many are ahead ("queued, 1 ahead"); an ended one how it ended
      ...(s.status.reason && (!live || st === "queued")
        ? [h("span", "lew-muted", ` (${s.status.reason})`)]
        : []),
    );
    // the user's text (meta.prompt), never as HTML; the whole of it on hover
    const prompt = (m.prompt ?? "").trim();
    this.prompt.hidden = !prompt;
    this.prompt.textContent = prompt ? `prompt: ${prompt.replace(/\s+/g, " ")}` : "";
    this.prompt.title = prompt;
    this.fields.replaceChildren(
      ...statusItems(s).map((it) => {
        const f = h("span", "lew-field");
        const name = h("span", "lew-muted", `${it.label} `);
        if (it.title) name.title = it.title;
        f.append(name, h("span", "lew-value", it.value));
        if (it.kind) f.append(badge(it.kind, it.scope, it.tip));
        return f;
      }),
    );
    this.error.hidden = !s.error;
    this.error.textContent = s.error ? `Error: ${s.error.message}` : "";
  }
}
