"""The live widget, polished (issue 10, §5): what the user sees, checked two ways.

Pure view logic runs in the built bundle under node, fed the state a real EnergyWidget sent
(`support.store_node`); the rest in headless Chromium on the bundle with a fake anywidget model
fed the same traffic (`support.widget`). Synthetic runs: tokens of 60-72 ms, a 200 ms prefill,
power read every 100 ms, kind `modeled` unless a test says otherwise.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import shutil
from typing import Any

import numpy as np
import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.runs import num
from support.store_node import captured_items, eval_store, needs_node, snapshot_items
from support.widget import (
    ARTIFACTS,
    capture,
    decode,
    deliver_js,
    events_with_full_power,
    full_run,
    page_html,
    play,
)

from llm_energy_widget.cli.run_text import summary_rows as cli_rows
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.core.schema import (
    ESTIMATE_UNCERTAINTY,
    FIGURE_ORIGINS,
    KIND_DEFINITIONS,
    METRICS,
    SUMMARY_DEFINITIONS,
    SUMMARY_LABELS,
)
from llm_energy_widget.run import Run
from llm_energy_widget.testing import apply_event, new_synthetic_run
from llm_energy_widget.view.static import summary_rows as static_rows
from llm_energy_widget.view.text import format_cost
from llm_energy_widget.view.widget import BUNDLE_JS, EnergyWidget
from llm_energy_widget.view.wire import run_meta, snapshot_of

TI = METRICS.index("time_ms")
ESTIMATE_DESCRIPTION = (
    "ESTIMATE, not a measurement: this process's CPU time only (all its threads; not other "
    "programs) x 10 W per busy core (the default); ignores frequency and memory traffic"
)


def fmt_ms(ms: float) -> str:
    """js/format.fmtMs for the durations here (1 ms to a few s)."""
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:#.3g} ms".replace(". ms", " ms")


def b64(buffers: list[bytes]) -> list[str]:
    return [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]


def as_estimate(run: Run, one_rail: bool = False) -> Run:
    """The run as the CPU-time estimate reports it (what this machine, with no counter, shows)."""
    Recorder(run).power_info(
        {
            "source": "estimate",
            "kind": "estimated",
            "scope": "process",
            "description": ESTIMATE_DESCRIPTION,
        }
    )
    if one_rail:  # the estimate has a cpu rail only: it is the total
        p = run._power
        p["cpu_w"] = list(p["total_w"])
        p["dram_w"] = [float("nan")] * len(p["total_w"])
        Recorder(run).power_info({})  # the summary is computed anew
    return run


def shifted_events(shift_ms: float, n_tokens: int, n_layers: int, **kw: Any) -> Any:
    """`events_with_full_power` with every time moved `shift_ms` later and the energy counter
    continued from `shift_ms` of 15 W before it (the baseline and the gap after it)."""
    e0 = 15.0 * shift_ms / 1000.0
    for name, args in events_with_full_power(n_tokens, n_layers, **kw):
        if name == "power":
            rec = dict(args[0])
            rec["t_ms"] += shift_ms
            rec["energy_j"] += e0
            yield name, (rec, args[1])
        elif name == "token":
            i, text, phase, start, end = args
            yield name, (i, text, phase, start + shift_ms, end + shift_ms)
        elif name in ("phase_start", "phase_end"):
            yield name, (args[0], args[1] + shift_ms)
        else:
            yield name, args


def baseline_run(
    n_tokens: int = 12, n_layers: int = 3, baseline_ms: float = 500.0, gap_ms: float = 300.0
) -> Any:
    """A finished run with a baseline [0, baseline_ms] and a gap of `gap_ms` before the prefill."""
    run = new_synthetic_run(n_layers=n_layers)
    Recorder(run).status("running")
    Recorder(run).phase_start("baseline", 0.0)
    shift = baseline_ms + gap_ms
    for k in range(int(shift // 100)):
        t = 100.0 * k
        rec: dict[str, Any] = {
            "t_ms": t,
            "cpu_w": 12.0,
            "gpu_w": None,
            "ane_w": None,
            "dram_w": 3.0,
        }
        rec.update(total_w=15.0, energy_j=15.0 * t / 1000.0, source="synthetic", kind="modeled")
        apply_event(run, "power", (rec, "baseline" if t <= baseline_ms else None))
        if t == baseline_ms:
            Recorder(run).phase_end("baseline", baseline_ms)
    run.baseline_w = 15.0
    for name, args in shifted_events(shift, n_tokens, n_layers):
        apply_event(run, name, args)
    Recorder(run).finish("completed", "synthetic run complete")
    return run


def live_capture(
    n_tokens: int = 30,
    n_layers: int = 3,
    speed: float = 8.0,
    texts: list[str] | None = None,
    events: Any = None,
) -> Any:
    """(run, widget, the captured traffic) of a synthetic run played in real time to the end."""
    run = new_synthetic_run(n_layers=n_layers)
    Recorder(run).status("running")
    run.settings["max_new_tokens"] = n_tokens
    w = EnergyWidget()
    cap = capture(w)
    w.attach(run)
    play(run, list(events or events_with_full_power(n_tokens, n_layers, texts=texts)), speed)
    Recorder(run).finish("completed", "synthetic run complete")
    assert w._flusher is not None
    w._flusher.join(timeout=5)
    return run, w, cap


# -- heatmap: a robust colour scale, a log option --------------------------------------------


@needs_node
def test_one_outlier_cell_does_not_flatten_a_token_on_the_default_scale() -> None:
    run = full_run(n_tokens=8, n_layers=6)
    row = run.layers[4]
    row[2, 3, TI] *= 200.0  # one cell 200x its neighbours (a GC pause inside one module)
    Recorder(run).layers(4, row)
    Recorder(run).power_info({})  # the summary is computed anew
    out = eval_store(
        *snapshot_items(run),
        """const vals = []; for (let l = 0; l < store.L; l++) for (let c = 0; c < store.C; c++)
  vals.push(store.value(4, l, c, 0));
const at = (kind) => { const sc = mod.colorScale(vals, kind);
  const pos = vals.map((v) => mod.scalePos(sc, v));
  return { sc, pos, labels: mod.scaleLabels(sc, "time_ms") }; };
return { vals, robust: at("robust"), linear: at("linear"), log: at("log") };""",
    )
    vals = np.asarray(out["vals"])
    outlier = int(np.argmax(vals))
    rest = np.delete(np.arange(vals.size), outlier)

    def spread(kind: str) -> float:
        pos = np.asarray(out[kind]["pos"])[rest]
        return float(np.percentile(pos, 90) - np.percentile(pos, 10))

    # full range: the other 53 cells share the bottom few percent of the colours
    assert spread("linear") < 0.05
    # robust (2-98 %): they spread over the colormap; the outlier is drawn at the end colour
    assert spread("robust") > 0.5
    assert out["robust"]["pos"][outlier] == 1.0
    assert out["robust"]["sc"]["clipHi"] is True
    assert out["robust"]["labels"]["hi"].startswith("≥ "), "the colour bar says it is clipped"
    assert not out["linear"]["labels"]["hi"].startswith("≥")
    # log: the outlier stays at the top without squeezing the rest to one colour
    assert spread("log") > 0.2
    assert out["log"]["pos"][outlier] == 1.0
    assert out["log"]["sc"]["lo"] == pytest.approx(vals.min())
    assert out["log"]["sc"]["kind"] == "log"


@needs_node
def test_colour_scale_edge_cases() -> None:
    out = eval_store(
        {},
        [],
        """const s = (v, k) => mod.colorScale(v, k);
return { two: s([1, 2], "robust"), flat: s([3, 3, 3, 3], "robust"), none: s([NaN, NaN], "robust"),
  zeros: s([0, 0.5, 5, 50], "log"), pos0: mod.scalePos(s([0, 0.5, 5, 50], "log"), 0),
  mid: mod.scalePos(s([1, 100], "log"), 10), nan: mod.scalePos(s([1, 2], "linear"), NaN) };""",
    )
    assert (out["two"]["lo"], out["two"]["hi"]) == (1, 2), "too few cells to clip: full range"
    assert out["flat"]["clipHi"] is False
    assert out["none"]["lo"] == 0
    assert out["zeros"]["lo"] == 0.5, "zeros are below a log scale"
    assert out["zeros"]["clipLo"] is True, "zeros are below a log scale"
    assert out["pos0"] == 0
    assert out["mid"] == pytest.approx(0.5), "10 is half way from 1 to 100 on a log scale"
    assert out["nan"] is None


# -- status: elapsed never goes backwards; one tokens/s ----------------------------------------


def _times_in(header: dict[str, Any], buffers: list[bytes]) -> list[float]:
    d = decode(header, buffers)
    times = [float(x) for x in d.get("tok_time", [])]
    if "power" in d:
        times += d["power"][:, 0].astype(float).tolist()
    for p in header.get("phases") or []:
        times += [p["start_ms"]] + ([p["end_ms"]] if p["end_ms"] is not None else [])
    return times


@needs_node
def test_elapsed_ticks_between_events_and_never_goes_backwards() -> None:
    run, _w, cap = live_capture(n_tokens=30, speed=8.0, events=shifted_events(800.0, 30, 3))
    meta = next(c for k, _t, c, _b in cap.items if k == "meta" and c)
    # the browser receives each message some 5-80 ms after its latest event (run clock = ms)
    rng = random.Random(7)
    items, r, latest = [], 0.0, 0.0
    for _kind, header, bufs in captured_items(cap.items):
        raw = [base64.b64decode(b) for b in bufs]
        latest = max([latest, *_times_in(header, raw)])
        r = max(r, latest + rng.uniform(5.0, 80.0))
        items.append([header, bufs, r])
    body = (
        f"const data = {json.dumps(items)}; const meta = {json.dumps(meta)};"
        + """
const buf = (b) => {
  const u = Buffer.from(b, "base64");
  return new DataView(u.buffer, u.byteOffset, u.byteLength);
};
const st = new mod.RunStore(); st.reset(meta, true);
const seen = [];
for (let i = 0; i < data.length; i++) {
  const [h, bs, r] = data[i];
  st.receive(h, bs.map(buf), r);
  const next = i + 1 < data.length ? data[i + 1][2] : r + 3000;
  for (let k = 0; k < 8; k++) {
    const now = r + ((next - r) * k) / 8;
    seen.push([now, st.elapsedMs(now), st.live]);
  }
}
// a long prefill has no event: the clock still moves (another store, fed up to the prefill start)
const pre = new mod.RunStore(); pre.reset(meta, true);
let r0 = 0;
for (const [h, bs, r] of data) {
  pre.receive(h, bs.map(buf), r); r0 = r;
  if (pre.phases.some((p) => p.name === "prefill")) break;
}
const status = mod.statusItems(st);
return { seen, tick: [pre.elapsedMs(r0), pre.elapsedMs(r0 + 2000)], open: pre.working,
  elapsed: status.find((i) => i.label === "elapsed").value, rate: status[2].value };"""
    )
    out = eval_store(meta, [], body)
    values = [(t, e, live) for t, e, live in out["seen"] if e is not None]
    assert values, "the clock starts while the run is live"
    assert values[0][2], "the clock starts while the run is live"
    for (t0, a, _), (t1, b, _) in itertools.pairwise(values):
        assert b >= a, f"elapsed went back from {a:.1f} to {b:.1f} ms at t={t1:.0f} (from {t0:.0f})"
    # before the first phase after the baseline: no elapsed figure, not a figure that resets
    assert out["seen"][0][1] is None
    s = run.summary()
    final = values[-1][1]
    assert not values[-1][2]
    assert final == pytest.approx(s["duration_ms"], rel=1e-6)
    assert out["elapsed"] == fmt_ms(s["duration_ms"])
    assert out["open"] is True
    before, after = out["tick"]
    assert after - before == pytest.approx(2000 - 250, abs=60), "it ticks, 250 ms behind"
    # one rate, decode tokens/s, the summary's figure to the digit
    assert out["rate"] == f"{s['decode_tokens_per_s']:#.3g}".rstrip(".")


@needs_node
def test_one_tokens_per_s_in_status_cards_and_report() -> None:
    run = full_run(n_tokens=16, n_layers=2)
    out = eval_store(
        *snapshot_items(run),
        "return { status: mod.statusItems(store), cards: mod.summaryCards(store) };",
    )
    rate = SUMMARY_LABELS["decode_tokens_per_s"]
    status = {i["label"]: i for i in out["status"]}
    cards = [c for c in out["cards"] if "tokens/s" in c["label"]]
    assert [c["key"] for c in cards] == ["decode_tokens_per_s"], "one tokens/s card"
    assert status[rate]["value"] == cards[0]["value"]
    assert status[rate]["title"].split("\n")[0] == SUMMARY_DEFINITIONS["decode_tokens_per_s"]
    rows = {name: value for name, value, _k in static_rows(run)}
    assert float(rows[rate]) == pytest.approx(float(cards[0]["value"]), rel=5e-3)


# -- tokens: whitespace shown, a stable colour scale ------------------------------------------


@needs_node
def test_whitespace_tokens_are_shown_with_glyphs() -> None:
    texts = ["\n", "  ", "\t", "", " Hello", "a\nb", " \n\n", "<b>"]
    out = eval_store({}, [], f"return {json.dumps(texts)}.map((t) => mod.tokenParts(t));")
    shown = ["".join(p["text"] for p in parts) for parts in out]
    glyphs = ["".join(p["text"] for p in parts if p["glyph"]) for parts in out]
    assert shown == ["↵\n", "··", "→", "∅", " Hello", "a↵\nb", "·↵\n↵\n", "<b>"]
    assert glyphs == ["↵", "··", "→", "∅", "", "↵", "·↵↵", ""]
    # a newline still breaks the line after its ↵; ordinary text is left as it is
    assert out[0] == [{"text": "↵", "glyph": True}, {"text": "\n", "glyph": False}]
    assert out[4] == [{"text": " Hello", "glyph": False}]


@needs_node
def test_token_colours_stay_put_as_tokens_arrive() -> None:
    _run, _w, cap = live_capture(n_tokens=80, n_layers=2, speed=20.0)
    meta = next(c for k, _t, c, _b in cap.items if k == "meta" and c)
    items = captured_items(cap.items)
    body = (
        f"const data = {json.dumps(items)};"
        + """
const buf = (b) => {
  const u = Buffer.from(b, "base64");
  return new DataView(u.buffer, u.byteOffset, u.byteLength);
};
const st = new mod.RunStore(); st.reset(store.meta, true);
let sc = null; const steps = []; let changes = 0;
for (const [, h, bs] of data) {
  st.receive(h, bs.map(buf));
  const next = mod.nextTokenScale(sc, st);
  if (next !== sc) { changes++; steps.push([st.nTokens, next.lo, next.hi]); }
  sc = next;
}
return { changes, steps, n: st.nTokens, e: Array.from(st.tokEnergy.data.slice(0, st.nTokens)) };"""
    )
    out = eval_store(meta, [], body)
    assert out["n"] == 80
    assert len(items) >= 5, "streamed in several updates"
    # a handful of steps over 80 tokens, never one recolour per update
    assert 1 <= out["changes"] <= 4, out["steps"]
    lo, hi = out["steps"][-1][1:]
    e = np.asarray(out["e"][1:])  # the decode tokens
    assert lo <= np.percentile(e, 2)
    assert np.percentile(e, 98) <= hi
    # round bounds: both ends are multiples of one 1/2/5 x 10^k step, a few steps apart
    assert _round_bounds(lo, hi), (lo, hi)
    # each step only widens: colours of earlier tokens move only at those steps
    los = [s[1] for s in out["steps"]]
    his = [s[2] for s in out["steps"]]
    assert los == sorted(los, reverse=True)
    assert his == sorted(his)


def _round_bounds(lo: float, hi: float) -> bool:
    for k in range(-12, 4):
        for f in (1, 2, 5):
            step = f * 10.0**k
            n_lo, n_hi = lo / step, hi / step
            if (
                abs(n_lo - round(n_lo)) < 1e-6
                and abs(n_hi - round(n_hi)) < 1e-6
                and 1 <= round(n_hi - n_lo) <= 12
            ):
                return True
    return False


@needs_node
def test_a_scale_from_the_prefill_token_alone_is_dropped_when_decode_tokens_come() -> None:
    # live, the prefill token (the whole prompt's work, here 10x a decode token) comes first
    run = full_run(n_tokens=20, n_layers=2)
    out = eval_store(
        *snapshot_items(run),
        """store.tokEnergy.data[0] *= 10;
const n = store.nTokens;
store.nTokens = 1;
const first = mod.nextTokenScale(null, store);
store.nTokens = n;
return { first, next: mod.nextTokenScale(first, store),
  e: Array.from(store.tokEnergy.data.slice(0, n)) };""",
    )
    e = np.asarray(out["e"])
    assert out["first"]["prefillOnly"]
    assert out["first"]["hi"] >= e[0]
    # then: the decode tokens' scale, the prefill clamped above it
    assert not out["next"]["prefillOnly"]
    assert out["next"]["hi"] < e[0] / 3
    assert out["next"]["hi"] >= e[1:].max() * 0.9


@needs_node
def test_one_outlier_token_is_clamped_not_flattening_the_others() -> None:
    run = full_run(n_tokens=40, n_layers=2)
    meta, items = snapshot_items(run)
    out = eval_store(
        meta,
        items,
        """store.tokEnergy.data[20] *= 30; // one decode token 30x the others
const sc = mod.nextTokenScale(null, store);
return { sc, e: Array.from(store.tokEnergy.data.slice(0, store.nTokens)) };""",
    )
    e = np.asarray(out["e"])
    assert out["sc"]["hi"] < e[20] / 5, "the outlier is above the scale, drawn at its end"
    others = np.delete(e[1:], 19)
    pos = (others - out["sc"]["lo"]) / (out["sc"]["hi"] - out["sc"]["lo"])
    assert np.ptp(pos) > 0.3


# -- every kind explains itself --------------------------------------------------------------


@needs_node
def test_kind_badges_say_where_the_number_comes_from_and_an_estimate_its_uncertainty() -> None:
    run = as_estimate(full_run(n_tokens=8, n_layers=2))
    out = eval_store(
        *snapshot_items(run),
        """return { cards: mod.summaryCards(store), status: mod.statusItems(store),
  tok: mod.kindTip(store.meta, store.powerInfo(), "estimated", "tokens") };""",
    )
    cards = {c["key"]: c for c in out["cards"]}
    energy = cards["decode_j_per_token"]["tip"]
    assert energy[0] == KIND_DEFINITIONS["estimated"]
    assert f"source estimate: {ESTIMATE_DESCRIPTION}" in energy
    assert "scope: process" in energy
    assert f"uncertainty: {ESTIMATE_UNCERTAINTY}" in energy
    assert "±50 %" in ESTIMATE_UNCERTAINTY
    ttft = cards["ttft_ms"]["tip"]
    assert ttft == [KIND_DEFINITIONS["measured"], f"from {FIGURE_ORIGINS['timing']}"]
    cost = cards["cost_usd"]["tip"]
    assert cost[:2] == [KIND_DEFINITIONS["modeled"], f"from {FIGURE_ORIGINS['cost']}"]
    assert cost[2].startswith("energy: estimated · process, from estimate: ESTIMATE")
    assert cost[3] == f"uncertainty: {ESTIMATE_UNCERTAINTY}", "a price x an estimate is no better"
    assert cards["outside_layers_energy_j"]["tip"][1] == f"from {FIGURE_ORIGINS['layers.outside']}"
    for item in out["status"]:
        if "kind" in item:
            assert item["tip"], item
            assert item["tip"][0] == KIND_DEFINITIONS[item["kind"]], item
    assert out["tok"][-1] == f"uncertainty: {ESTIMATE_UNCERTAINTY}"

    # a measured source: its own description, no uncertainty line made up for it
    Recorder(run).power_info(
        {"source": "nvml", "kind": "measured", "scope": "GPU 0", "description": "NVML counter"}
    )
    cards = {
        c["key"]: c for c in eval_store(*snapshot_items(run), "return mod.summaryCards(store);")
    }
    assert cards["total_energy_j"]["tip"] == [
        KIND_DEFINITIONS["measured"],
        "source nvml: NVML counter",
        "scope: GPU 0",
    ]
    # a replay trace labelled "estimated": not given the CPU-time estimate's figure
    Recorder(run).power_info({"source": "replay", "kind": "estimated", "description": "trace.csv"})
    cards = {
        c["key"]: c for c in eval_store(*snapshot_items(run), "return mod.summaryCards(store);")
    }
    assert cards["total_energy_j"]["tip"][-1].startswith("uncertainty: that of the source's own")


# -- one cost format -------------------------------------------------------------------------

COSTS = [3.1e-06, 2.37e-08, 1.0e-4, 9.99e-05, 0.000123456, 0.0123, 0.5, 1.0, 12.3456, 0.0, 1e-12]


@needs_node
def test_cost_reads_the_same_in_widget_static_view_report_and_cli() -> None:
    js = eval_store({}, [], f"return {json.dumps(COSTS)}.map((x) => mod.fmtCost(x));")
    assert js == [format_cost(x) for x in COSTS]
    assert format_cost(3.1e-06) == "$3.1e-06"
    assert format_cost(None) == "–"
    run = full_run(n_tokens=6, n_layers=2)
    cost = format_cost(run.summary()["cost_usd"])
    card = next(
        c
        for c in eval_store(*snapshot_items(run), "return mod.summaryCards(store);")
        if c["key"] == "cost_usd"
    )
    assert card["value"] == cost
    assert dict((n, v) for n, v, _k in static_rows(run))[SUMMARY_LABELS["cost_usd"]] == cost
    assert dict(cli_rows(run))[SUMMARY_LABELS["cost_usd"]].startswith(f"{cost} (modeled, at ")
    assert re.fullmatch(r"\$\d(\.\d+)?e-\d\d", cost), cost


# -- power chart: tokens on the time axis, the gap after the baseline, labels that fit ----------


@needs_node
def test_power_hover_names_the_token_at_that_time_and_its_energy() -> None:
    run = full_run(n_tokens=10, n_layers=2)
    tok = run.tokens()[6]
    mid = (num(tok["start_ms"]) + num(tok["end_ms"])) / 2
    out = eval_store(
        *snapshot_items(run),
        f"""return {{ at: mod.tokenAt(store, {mid}), before: mod.tokenAt(store, -5),
  after: mod.tokenAt(store, 1e9), tip: mod.powerTip(store, {mid}, ["cpu_w", "total_w"]) }};""",
    )
    assert out["at"] == 6
    assert out["before"] == -1
    assert out["after"] == -1
    e = num(tok["energy_j"])
    assert out["tip"][0] == f"t = {mid / 1000:.3f} s"
    assert 1 < e < 10
    assert out["tip"][1].startswith(f'token 6: " tok6" · {e:#.3g} J (modeled) over ')
    assert any(line.startswith("  total: ") and line.endswith(" W") for line in out["tip"])
    assert "phase: decode" in out["tip"]


@needs_node
def test_the_gap_after_the_baseline_is_tagged() -> None:
    run = baseline_run(baseline_ms=500.0, gap_ms=300.0)
    out = eval_store(
        *snapshot_items(run),
        """return { gap: mod.baselineGap(store), tip: mod.powerTip(store, 650, ["total_w"]),
  elapsed: mod.statusItems(store).find((i) => i.label === "elapsed").value };""",
    )
    assert out["gap"] == {"start_ms": 500.0, "end_ms": 800.0, "next": "prefill"}
    assert (
        "gap after the baseline: 300 ms before prefill, in no phase "
        "(neither the baseline nor the run's energy)"
    ) in out["tip"]
    # elapsed is the run's window, the baseline and the gap left out (the summary's duration)
    assert out["elapsed"] == fmt_ms(run.summary()["duration_ms"])
    plain = full_run(n_tokens=4, n_layers=2)
    assert eval_store(*snapshot_items(plain), "return mod.baselineGap(store);") is None


@needs_node
def test_chart_labels_do_not_overlap_at_700_px() -> None:
    out = eval_store(
        {},
        [],
        """const m = (t) => t.length * 6.5; // 11 px system-ui, about
const ticks = mod.timeTicks(0, 73.4, 700 - 54, m).map((v) => [v, m(`${v} s`)]);
const bands = [["baseline", 44, 90], ["gap", 137, 40], ["tokenize", 180, 8],
  ["to_device", 190, 30], ["prefill", 223, 60], ["decode", 285, 300], ["tail", 590, 12]]
  .map(([text, x, width]) => ({ text, x, width }));
return { ticks, labels: mod.fitLabels(bands, m) };""",
    )
    xs = [44 + (v / 73.4) * 646 for v, _w in out["ticks"]]
    widths = [w for _v, w in out["ticks"]]
    for i in range(len(xs) - 1):
        assert xs[i] + widths[i] / 2 + 4 <= xs[i + 1] - widths[i + 1] / 2, out["ticks"]
    assert len(xs) >= 4
    kept = [lab["text"] for lab in out["labels"]]
    assert kept == ["baseline", "gap", "prefill", "decode"], "only labels that fit their band"


# -- in the browser --------------------------------------------------------------------------

browser_only = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium"),
    pytest.mark.skipif(not BUNDLE_JS.is_file(), reason="needs the bundle (npm run build)"),
]


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def fake_page(browser: Any, width: int = 1100, scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width + 20, "height": 1200}, color_scheme=scheme)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(page_html().replace("width:1100px", f"width:{width}px"))
    page.wait_for_function("window.lewReady === true")
    return page, errors


def feed(page: Any, items: Any) -> None:
    for item in items:
        expr, arg = deliver_js(item)
        page.evaluate(expr, arg)


def show_run(page: Any, run: Run) -> None:
    """A finished run, as a widget attached to it holds it (meta and snapshot traits)."""
    snap = snapshot_of(run)
    page.evaluate(
        "([m, h, b]) => { window.lew.state.meta = m; window.lew.setSnapshot(h, b); }",
        [run_meta(run, snap["header"]["run_key"]), snap["header"], b64(snap["buffers"])],
    )


def rerender_with_a_new_proxy(page: Any) -> None:
    """What anywidget does for a re-rendered output: a fresh proxy of the same model."""
    page.evaluate(
        """() => { const l = window.lew; l.cleanup();
          const m = l.model; const proxy = { get: m.get, on: m.on, off: m.off, send: m.send };
          l.cleanup = l.mod.default.render({ model: proxy, el: document.getElementById("w") }); }"""
    )


HEAT = ".lew-heatmap"
SEL = {k: f"{HEAT} select[aria-label='{k}']" for k in ("metric", "colour scale", "token shown")}


def canvas_hash(page: Any, sel: str) -> int:
    return int(
        page.evaluate(
            """(sel) => { const c = document.querySelector(sel);
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let h = 2166136261;
              for (let i = 0; i < d.length; i += 3) { h ^= d[i]; h = Math.imul(h, 16777619); }
              return h >>> 0; }""",
            sel,
        )
    )


def browser_test(fn: Any) -> Any:
    for m in reversed(browser_only):
        fn = m(fn)
    return fn


@browser_test
def test_an_empty_widget_says_no_run_yet_and_nothing_else(browser: Any) -> None:
    page, errors = fake_page(browser)
    page.evaluate("window.lew.render()")
    root = page.locator(".lew-root")
    root.wait_for()
    assert root.locator(".lew-run-title").inner_text().startswith("no run yet")
    assert root.locator(".lew-state").count() == 0, "no 'pending' badge"
    assert root.locator(".lew-stop").is_hidden(), "nothing to stop"
    for sel in (".lew-power", ".lew-grid", ".lew-cards", ".lew-fields .lew-field", ".lew-prompt"):
        loc = root.locator(sel)
        assert loc.count() == 0 or loc.first.is_hidden(), f"{sel} shown with no run"
    assert "pending" not in root.inner_text()
    assert "waiting" not in root.inner_text()
    assert errors == []
    page.close()


def _caption(page: Any) -> str:
    return page.locator(f"{HEAT} .lew-caption").inner_text()


def _wait_caption(page: Any, prefix: str) -> None:
    page.wait_for_function(
        "(p) => document.querySelector('.lew-heatmap .lew-caption').textContent.startsWith(p)",
        arg=prefix,
        timeout=5000,
    )


@browser_test
def test_heatmap_shows_the_mean_after_the_run_and_keeps_the_users_choices(browser: Any) -> None:
    _run, _w, cap = live_capture(n_tokens=24, n_layers=4, speed=8.0)
    done = next(
        i
        for i, (k, _t, c, _b) in enumerate(cap.items)
        if k == "msg" and (c.get("status") or {}).get("status") == "completed"
    )
    page, errors = fake_page(browser)
    page.evaluate("window.lew.render()")
    feed(page, cap.items[:done])
    page.wait_for_function("document.querySelectorAll('.lew-tok').length > 3")
    # live: the latest token, and the option says so
    assert page.locator(SEL["token shown"]).input_value() == "latest"
    assert page.locator(f"{SEL['token shown']} option").first.inner_text() == "latest token (live)"
    assert _caption(page).startswith("token ")
    feed(page, cap.items[done:])
    page.wait_for_selector(".lew-card")
    # done: the mean over the decode tokens, by default
    _wait_caption(page, "mean over 23 decode tokens (prefill excluded)")
    assert page.locator(SEL["token shown"]).input_value() == "mean"
    assert page.locator(f"{SEL['token shown']} option").first.inner_text() == "last token"
    assert page.locator(SEL["colour scale"]).input_value() == "robust", "robust by default"

    # the user's metric, scale and token survive a re-render of the output
    page.select_option(SEL["metric"], label="energy (modeled)")
    page.select_option(SEL["colour scale"], value="log")
    page.locator('.lew-tok[data-i="3"]').click()
    _wait_caption(page, 'token 3: " tok3"')
    rerender_with_a_new_proxy(page)
    _wait_caption(page, 'token 3: " tok3"')
    assert page.locator(SEL["metric"]).evaluate("s => s.selectedOptions[0].textContent") == (
        "energy (modeled)"
    )
    assert page.locator(SEL["colour scale"]).input_value() == "log"
    assert page.locator(SEL["token shown"]).input_value() == "token"

    # the slider takes the arrow keys (JupyterLab's own shortcuts: tests/browser)
    page.locator(f"{HEAT} .lew-slider").focus()
    page.keyboard.press("ArrowRight")
    _wait_caption(page, 'token 4: " tok4"')
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    _wait_caption(page, 'token 2: " tok2"')
    assert page.locator(f"{HEAT} .lew-slider").get_attribute("data-lm-suppress-shortcuts")

    # and a new run on the same widget: same metric and scale, mode and token
    run2, _w2, cap2 = live_capture(n_tokens=8, n_layers=4, speed=8.0)
    feed(page, cap2.items)
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 8")
    assert run2.run_id in page.locator(".lew-run-title").inner_text()
    _wait_caption(page, 'token 2: " tok2"')
    assert page.locator(SEL["colour scale"]).input_value() == "log"
    assert "energy" in page.locator(SEL["metric"]).evaluate("s => s.selectedOptions[0].textContent")
    # UI-only: nothing of it went to the kernel
    assert page.evaluate("window.lew.sent") == []
    assert errors == []
    page.close()


def _px_of(run: Run, t_ms: float, width: int) -> float:
    """Where the power chart draws time t_ms (its whole-run domain), in CSS px from its left."""
    pw = run.power_arrays()["t_ms"]
    t0 = min(float(pw[0]), run.phases()[0]["start_ms"]) / 1000
    t1 = max(float(pw[-1]), num(run.tokens()[-1]["end_ms"])) / 1000
    return 44 + (t_ms / 1000 - t0) / (t1 - t0) * (width - 54)


@browser_test
def test_power_chart_links_time_to_tokens_zooms_and_toggles_rails(browser: Any) -> None:
    run = full_run(n_tokens=30, n_layers=3)
    page, errors = fake_page(browser)
    show_run(page, run)
    page.evaluate("window.lew.render()")
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 30")
    canvas = page.locator(".lew-power canvas")
    box = canvas.bounding_box()
    assert box is not None
    tok = run.tokens()[12]
    x = _px_of(run, (num(tok["start_ms"]) + num(tok["end_ms"])) / 2, box["width"])
    page.mouse.move(box["x"] + x, box["y"] + 60)
    tip = page.locator(".lew-tooltip").inner_text()
    assert 'token 12: " tok12" · ' in tip, tip
    assert "J (modeled) over " in tip, tip
    # the token under the cursor is marked in the text too
    assert page.locator(".lew-tok-hot").get_attribute("data-i") == "12"
    t_before = float(re.search(r"t = ([\d.]+) s", tip).group(1))  # type: ignore[union-attr]

    # drag to zoom: the same pixel is then a time inside the dragged window
    a, b = _px_of(run, 600.0, box["width"]), _px_of(run, 900.0, box["width"])
    page.mouse.move(box["x"] + a, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + (a + b) / 2, box["y"] + 60)
    page.mouse.move(box["x"] + b, box["y"] + 60)
    page.mouse.up()
    reset = page.locator(".lew-power .lew-reset")
    reset.wait_for(state="visible", timeout=5000)
    page.mouse.move(box["x"] + x, box["y"] + 61)
    m = re.search(r"t = ([\d.]+) s", page.locator(".lew-tooltip").inner_text())
    assert m is not None
    t_zoomed = float(m.group(1))
    assert 0.59 <= t_zoomed <= 0.91
    assert abs(t_zoomed - t_before) > 0.05
    page.mouse.dblclick(box["x"] + x, box["y"] + 60)
    reset.wait_for(state="hidden", timeout=5000)
    page.mouse.move(box["x"] + x, box["y"] + 62)
    again = page.locator(".lew-tooltip").inner_text()
    assert f"t = {t_before:.3f} s" in again, "double-click: the whole run again"
    # and the button resets too
    page.mouse.move(box["x"] + a, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + b, box["y"] + 60)
    page.mouse.up()
    reset.click()
    reset.wait_for(state="hidden", timeout=5000)

    # legend toggles: a rail hidden and shown again, the chart as it was
    page.mouse.move(0, 0)
    page.wait_for_timeout(100)
    full = canvas_hash(page, ".lew-power canvas")
    cpu = page.locator('.lew-legend-rail[data-rail="cpu_w"]')
    cpu.click()
    expect(cpu).to_have_attribute("aria-pressed", "false")
    page.mouse.move(0, 0)
    page.wait_for_timeout(100)
    assert canvas_hash(page, ".lew-power canvas") != full
    cpu.click()
    page.mouse.move(0, 0)
    page.wait_for_timeout(100)
    expect(cpu).to_have_attribute("aria-pressed", "true")
    assert canvas_hash(page, ".lew-power canvas") == full
    assert errors == []
    page.close()


@browser_test
def test_narrow_widget_estimate_source_baseline_gap_and_kind_tooltips(browser: Any) -> None:
    run = as_estimate(baseline_run(n_tokens=16, n_layers=4), one_rail=True)
    run.prompt = "<img src=x onerror=alert(1)> Why is the sky blue?\nAnswer briefly."
    page, errors = fake_page(browser, width=700)
    show_run(page, run)
    page.evaluate("window.lew.render()")
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 16")
    root = page.locator(".lew-root")
    # the one rail equals the total: dashed over it, and the legend says so
    cpu = page.locator('.lew-legend-rail[data-rail="cpu_w"]')
    assert cpu.inner_text() == "CPU (= total)"
    assert "lew-dashed" in (cpu.get_attribute("class") or "")
    gap = page.locator('.lew-legend-gap[data-phase="gap"]')
    assert gap.inner_text() == "gap after baseline"
    assert (gap.get_attribute("title") or "").startswith(
        "300 ms between the baseline's end and prefill"
    )
    # readable at 700 px: nothing in a panel head overlaps or sticks out
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('.lew-panel-head')].map((head) => {
          const panel = head.closest('.lew-panel').getBoundingClientRect();
          const sel = '.lew-title, .lew-legend-item, .lew-source > *, select, .lew-slider, '
            + '.lew-scale > *, .lew-reset';
          const items = [...head.querySelectorAll(sel)]
            .filter((e) => e.offsetParent).map((e) => { const r = e.getBoundingClientRect();
              return [e.textContent.slice(0, 30), r.left, r.top, r.right, r.bottom]; });
          return { panel: [panel.left, panel.right], items }; })"""
    )
    for head in boxes:
        left, right = head["panel"]
        items = head["items"]
        for name, l0, _t, r0, _b in items:
            assert left - 0.5 <= l0, f"{name!r} sticks out of its panel"
            assert r0 <= right + 0.5, f"{name!r} sticks out of its panel"
        for i, (n1, l1, t1, r1, b1) in enumerate(items):
            for n2, l2, t2, r2, b2 in items[i + 1 :]:
                inside = (l2 >= l1 and r2 <= r1 and t2 >= t1 and b2 <= b1) or (
                    l1 >= l2 and r1 <= r2 and t1 >= t2 and b1 <= b2
                )
                overlap = min(r1, r2) - max(l1, l2) > 1 and min(b1, b2) - max(t1, t2) > 1
                assert inside or not overlap, f"{n1!r} overlaps {n2!r}"
    assert page.evaluate("document.querySelector('.lew-root').scrollWidth") <= 701
    # every kind badge explains itself on hover; the estimate with its model and uncertainty
    titles = page.eval_on_selector_all(".lew-badge", "bs => bs.map((b) => b.title)")
    assert titles, "a badge without an explanation"
    assert all(titles), "a badge without an explanation"
    src = page.locator(".lew-power .lew-source .lew-badge").get_attribute("title") or ""
    assert src.startswith(KIND_DEFINITIONS["estimated"])
    assert ESTIMATE_DESCRIPTION in src
    assert ESTIMATE_UNCERTAINTY in src
    # the prompt: the user's text, as text
    prompt = root.locator(".lew-prompt")
    assert prompt.inner_text() == (
        "prompt: <img src=x onerror=alert(1)> Why is the sky blue? Answer briefly."
    )
    assert prompt.get_attribute("title") == run.prompt
    assert page.locator(".lew-root img").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    root.screenshot(path=str(ARTIFACTS / "widget-700.png"))
    assert errors == []
    page.close()


@browser_test
def test_whitespace_tokens_are_visible_and_hoverable(browser: Any) -> None:
    texts = [" Hello", "\n", "  ", " world", "", "\n\n"]
    run = full_run(n_tokens=6, n_layers=2, texts=texts)
    page, errors = fake_page(browser)
    show_run(page, run)
    page.evaluate("window.lew.render()")
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 6")
    shown = page.eval_on_selector_all(".lew-tok", "els => els.map((e) => e.textContent)")
    assert shown == [" Hello", "↵\n", "··", " world", "∅", "↵\n↵\n"]
    muted = page.eval_on_selector_all(
        ".lew-tok", "els => els.map((e) => e.classList.contains('lew-tok-ws'))"
    )
    assert muted == [False, True, True, False, True, True]
    for i, text in enumerate(texts):
        tok = page.locator(f'.lew-tok[data-i="{i}"]')
        bb = tok.bounding_box()
        assert bb, (i, bb)
        assert bb["width"] >= 4, (i, bb)
        assert bb["height"] >= 8, (i, bb)
        tok.hover()
        tip = page.locator(".lew-tooltip").inner_text()
        assert tip.startswith(f"token {i}: {json.dumps(text)}"), tip
    # the colour legend: a gradient between two energies, per token, with the kind
    legend = page.locator(".lew-tokens .lew-scale")
    assert re.search(
        r"[\d.]+ (mJ|J) .*[\d.]+ (mJ|J) per token", legend.inner_text().replace("\n", " ")
    )
    assert legend.locator(".lew-gradient").count() == 1
    assert legend.locator(".lew-badge").get_attribute("title")
    assert errors == []
    page.close()
