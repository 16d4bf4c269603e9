"""What the kernel leaves in each output once a run ends (issue 10): never the widget view, each
output its own run, the final update published before `run.wait()` returns, and the saved
notebook within its size budget. Read through `support.notebook.FakeNotebook`, which applies
display messages the way JupyterLab and nbclient do."""

from __future__ import annotations

import base64
import json
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.notebook import WIDGET_VIEW, FakeNotebook, png_size, shown_run_id
from support.runs import num
from support.store_node import eval_store, needs_node
from support.widget import events_with_full_power

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.core.schema import SUMMARY_LABELS
from llm_energy_widget.run import Run
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_run
from llm_energy_widget.view import widget as widget_mod
from llm_energy_widget.view import wire as wire_mod
from llm_energy_widget.view.png import HEIGHT_PX, WIDTH_PX
from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.widget import EnergyWidget, display_run
from llm_energy_widget.view.wire import saved_snapshot

COMPONENTS_12 = tuple(f"c{i}" for i in range(12))  # SmolLM2 at component level: 30 x 12

# Budgets of issue 10 (printed by benchmarks/notebook_sizes.py)
TWO_48_TOKEN_RUNS_NOTEBOOK_BYTES = 400_000
A_2000_TOKEN_RUN_NOTEBOOK_BYTES = 1_500_000
SNAPSHOT_2000_TOKENS_BYTES = 1_000_000
REPORT_48_TOKENS_BYTES = 250_000
"""A synthetic run's activation statistics are uniform noise, the worst case for compression: the
quickstart's real 48-token run makes a 220 KB report (285 KB before its data was deflated)."""


@pytest.fixture
def nb() -> Any:
    notebook = FakeNotebook()
    yield notebook
    notebook.close()


def live_run(n_layers: int = 4, **kw: Any) -> Run:
    run = new_synthetic_run(n_layers=n_layers, **kw)
    Recorder(run).status("running")
    return run


def play_and_finish(run: Run, n_tokens: int = 12, n_layers: int = 4, **kw: Any) -> Run:
    for name, args in events_with_full_power(n_tokens, n_layers, **kw):
        apply_event(run, name, args)
    Recorder(run).finish("completed", "synthetic run complete")
    return run


def final_of(output: dict) -> dict:
    """The parts of a finished run's output, checked to be what every viewer can show."""
    data = output["data"]
    assert WIDGET_VIEW not in data, "a finished run's output must not hold the widget view"
    assert set(data) == {"image/png", "text/plain", "text/html"}, sorted(data)
    assert png_size(data["image/png"]) == (WIDTH_PX, HEIGHT_PX)
    return data


def test_quickstart_pattern_each_output_ends_showing_its_own_run(nb: Any) -> None:
    """Display the profiler's widget, generate (and show the run) in the next cell; then generate
    again in a later cell: cells 0 and 1 keep run 1, the later cell gets run 2, once."""
    w = EnergyWidget()
    with nb.cell("w"):
        w._ipython_display_()
    run1 = live_run()
    with nb.cell("run = profiler.generate(...); run"):
        w.attach(run1)  # what profiler.generate does
        display_run(run1)
    assert [len(nb.outputs(i)) for i in range(2)] == [1, 1]
    assert nb.outputs(0)[0]["data"][WIDGET_VIEW]["model_id"] == w.model_id, "live meanwhile"
    play_and_finish(run1)
    assert nb.widget_views() == []
    for i in (0, 1):
        assert shown_run_id(nb.outputs(i)[0]) == run1.run_id

    run2 = live_run()
    with nb.cell("run2 = profiler.generate(...); run2"):
        w.attach(run2)
        display_run(run2)  # the widget already shows run 2 in this cell: not doubled
    assert len(nb.outputs(2)) == 1
    assert nb.outputs(2)[0]["data"][WIDGET_VIEW]["model_id"] == w.model_id
    play_and_finish(run2)
    assert nb.widget_views() == []
    assert [shown_run_id(nb.outputs(i)[0]) for i in range(3)] == [
        run1.run_id,
        run1.run_id,
        run2.run_id,
    ]
    for i in range(3):
        text = final_of(nb.outputs(i)[0])["text/plain"]
        assert f"{SUMMARY_LABELS['decode_j_per_token']}: " in text
        assert "(modeled)" in text


def test_a_loop_in_one_cell_keeps_one_output_showing_its_last_run(nb: Any) -> None:
    w = EnergyWidget()
    with nb.cell("w"):
        w._ipython_display_()
    runs = []
    with nb.cell("for p in prompts: profiler.generate(p).wait()"):
        for _ in range(3):
            run = live_run()
            w.attach(run)
            play_and_finish(run)
            runs.append(run)
    assert shown_run_id(nb.outputs(0)[0]) == runs[0].run_id, "the first run took the waiting one"
    assert len(nb.outputs(1)) == 1, "later runs started by the loop re-use its output"
    assert shown_run_id(nb.outputs(1)[0]) == runs[2].run_id
    assert nb.widget_views() == []


def test_a_run_still_going_keeps_a_live_view_of_its_own_when_the_widget_moves_on(nb: Any) -> None:
    """Queued runs: the widget follows run 2 while run 1 still generates. Run 1's output shows run
    1 (a widget of its own) until it ends, then holds run 1's final bundle."""
    w = EnergyWidget()
    run1, run2 = live_run(), live_run()
    with nb.cell("w"):
        w._ipython_display_()
    with nb.cell("run1 = profiler.generate(...)"):
        w.attach(run1)
    with nb.cell("run2 = profiler.generate(...)"):
        w.attach(run2)
    views = dict(nb.widget_views())
    assert nb.outputs(1) == [], "run 2 got an output of its own"
    assert views[2] == w.model_id, "run 2 got an output of its own"
    other = views[0]
    assert other != w.model_id
    assert widget_mod._DISPLAY_WIDGETS[run1].model_id == other
    play_and_finish(run1)
    assert shown_run_id(nb.outputs(0)[0]) == run1.run_id
    assert nb.widget_views() == [(2, w.model_id)]
    play_and_finish(run2)
    assert shown_run_id(nb.outputs(2)[0]) == run2.run_id
    assert nb.widget_views() == []


def test_a_finished_run_is_shown_without_opening_a_widget_model(nb: Any) -> None:
    run = synthetic_run(n_tokens=8)
    before = len(widget_mod._DISPLAY_WIDGETS)
    with nb.cell("run"):
        display_run(run)
    final_of(nb.outputs(0)[0])
    assert len(widget_mod._DISPLAY_WIDGETS) == before
    assert run not in widget_mod._WIDGETS


def test_the_widget_made_to_display_a_live_run_closes_once_its_outputs_are_final(nb: Any) -> None:
    run = live_run()
    with nb.cell("run"):
        display_run(run)
    shown = widget_mod._DISPLAY_WIDGETS[run]
    assert shown.comm is not None
    play_and_finish(run)
    deadline = time.monotonic() + 10
    while shown.comm is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shown.comm is None, "closed: with widget state saved, no model outlives the run"


def test_the_final_update_is_published_before_wait_returns(
    nb: Any, tiny_model: Any, constant_source: Any
) -> None:
    """A real profiled run on its generation thread: as soon as `run.wait()` returns, every
    output already holds the final bundle (what a headless execution saves)."""
    from llm_energy_widget.profiler import EnergyProfiler

    profiler = EnergyProfiler(
        tiny_model, None, power=constant_source, level="component", baseline_s=0.0, store=False
    )
    w = profiler.widget()
    with nb.cell("w"):
        w._ipython_display_()
    with nb.cell("run = profiler.generate(...); run"):
        run = profiler.generate([1, 2, 3, 4], max_new_tokens=6, min_new_tokens=6, do_sample=False)
        display_run(run)
    with nb.cell("run.wait()"):
        assert run.wait(60)
        views = nb.widget_views()
        kinds = [sorted(nb.outputs(i)[0]["data"]) for i in (0, 1)]
    assert views == [], views
    assert kinds == [["image/png", "text/html", "text/plain"]] * 2
    assert "(measured)" in nb.outputs(0)[0]["data"]["text/plain"]


def test_a_live_view_gets_a_row_the_saved_snapshot_left_out() -> None:
    run = synthetic_run(n_tokens=20, n_layers=3)
    w = EnergyWidget(run)
    sent: list[tuple[dict, list]] = []
    w.send = lambda content, buffers=None: sent.append((content, buffers or []))
    w._on_frontend_msg(w, {"type": "rows", "index": [5, 99]}, [])
    (header, buffers) = sent[-1]
    assert header["type"] == "snapshot"
    assert header["run_key"] == w.meta["run_key"]
    assert header["layers"]["first"] == 5
    assert header["layers"]["shape"][2] == 5
    codes = np.frombuffer(buffers[header["buffers"].index("layer_q")], np.uint8)
    assert codes.size == 3 * len(run.component_names) * 5


# -- budgets -----------------------------------------------------------------------------------


def _quickstart_notebook(nb: FakeNotebook, n_tokens: int, runs: int) -> list[Run]:
    """The quickstart's outputs: the profiler's widget, the first run shown in its cell, further
    runs in cells of their own; 30 x 12 component-level synthetic runs."""
    w = EnergyWidget()
    with nb.cell("w = profiler.widget(); w"):
        w._ipython_display_()
    out = []
    for k in range(runs):
        run = live_run(n_layers=30, components=COMPONENTS_12)
        with nb.cell(f"run{k} = profiler.generate(...); run{k}"):
            w.attach(run)
            display_run(run)
        play_and_finish(run, n_tokens=n_tokens, n_layers=30, components=COMPONENTS_12)
        out.append(run)
    assert nb.widget_views() == []
    return out


def test_a_saved_notebook_with_two_48_token_component_runs_is_within_400_kb(nb: Any) -> None:
    _quickstart_notebook(nb, n_tokens=48, runs=2)
    size = nb.saved_bytes()
    assert size <= TWO_48_TOKEN_RUNS_NOTEBOOK_BYTES, f"{size:,} bytes"


def test_a_saved_notebook_with_a_2000_token_run_is_within_1_5_mb(nb: Any) -> None:
    _quickstart_notebook(nb, n_tokens=2000, runs=1)
    size = nb.saved_bytes()
    assert size <= A_2000_TOKEN_RUN_NOTEBOOK_BYTES, f"{size:,} bytes"


def test_the_snapshot_of_a_2000_token_30x12_run_is_within_1_mb() -> None:
    run = synthetic_run(n_tokens=2000, n_layers=30, components=COMPONENTS_12)
    snap = saved_snapshot(run)
    size = len(json.dumps(snap["header"]).encode()) + sum(len(b) for b in snap["buffers"])
    assert size <= SNAPSHOT_2000_TOKENS_BYTES, f"{size:,} bytes"
    means = snap["header"]["layer_means"]
    assert means["rows"] == {"all": 0, "time": 512, "of": 2000}
    assert means["tokens"] == 1999, "times' mean exact too"
    assert "time_ms" in means["metrics"], "times' mean exact too"


def test_the_report_stays_self_contained_and_small(tmp_path: Path) -> None:
    run = synthetic_run(n_tokens=48, n_layers=30, components=COMPONENTS_12)
    path = to_html(run, tmp_path / "r.html")
    text = path.read_text()
    assert path.stat().st_size <= REPORT_48_TOKENS_BYTES, path.stat().st_size
    assert "http://" not in text.replace("http://www.w3.org", "")
    assert "https://" not in text


def test_the_embedded_data_is_the_saved_snapshot_and_the_bundle_is_the_built_one() -> None:
    """The HTML's interactive view is the widget's own bundle, from the run's saved snapshot."""
    import re

    from llm_energy_widget.view.saved import saved_bundle

    run = synthetic_run(n_tokens=30, n_layers=3)
    html_ = saved_bundle(run)[0]["text/html"]
    blob = re.search(r'class="lew-saved-data">([^<]+)<', html_)
    assert blob is not None
    raw = zlib.decompress(base64.b64decode(blob.group(1)))
    n = int.from_bytes(raw[:4], "little")
    head = json.loads(raw[4 : 4 + n])
    assert head["meta"]["run_id"] == run.run_id
    assert head["header"]["layer_means"]["rows"] == {"all": 0, "time": 30, "of": 30}
    assert sum(head["sizes"]) == len(raw) - 4 - n
    bundle = re.search(r'inflate\("([A-Za-z0-9+/=]+)"\)', html_)
    assert bundle is not None
    code = json.loads(zlib.decompress(base64.b64decode(bundle.group(1))))
    assert code["js"] == widget_mod.BUNDLE_JS.read_text()


# -- what a view of a saved snapshot shows (the bundle's store under node) ----------------------


def _saved_items(w: EnergyWidget) -> tuple[dict, list]:
    snap = w.snapshot
    b64 = [base64.b64encode(bytes(b)).decode("ascii") for b in snap["buffers"]]
    return w.meta, [["snapshot", snap["header"], b64]]


SAVED_VIEW_JS = """
const am = store.metricNames.indexOf("act_mean"), ti = store.metricNames.indexOf("time_ms");
return {
  meanAct: store.mean(1, 2, am), meanTime: store.mean(1, 2, ti),
  exactAct: store.meanIsExact(am), exactTime: store.meanIsExact(ti),
  time: store.value(5, 1, 2, ti), act: store.value(5, 1, 2, am), timesOnly: store.timesOnly(5),
  caption: mod.heatCaption(store, "token", 5, "act_mean"),
  captionTime: mod.heatCaption(store, "token", 5, "time_ms"),
  tipMean: mod.cellTip(store, "mean", 0, am, 1, 2, store.mean(1, 2, am)),
  tipToken: mod.cellTip(store, "token", 5, am, 1, 2, store.value(5, 1, 2, am)),
  meanTokens: store.meanTokens, cov: store.meanCoverage(), left: store.rowLeftOut(7),
};"""


@needs_node
def test_a_saved_snapshots_view_shows_exact_means_each_tokens_times_and_what_it_left_out() -> None:
    run = synthetic_run(n_tokens=20, n_layers=3)
    w = EnergyWidget(run)
    meta, items = _saved_items(w)
    out = eval_store(meta, items, SAVED_VIEW_JS)
    am, ti = run.metric_names.index("act_mean"), run.metric_names.index("time_ms")
    decode = run.layers[1:]
    assert out["exactAct"], "times come from every token's row"
    assert not out["exactTime"], "times come from every token's row"
    assert out["meanAct"] == pytest.approx(float(decode[:, 1, 2, am].mean()), rel=1e-6)
    assert out["meanTime"] == pytest.approx(float(decode[:, 1, 2, ti].mean()), rel=0.02)
    assert out["time"] == pytest.approx(float(run.layers[5, 1, 2, ti]), rel=0.02)
    assert out["act"] is None, "no single token's activation statistics"
    assert out["timesOnly"], "no single token's activation statistics"
    assert "activation statistics are not in this saved view" in out["caption"][-1]
    assert "not in this saved view" not in " ".join(out["captionTime"])
    assert out["tipMean"][-1] == "the exact mean of run.layers (float32), saved with the run"
    assert "activation statistics are not in this saved view" in out["tipToken"][-1]
    assert out["meanTokens"] == 19
    assert out["left"] is False
    tokens = run.tokens()[1:]
    hooked = sum(num(t["layers_ms"]) for t in tokens)
    share = sum(max(num(t["duration_ms"]), num(t["layers_ms"])) for t in tokens)
    assert out["cov"]["coverage"] == pytest.approx(hooked / share, rel=1e-6)


@needs_node
def test_a_row_the_kernel_sends_on_demand_fills_the_saved_view() -> None:
    run = synthetic_run(n_tokens=20, n_layers=3)
    w = EnergyWidget(run)
    meta, items = _saved_items(w)
    sent: list[tuple[dict, list]] = []
    w.send = lambda content, buffers=None: sent.append((content, buffers or []))
    w._on_frontend_msg(w, {"type": "rows", "index": [5]}, [])
    header, buffers = sent[-1]
    items.append(["msg", header, [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]])
    out = eval_store(meta, items, SAVED_VIEW_JS)
    am = run.metric_names.index("act_mean")
    assert not out["timesOnly"]
    assert out["act"] == pytest.approx(float(run.layers[5, 1, 2, am]), rel=0.01)
    assert "not in this saved view" not in " ".join(out["caption"])


@needs_node
def test_a_token_whose_times_were_left_out_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_mod, "SAVED_TIME_ROWS", 8)
    run = synthetic_run(n_tokens=40, n_layers=3)
    snap = saved_snapshot(run)
    assert snap["header"]["layer_means"]["rows"] == {"all": 0, "time": 8, "of": 40}
    assert "time_ms" in snap["header"]["layer_means"]["metrics"], "then the times' mean is exact"
    meta = widget_mod.run_meta(run, snap["header"]["run_key"])
    b64 = [base64.b64encode(bytes(b)).decode("ascii") for b in snap["buffers"]]
    out = eval_store(meta, [["snapshot", snap["header"], b64]], SAVED_VIEW_JS)
    ti = run.metric_names.index("time_ms")
    assert out["exactTime"]
    assert out["meanTime"] == pytest.approx(float(run.layers[1:, 1, 2, ti].mean()), rel=1e-6)
    assert out["left"] is True  # token 7 is not among the 8 spread over the run
    cap = eval_store(
        meta,
        [["snapshot", snap["header"], b64]],
        ('return mod.heatCaption(store, "token", 7, "time_ms");'),
    )
    assert cap[1].startswith("its layer row is not in this saved view (times kept for 8 of 40")
