"""Sampled instrumentation in every view: which tokens were instrumented, the profiling overhead,
the tokens each figure rests on and an estimate's ranges, on a hand-built run (tests/support/
sampled.py: tokens 0, 7, 15 and 22 of 24 instrumented, the bare ones 20 % faster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.sampled import INSTRUMENTED, sampled_events, sampled_run
from support.store_node import eval_run, needs_node
from support.widget import capture, decode

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.testing import apply_event, new_synthetic_run
from llm_energy_widget.view.saved import saved_html
from llm_energy_widget.view.static import (
    instrumented_line,
    mean_rows,
    overhead_line,
    render_html,
    render_svg,
    render_text,
    summary_table_rows,
)
from llm_energy_widget.view.widget import EnergyWidget
from llm_energy_widget.view.wire import saved_snapshot, snapshot_of

BARE = [i for i in range(24) if i not in INSTRUMENTED]
OVERHEAD = "profiling overhead +"
ESTIMATE = {"kind": "estimated", "uncertainty": 0.5}


@pytest.fixture(scope="module")
def run() -> Any:
    return sampled_run()


def test_the_snapshot_carries_the_flags_and_no_row_for_a_bare_token(run: Any) -> None:
    snap = snapshot_of(run)
    h = snap["header"]
    assert h["tokens"]["instrumented"] == [i in INSTRUMENTED for i in range(24)]
    rows = decode(h, snap["buffers"])
    assert sorted(int(i) for i in rows["layer_idx"]) == list(INSTRUMENTED)
    # the saved view's exact means are over the instrumented decode tokens only
    saved = saved_snapshot(run)["header"]["layer_means"]
    assert saved["tokens"] == 3
    assert saved["rows"]["of"] == 4


def test_a_live_widget_streams_the_flags_and_never_a_bare_row() -> None:
    run = new_synthetic_run(n_layers=3)
    Recorder(run).status("running")
    w = EnergyWidget()
    cap = capture(w)
    w.attach(run)
    for name, args in sampled_events():
        apply_event(run, name, args)
    Recorder(run).finish("completed", "synthetic sampled run")
    assert w._flusher is not None
    w._flusher.join(timeout=5)
    flags: dict[int, Any] = {}
    sent_rows: set[int] = set()
    for _t, header, buffers in cap.messages:
        toks = header.get("tokens")
        if toks:
            for j, f in enumerate(toks["instrumented"]):
                flags[toks["first"] + j] = f
        if header.get("layers"):
            sent_rows |= {int(i) for i in decode(header, buffers)["layer_idx"]}
    assert flags == {i: i in INSTRUMENTED for i in range(24)}
    assert sent_rows == set(INSTRUMENTED)


def test_static_text_says_which_tokens_the_overhead_and_the_basis(run: Any) -> None:
    text = render_text(run)
    assert "instrumented tokens: 0, 7, 15, 22 (4 of 24)" in text
    po = run.summary()["profiling_overhead"]
    want = f"{OVERHEAD}{po['fraction'] * 100:.1f} % on 3 instrumented decode tokens, 20 bare"
    assert want in text
    assert (
        "decode J/token, decode tokens/J, decode tokens/s: the 20 bare decode tokens of 23 "
        "(not the instrumented)" in text
    )
    _rows, idx, what = mean_rows(run)
    assert idx == [7, 15, 22]
    assert what.startswith("mean over 3 instrumented tokens of 23 decode tokens")
    svg = render_svg(run)
    assert "mean over 3 instrumented tokens of 23 decode tokens" in svg
    # the heatmap's mean is over the rows: never a bare token's NaN as a zero
    assert not np.isnan(run.layers[list(INSTRUMENTED)]).all()
    html = render_html(run)
    assert "<th>rests on</th>" in html
    assert want in html


def test_html_views_and_the_saved_output_carry_the_same(run: Any, tmp_path: Path) -> None:
    rows = {r[0]: r for r in summary_table_rows(run)}
    assert rows["decode J/token"][3] == "the 20 bare decode tokens of 23 (not the instrumented)"
    saved = saved_html(run, "", interactive=False)
    report = run.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    for page in (saved, report):
        assert "instrumented tokens: 0, 7, 15, 22 (4 of 24)" in page
        assert OVERHEAD in page
        assert "bare: ran at plain speed, no layer row" in page
        assert "instrumented: layer hooks ran" in page


def test_sample_all_and_token_level_say_nothing_new() -> None:
    every = sampled_run(n_tokens=6, instrumented=range(6))
    text = render_text(every)
    assert "instrumented tokens: all 6" in text
    assert "profiling overhead: not measured (no bare decode tokens to compare with" in text
    _rows, _idx, what = mean_rows(every)
    assert what == "mean over 5 decode tokens (prefill excluded)"
    every.level = "token"
    assert instrumented_line(every) is None
    assert overhead_line(every) is None


def test_estimate_ranges_next_to_the_estimated_figures() -> None:
    est = sampled_run(power=ESTIMATE)
    s = est.summary()
    lo, hi = s["energy_ranges_j"]["total_energy_j"]
    text = render_text(est)
    assert f"total energy: {s['total_energy_j']:.3g} J ({lo:.3g} J–{hi:.3g} J, estimate ±50 %)" in (
        text
    )
    assert "estimate ±" not in render_text(sampled_run())  # a measured-like source: no ranges


@needs_node
def test_the_views_functions_on_the_real_snapshot(run: Any) -> None:
    out = eval_run(
        run,
        """
        const heat = new Set(INST.map((t) => mod.layerToken(store, t)));
        return {
          steps: store.layerTokens(),
          picks: Array.from({ length: 24 }, (_, t) => mod.layerToken(store, t)),
          mean: mod.meanLabel(store),
          label: mod.tokenLabel(store, 15),
          bare: mod.heatCaption(store, "token", 3, "time_ms"),
          nan: store.value(3, 0, 0, 0),
          status: mod.statusItems(store).map((i) => [i.label, i.value]),
          cards: mod.summaryCards(store).map((c) => [c.key, c.sub ?? null, c.range ?? null]),
          tip: mod.tokenTip(store, 3),
          same: heat.size,
        };
        """.replace("INST", str(list(INSTRUMENTED))),
    )
    assert out["steps"] == list(INSTRUMENTED)
    assert set(out["picks"]) == set(INSTRUMENTED)
    assert out["mean"] == "mean over 3 instrumented tokens of 23 decode tokens (prefill excluded)"
    assert out["label"] == 'token 15: " tok15" (instrumented 3 of 4; 24 tokens)'
    assert out["nan"] is None  # NaN: no value, never 0
    po = run.summary()["profiling_overhead"]
    status = dict(out["status"])
    assert status["profiling overhead"] == (
        f"+{po['fraction'] * 100:.1f} % on 3 instrumented tokens, 20 bare"
    )
    cards = {k: (sub, rng) for k, sub, rng in out["cards"]}
    assert cards["decode_j_per_token"][0] == "from 20 bare decode tokens of 23"
    assert cards["decode_j_per_token"][1] is None  # not an estimate: no range
    assert "bare: ran at plain speed (no layer row)" in out["tip"]
    assert out["same"] == 4


@needs_node
def test_the_cards_show_an_estimates_range() -> None:
    est = sampled_run(power=ESTIMATE)
    out = eval_run(est, "return mod.summaryCards(store).map((c) => [c.key, c.range ?? null]);")
    ranges = dict(out)
    assert ranges["total_energy_j"].endswith(", estimate ±50 %")
    assert ranges["ttft_ms"] is None
