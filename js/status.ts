// Current operation: phase, token k of N, tokens/s, elapsed, energy so far, and the Stop button.

import { badge, h } from "./dom";
import { fmtEnergy, fmtMs, fmtNum } from "./format";
import type { RunStore } from "./store";

export class StatusBar {
  el = h("div", "lew-status");
  private title = h("div", "lew-run-title");
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
    this.el.append(row, this.fields, this.error);
  }

  draw(): void {
    const s = this.store;
    if (s.version === this.drawnVersion) return;
    this.drawnVersion = s.version;
    const m = s.meta;
    const st = s.status.status;
    const live = st === "running" || st === "pending";
    if (!live) this.stopping = false;
    this.title.replaceChildren(
      h("strong", "", m?.model ?? "no run yet"),
      h("span", "lew-muted", m ? ` · run ${m.run_id} · ` : ""),
      h("span", `lew-state lew-state-${st}`, this.stopping ? "stopping…" : st),
      ...(s.status.reason && !live ? [h("span", "lew-muted", ` (${s.status.reason})`)] : []),
    );
    this.stop.hidden = !this.onStop || !m;
    this.stop.disabled = !live || this.stopping;
    const open = [...s.phases].reverse().find((p) => p.end_ms === null);
    const phase = open ? open.name : s.phases.length ? s.phases[s.phases.length - 1].name : "–";
    const n = s.nTokens;
    const N = m?.max_new_tokens;
    const firstWork = s.phases.find((p) => p.name !== "baseline");
    const t0 = firstWork ? firstWork.start_ms : s.nPower ? s.col("t_ms")[0] : NaN;
    let tEnd = s.nPower ? s.col("t_ms")[s.nPower - 1] : NaN;
    if (n) tEnd = Math.max(isFinite(tEnd) ? tEnd : -Infinity, s.tokEnd.data[n - 1]);
    const tps = n > 1 ? (n - 1) / ((s.tokEnd.data[n - 1] - s.tokEnd.data[0]) / 1000) : NaN;
    const eNow = s.nPower ? s.col("energy_j")[s.nPower - 1] : NaN;
    const e0 = s.energyAt(t0);
    const kind = m?.power.kind;
    const items: [string, string, string?][] = [
      ["phase", live ? phase : st],
      ["token", N ? `${n} / ${N}` : String(n)],
      ["tokens/s", fmtNum(tps, "", 3), "measured"],
      ["elapsed", fmtMs(tEnd - t0), "measured"],
      ["energy so far", fmtEnergy(eNow - (isFinite(e0) ? e0 : 0)), kind],
    ];
    this.fields.replaceChildren(
      ...items.map(([k, v, kd]) => {
        const f = h("span", "lew-field");
        f.append(h("span", "lew-muted", `${k} `), h("span", "lew-value", v));
        if (kd) f.append(badge(kd));
        return f;
      }),
    );
    this.error.hidden = !s.error;
    this.error.textContent = s.error ? `Error: ${s.error.message}` : "";
  }
}
