"""What each view shows, checked against answers worked out by hand: the bundle's store and view
functions under node (fed the state a real widget holds), the static SVG / text and the report.

Synthetic runs: every token's decoder layers take 75 % of its time (`testing.LAYER_COVERAGE`),
tokens take 60-72 ms, the prefill token 200 ms, power is read every 100 ms.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.runs import num
from support.store_node import eval_run, eval_store, needs_node, snapshot_items
from support.widget import full_run

from llm_energy_widget.core.attribution import OUTSIDE_LAYERS
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.core.schema import METRIC_LABELS, METRICS, SUMMARY_LABELS
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events
from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.static import PHASE_COLORS, render_html, render_svg, render_text
from llm_energy_widget.view.widget import BUNDLE_JS
from llm_energy_widget.view.wire import run_meta, snapshot_of

SVG = "{http://www.w3.org/2000/svg}"
TI, EI = METRICS.index("time_ms"), METRICS.index("energy_j")
COMPONENTS_12 = tuple(f"c{i}" for i in range(12))

# JS: every layer cell of every token, for metric index m, as nested arrays [t][l][c]
CELLS_JS = """
const cells = (m) => Array.from({ length: store.nRows }, (_, t) =>
  Array.from({ length: store.L }, (_, l) =>
    Array.from({ length: store.C }, (_, c) => store.value(t, l, c, m))));
"""


def cards_by_key(cards: list[dict]) -> dict[str, dict]:
    return {c["key"]: c for c in cards}


def fmt3(x: float) -> str:
    """JS toPrecision(3)."""
    return f"{x:#.3g}".rstrip(".")


# -- 1. layer x component energy: token energy x cell time / token time -----------------------


@needs_node
def test_layer_cells_sum_to_coverage_times_token_energy_in_the_store() -> None:
    run = full_run(n_tokens=12, n_layers=3)
    out = eval_run(
        run,
        CELLS_JS
        + """
const n = store.nRows;
return { energy: cells(1), time: cells(0), e: Array.from(store.tokEnergy.data.slice(0, n)),
  coverage: Array.from({ length: n }, (_, t) => store.coverage(t)),
  outsideJ: Array.from({ length: n }, (_, t) => store.outsideJ(t)),
  caption: mod.heatCaption(store, "token", 4, "energy_j"),
  cards: mod.summaryCards(store) };""",
    )
    energy = np.asarray(out["energy"], dtype=float)
    e = np.asarray(out["e"])
    # by hand: the layers run 75 % of each token, so the cells hold 75 % of its energy
    assert np.allclose(energy.sum(axis=(1, 2)), 0.75 * e, rtol=1e-5)
    assert np.allclose(out["coverage"], 0.75, rtol=1e-5)
    assert np.allclose(out["outsideJ"], 0.25 * e, rtol=1e-5)
    # and each cell is what the Run holds (the 8-bit code's bound, below 2 %)
    assert np.allclose(energy, run.layers[..., EI], rtol=0.02)
    tok = run.tokens()[4]
    head, sub = out["caption"]
    assert head == 'token 4: " tok4"'
    assert sub.startswith("layers cover 75.0 % of ")
    assert f"{OUTSIDE_LAYERS}: " in sub
    assert (
        f"cells sum to {fmt3(0.75 * num(tok['energy_j']))} J of {fmt3(num(tok['energy_j']))} J"
        in sub
    )
    cards = cards_by_key(out["cards"])
    assert cards["layer_coverage"]["label"] == SUMMARY_LABELS["layer_coverage"]
    assert cards["layer_coverage"]["value"] == "75.0 %"
    s = run.summary()
    assert cards["outside_layers_energy_j"]["value"] == f"{fmt3(s['outside_layers_energy_j'])} J"
    assert s["outside_layers_energy_j"] == pytest.approx(0.25 * s["generation_energy_j"], rel=1e-4)


@needs_node
def test_a_token_whose_layers_outlast_its_clock_never_gets_more_than_its_energy() -> None:
    run = full_run(n_tokens=6, n_layers=3)
    row = run.layers[3]
    row[:, :, TI] *= 1.6  # device-event time 1.2 x the host's token time
    Recorder(run).layers(3, row)  # modeled energy derived anew
    out = eval_run(run, CELLS_JS + "return { energy: cells(1)[3], cov: store.coverage(3) };")
    e3 = run.tokens()[3]["energy_j"]
    assert out["cov"] == pytest.approx(1.0)
    assert np.sum(out["energy"]) == pytest.approx(e3, rel=1e-5)


def test_static_view_shows_coverage_and_outside_layers() -> None:
    run = full_run(n_tokens=12, n_layers=3)
    svg = render_svg(run)
    assert "layers cover 75 % of token time" in svg
    assert f"{OUTSIDE_LAYERS}: " in svg
    text = render_text(run)
    assert f"{SUMMARY_LABELS['layer_coverage']}: 75 % (measured)" in text
    s = run.summary()
    assert (
        f"{SUMMARY_LABELS['outside_layers_energy_j']}: {s['outside_layers_energy_j']:.3g} J" in text
    )


# -- 2. peak power: the generation window's, of the total rail, with the averaging window ---------


def peaky_run(window_ms: float | None = None) -> Any:
    """A run whose highest reading (500 W) is after the last token: not the generation's peak."""
    run = new_synthetic_run(n_layers=2)
    Recorder(run).status("running")
    events = list(synthetic_events(n_tokens=8, n_layers=2))
    for name, args in events:
        apply_event(run, name, args)
    last = run.power_records()[-1]
    for k in (1, 2, 3):
        rec = {**last, "t_ms": last["t_ms"] + 100 * k, "total_w": 500.0}
        rec["energy_j"] = last["energy_j"] + 50.0 * k
        Recorder(run).power(rec, None)
    if window_ms is not None:
        run.power_info["power_window_ms"] = window_ms
    Recorder(run).finish("completed", "x")
    return run


@needs_node
def test_peak_card_is_the_generation_peak_of_the_total_rail_and_says_its_window() -> None:
    run = peaky_run(window_ms=1000.0)
    peak = run.summary()["peak_power_w"]["total_w"]
    assert peak < 40, "the 500 W spike outside the generation window is not its peak"
    card = cards_by_key(eval_run(run, "return mod.summaryCards(store);"))["peak_power_w"]
    assert card["label"] == SUMMARY_LABELS["peak_power_w"]
    assert card["value"] == f"{fmt3(peak)} W"
    assert card["sub"].startswith("total · 1-s average · ")
    assert f"{SUMMARY_LABELS['peak_power_w']}: {peak:.3g} W (total, 1-s average)" in render_text(
        run
    )
    plain = peaky_run()
    card = cards_by_key(eval_run(plain, "return mod.summaryCards(store);"))["peak_power_w"]
    assert card["sub"].startswith("total · ")
    assert "average" not in card["sub"]
    assert "W (total) (" in render_text(plain)


# -- 3. the real resolution, not the poll interval; tokens below it flagged -----------------------


@needs_node
def test_resolution_is_the_sources_and_short_tokens_say_they_are_interpolated(
    tmp_path: Path,
) -> None:
    run = full_run(n_tokens=6, n_layers=2)
    Recorder(run).power_info({"resolution_ms": 1000.0})  # 1-s native updates, polled every 100 ms
    out = eval_run(
        run,
        """return { src: mod.sourceNote(store), note: mod.summaryNote(store),
  tip: mod.tokenTip(store, 2), below: [0, 1, 2].map((t) => store.belowResolution(t)) };""",
    )
    assert out["src"] == "resolution 1.00 s · polled every 100 ms"
    assert "resolution 1.00 s" in out["note"]
    assert out["below"] == [True, True, True]
    assert "< resolution (1.00 s), interpolated between readings" in out["tip"]
    text = render_text(run)
    assert "resolution 1000 ms, polled every 100 ms" in text
    assert "tokens < resolution (1000 ms), interpolated: 6 of 6 (#0, #1, #2, #3, #4, #5)" in text
    page = to_html(run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("&lt; resolution, interpolated") == 6

    # 50 ms: every token (60-72 ms, the prefill 200 ms) is longer, none is flagged
    Recorder(run).power_info({"resolution_ms": 50.0})
    out = eval_run(run, "return [0, 1, 2].map((t) => mod.tokenTip(store, t).join('|'));")
    assert not any("< resolution" in t for t in out)
    assert "interpolated" not in render_text(run)


@needs_node
def test_resolution_falls_back_to_the_poll_interval() -> None:
    run = full_run(n_tokens=4, n_layers=2)
    assert "resolution_ms" not in run.power_info
    assert eval_run(run, "return mod.sourceNote(store);") == "resolution 100 ms"
    assert "(modeled, resolution 100 ms)" in render_text(run)


# -- 4. one name per figure, from core.schema ----------------------------------------------------


@needs_node
def test_rates_and_metrics_carry_the_schema_names_everywhere() -> None:
    run = full_run(n_tokens=10, n_layers=2)
    meta, _ = snapshot_items(run)
    assert meta["names"]["summary"] == SUMMARY_LABELS
    assert meta["names"]["metrics"] == METRIC_LABELS
    am, ax = METRICS.index("act_mean"), METRICS.index("act_max")
    out = eval_run(
        run,
        f"""return {{ status: mod.statusItems(store), cards: mod.summaryCards(store),
  mean: mod.cellTip(store, "token", 3, {am}, 0, 0, store.value(3, 0, 0, {am})),
  max: mod.cellTip(store, "token", 3, {ax}, 0, 0, store.value(3, 0, 0, {ax})) }};""",
    )
    status = {i["label"]: i["value"] for i in out["status"]}
    cards = cards_by_key(out["cards"])
    rate = SUMMARY_LABELS["decode_tokens_per_s"]
    assert rate == "decode tokens/s"
    # the status line's rate is the summary's decode rate: (n - 1) / (last end - first end)
    s = run.summary()
    assert float(status[rate]) == pytest.approx(s["decode_tokens_per_s"], rel=5e-3)
    assert cards["decode_tokens_per_s"]["label"] == rate
    assert status[rate] == cards["decode_tokens_per_s"]["value"]
    # one rate in the widget: decode tokens/s (the all-tokens rate is no second "tokens/s")
    assert "tokens_per_s" not in cards
    assert out["cards"][0]["key"] == "decode_j_per_token", "the headline comes first"
    assert cards["prefill_j_per_prompt_token"]["label"] == "prefill J/prompt token"
    assert out["mean"][1].startswith("mean |x|: ")
    assert out["max"][1].startswith("max |x|: ")
    text = render_text(run)
    assert f"{rate}: {s['decode_tokens_per_s']:.3g} (measured)" in text
    assert "tokens / s" not in text
    svg = render_svg(run)
    assert "mean |x| " in svg
    assert "max |x| " in svg
    bundle = BUNDLE_JS.read_text(encoding="utf-8")
    for old in ("activation mean", "activation max", "tokens / s", "mean over run"):
        assert old not in bundle, f"the bundle still spells {old!r} itself"


# -- 5. the scope next to the kind ---------------------------------------------------------------


@needs_node
def test_kind_badges_carry_the_scope_when_the_source_says() -> None:
    run = full_run(n_tokens=6, n_layers=2)
    Recorder(run).power_info({"kind": "estimated", "scope": "process"})
    out = eval_run(
        run,
        """return { status: mod.statusItems(store), cards: mod.summaryCards(store),
  tip: mod.tokenTip(store, 2) };""",
    )
    energy = next(i for i in out["status"] if i["label"] == "energy so far")
    assert (energy["kind"], energy["scope"]) == ("estimated", "process")
    cards = cards_by_key(out["cards"])
    for key in ("decode_j_per_token", "total_energy_j", "peak_power_w", "avg_power_w"):
        assert (cards[key]["kind"], cards[key]["scope"]) == ("estimated", "process"), key
    assert "scope" not in cards["ttft_ms"] or not cards["ttft_ms"]["scope"]
    assert any(line.endswith("(estimated · process)") for line in out["tip"])
    text = render_text(run)
    assert "power source: synthetic (estimated · process, resolution 100 ms)" in text
    assert f"{SUMMARY_LABELS['total_energy_j']}: " in text
    assert "J (estimated · process)" in text
    assert "TTFT: 200 ms (measured)" in text
    assert {r[-1] for r in _phase_table(run)} == {"estimated · process"}


# -- 6. net energy shown as unreliable; the warnings shown --------------------------------------


@needs_node
def test_an_unreliable_net_energy_says_so_with_the_warning() -> None:
    run = full_run(n_tokens=6, n_layers=2)
    run.baseline_w = 40.0  # above the run's ~25 W average: something else drew power then
    Recorder(run).power_info({})  # the summary is computed anew
    s = run.summary()
    assert s["net_energy_reliable"] is False
    assert s["warnings"]
    out = eval_run(run, "return { cards: mod.summaryCards(store), w: store.summary.warnings };")
    net = cards_by_key(out["cards"])["net_energy_j"]
    assert net["unreliable"] is True
    assert net["sub"].startswith("unreliable")
    assert out["w"] == s["warnings"]
    text = render_text(run)
    assert f"{SUMMARY_LABELS['net_energy_j']}: {s['net_energy_j']:.3g} J (unreliable)" in text
    assert "warning: net energy is unreliable" in text
    html_ = render_html(run)
    assert '<p class="warning">⚠ net energy is unreliable' in html_

    run.baseline_w = 5.0
    Recorder(run).power_info({})
    net = cards_by_key(eval_run(run, "return mod.summaryCards(store);"))["net_energy_j"]
    assert not net.get("unreliable")
    assert net["sub"] == "baseline 5.00 W"
    assert "(unreliable)" not in render_text(run)


# -- 7. hover values within the stated precision of run.layers; the snapshot no larger ------------

LINEAR_8BIT_SNAPSHOT_BYTES = 3_765_016
"""The 2,000-token 30-layer x 12-component synthetic run's snapshot with linear 8-bit codes."""


def heavy_tailed(run: Any, seed: int = 5) -> Any:
    """Layer times spread like a real decoder's (norms ~50x below the MLP), still 75 % of each
    token. On a linear 8-bit scale their hover values were off by 1.9 % (median), 41 % (p95)."""
    rng = np.random.default_rng(seed)
    scale = np.array([0.02, 0.3, 0.1, 0.1, 0.3, 0.02, 1.0, 1.0, 1.0, 0.05, 0.05, 0.5])
    toks = run.tokens()
    for i, row in enumerate(run.layers):
        t = scale[None, : row.shape[1]] * rng.lognormal(0, 0.6, row.shape[:2])
        row[:, :, TI] = t * 0.75 * toks[i]["duration_ms"] / t.sum()
        Recorder(run).layers(i, row)
    Recorder(run).power_info({})  # the summary is computed anew
    return run


@needs_node
def test_hover_values_are_within_their_stated_precision_of_run_layers() -> None:
    run = heavy_tailed(full_run(n_tokens=150, n_layers=30, components=COMPONENTS_12))
    out = eval_run(
        run,
        CELLS_JS
        + """
return { time: cells(0), energy: cells(1),
  prec: Array.from({ length: store.nRows }, (_, t) => store.precision(t, 0)),
  tip: mod.cellTip(store, "token", 7, 1, 2, 3, store.value(7, 2, 3, 1)) };""",
    )
    prec = np.asarray(out["prec"])[:, None, None]
    for m, name in ((TI, "time"), (EI, "energy")):
        got = np.asarray(out[name], dtype=float)
        ref = run.layers[..., m].astype(np.float64)
        rel = np.abs(got - ref) / ref
        assert np.median(rel) < 0.01, name
        assert np.percentile(rel, 95) < 0.015, name
        # (+1e-4: float32 token times and energies on the wire)
        assert np.all(rel <= prec + 1e-4), f"{name}: a value outside its stated bound"
    assert prec.max() < 0.02
    assert re.fullmatch(r"within ±[\d.]+ % of run\.layers \(8-bit log scale\)", out["tip"][-1])
    assert not any("display precision" in line for line in out["tip"])


def test_the_snapshot_of_a_2000_token_component_run_does_not_grow() -> None:
    from llm_energy_widget.testing import synthetic_run

    run = synthetic_run(n_tokens=2000, n_layers=30, components=COMPONENTS_12)
    snap = snapshot_of(run)
    size = sum(len(b) for b in snap["buffers"])
    assert size <= LINEAR_8BIT_SNAPSHOT_BYTES
    names = snap["header"]["buffers"]
    assert "layer_idx" not in names, "indices in a row go as `first`"
    assert "te_idx" not in names, "indices in a row go as `first`"
    assert len(snap["buffers"][names.index("layer_q")]) == 2000 * 30 * 12 * 5


# -- 8. energy so far: the run's window, never the readings after it -----------------------------


@needs_node
def test_energy_so_far_stops_at_the_run_even_when_the_trace_runs_on() -> None:
    run = peaky_run()  # three 500 W readings (+150 J) after the last token
    s = run.summary()
    out = eval_run(run, "return { items: mod.statusItems(store), e: store.energySoFar() };")
    assert out["e"] == pytest.approx(s["total_energy_j"], rel=1e-4)
    energy = next(i for i in out["items"] if i["label"] == "energy so far")
    assert energy["value"] == f"{fmt3(s['total_energy_j'])} J"


@needs_node
def test_energy_so_far_of_a_live_replay_that_delivered_its_whole_trace_at_once() -> None:
    # a replay at speed 0: all readings (60 s of them) arrive before the first token
    run = new_synthetic_run(n_layers=2)
    Recorder(run).status("running")
    events = list(synthetic_events(n_tokens=6, n_layers=2))
    power = [a for n, a in events if n == "power"]
    last = power[-1][0]
    extra = [
        ({**last, "t_ms": last["t_ms"] + 100 * k, "energy_j": last["energy_j"] + 2.0 * k}, None)
        for k in range(1, 600)
    ]
    for args in power + extra:
        apply_event(run, "power", args)
    for name, args in events:
        if name != "power":
            apply_event(run, name, args)
            if name == "token" and args[0] == 1003:
                break  # live, four tokens in
    toks = run.tokens()
    meta, items = snapshot_items(run)
    out = eval_store(meta, items, "return store.energySoFar();")
    curve = run.curve()
    expected = curve.energy_between(0.0, num(toks[-1]["end_ms"]))
    assert out == pytest.approx(expected, rel=1e-4)
    assert out < 0.05 * curve.energy_between(0.0, extra[-1][0]["t_ms"])


# -- 9. the tail phase -------------------------------------------------------------------------


@needs_node
def test_the_tail_phase_has_its_colour_and_name_in_the_chart_and_the_static_view() -> None:
    run = full_run(n_tokens=6, n_layers=2, tail_ms=30.0)
    assert [p["name"] for p in run.phases()][-1] == "tail"
    fill = eval_run(run, "return mod.PHASE_FILL;")
    assert "tail" in fill
    assert fill["tail"] not in (fill["decode"], fill["prefill"])
    root = ET.fromstring(render_svg(run))
    bands = [
        r
        for r in root.iter(f"{SVG}rect")
        if (t := r.find(f"{SVG}title")) is not None and t.text == "tail"
    ]
    assert bands
    assert all(r.get("fill") == PHASE_COLORS["tail"] for r in bands)
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert "tail" in legend, "named in the legend even when its band is too narrow for a label"
    assert len(bands) == 2  # the band and its legend key
    assert "tail" in [r[0] for r in _phase_table(run)]


def _phase_table(run: Any) -> Any:
    from llm_energy_widget.view.static import phase_rows

    return phase_rows(run)


# -- 10. the mean heatmap is over the decode tokens ------------------------------------------


@needs_node
def test_the_mean_heatmap_leaves_out_the_prefill_token_and_says_so() -> None:
    run = full_run(n_tokens=9, n_layers=3)
    out = eval_run(
        run,
        """const v = []; for (let l = 0; l < store.L; l++) { const r = [];
  for (let c = 0; c < store.C; c++) r.push(store.mean(l, c, 0)); v.push(r); }
// the incremental mean agrees with the values shown per token, for every metric
const agree = store.metricNames.map((_, m) => { let sum = 0, n = 0;
  for (let t = 1; t < store.nRows; t++) {
    const x = store.value(t, 1, 2, m);
    if (x === x) { sum += x; n++; }
  }
  return [store.mean(1, 2, m), sum / n]; });
return { mean: v, agree, caption: mod.heatCaption(store, "mean", 0, "time_ms") };""",
    )
    for m, (incremental, direct) in enumerate(out["agree"]):
        assert incremental == pytest.approx(direct, rel=1e-9), METRICS[m]
    ref = run.layers[1:, :, :, TI].mean(axis=0)  # tokens 1..8: the decode tokens
    with_prefill = run.layers[:, :, :, TI].mean(axis=0)
    got = np.asarray(out["mean"])
    assert np.allclose(got, ref, rtol=0.02)
    assert not np.allclose(got, with_prefill, rtol=0.2), "the 200 ms prefill would dominate"
    assert out["caption"][0] == "mean over 8 decode tokens (prefill excluded)"
    assert out["caption"][1].startswith("layers cover 75.0 % of token time")
    svg = render_svg(run)
    assert "mean over 8 decode tokens (prefill excluded)" in svg
    root = ET.fromstring(svg)
    first = next(
        t.text for t in root.iter(f"{SVG}title") if (t.text or "").startswith("layers.0 · input_")
    )
    assert first is not None
    assert f"time {ref[0, 0]:.4g} ms" in first


def test_meta_names_the_power_source_fully() -> None:
    run = full_run(n_tokens=3, n_layers=2)
    run.power_info.update(scope="system", resolution_ms=20.0, power_window_ms=1000.0)
    p = run_meta(run, "k")["power"]
    assert p["scope"] == "system"
    assert p["resolution_ms"] == 20.0
    assert p["power_window_ms"] == 1000.0
    assert set(p) >= {"source", "kind", "interval_ms", "native_interval_ms", "description"}


@needs_node
def test_a_snapshot_saved_before_log_codes_still_decodes_and_says_its_precision() -> None:
    """A notebook saved with the older widget: linear codes, no `codes` key, no names in meta."""
    run = full_run(n_tokens=5, n_layers=2)
    meta, items = snapshot_items(run)
    del meta["names"]
    header = items[0][1]
    names = header["buffers"]
    live = [m for m in METRICS if m != "energy_j"]
    rows = run.layers[..., [METRICS.index(m) for m in live]].astype(np.float64)
    lo, hi = np.nanmin(rows, axis=(1, 2)), np.nanmax(rows, axis=(1, 2))
    span = (hi - lo)[:, None, None, :]
    codes = np.rint((rows - lo[:, None, None, :]) / span * 254).astype(np.uint8)
    ranges = np.stack([lo, hi], axis=-1).astype(np.float32)
    del header["layers"]["codes"]
    i_q, i_r = names.index("layer_q"), names.index("layer_range")
    items[0][2][i_q] = base64.b64encode(codes.tobytes()).decode()
    items[0][2][i_r] = base64.b64encode(ranges.tobytes()).decode()
    out = eval_store(
        meta,
        items,
        """return { v: store.value(2, 1, 3, 0),
  tip: mod.cellTip(store, "token", 2, 0, 1, 3, store.value(2, 1, 3, 0)),
  card: mod.summaryCards(store)[0].label };""",
    )
    ref = float(run.layers[2, 1, 3, TI])
    bound = float(hi[2, live.index("time_ms")] - lo[2, live.index("time_ms")]) / 254 * 0.51
    assert abs(out["v"] - ref) <= bound * 1.01 + 1e-3 * ref  # + the hooked-time scaling
    assert out["tip"][-1] == "8-bit linear display precision; exact values in run.layers"
    assert out["card"] == "decode j per token", "no names in an old meta: the key, readable"


@needs_node
def test_what_the_source_chose_at_open_reaches_a_view_attached_before_it_opened() -> None:
    # the widget's meta is taken when the run starts, before the source opens; the source then
    # says it resolves 1 s (a slow counter) for process scope: the badges must follow
    run = full_run(n_tokens=4, n_layers=2)
    stale = run_meta(run, run.run_id)
    assert stale["power"]["resolution_ms"] == 100.0
    Recorder(run).power_info({"resolution_ms": 1000.0, "scope": "process"})
    snap = snapshot_of(run)
    assert snap["header"]["power_info"]["resolution_ms"] == 1000.0
    items = [
        ["snapshot", snap["header"], [base64.b64encode(bytes(b)).decode() for b in snap["buffers"]]]
    ]
    out = eval_store(stale, items, "return mod.sourceNote(store);")
    assert out == "resolution 1.00 s · polled every 100 ms"
