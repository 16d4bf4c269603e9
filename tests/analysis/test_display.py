"""How figures reach a notebook: one output per figure, plotly.js at most once per notebook.

The outputs are captured from IPython's display machinery (no kernel); the execute request's
header and metadata, which JupyterLab fills with the cell id and the cells deleted since, are
given by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from llm_energy_widget.analysis import compare
from llm_energy_widget.analysis import html as lew_html
from llm_energy_widget.analysis.html import (
    PLOTLY_MIME,
    PLOTLYJS_MARKER,
    PlotlyJsCopy,
    figure_bundle,
    figure_html,
)
from llm_energy_widget.testing import synthetic_run


@pytest.fixture(autouse=True)
def fresh_copy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a fresh kernel would: no copy anywhere, plotly's renderer pending."""
    import plotly.io as pio

    monkeypatch.setattr(lew_html, "_COPY", PlotlyJsCopy())
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    default, pending = pio.renderers.default, list(getattr(pio.renderers, "_to_activate", []))
    pio.renderers.default = "plotly_mimetype+notebook"  # what a Jupyter kernel starts with
    yield
    pio.renderers.default = default
    pio.renderers._to_activate = pending


def _parent(cell: str | None, msg: str, deleted: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"deletedCells": list(deleted)}
    if cell is not None:
        meta["cellId"] = cell
    return {"header": {"msg_id": msg}, "metadata": meta}


def _shown(monkeypatch: pytest.MonkeyPatch, obj: Any, parent: dict[str, Any]) -> list[dict]:
    """The outputs `display(obj)` writes while `parent` is the request being executed."""
    InteractiveShell.instance()
    monkeypatch.setattr(lew_html, "parent_request", lambda: parent)
    with capture_output() as cap:
        obj._ipython_display_()
    return [o.data for o in cap.outputs]


def _has_plotlyjs(data: dict[str, Any]) -> bool:
    return PLOTLYJS_MARKER in str(data.get("text/html", ""))


def test_a_figure_output_carries_three_versions_and_no_plotlyjs() -> None:
    fig = synthetic_run(n_tokens=6, n_layers=2).figures.power_timeline()
    b = figure_bundle(fig)
    assert set(b) == {PLOTLY_MIME, "text/html", "text/plain"}
    spec = b[PLOTLY_MIME]
    assert spec["layout"]["height"] == 460
    assert spec["data"]
    assert "responsive" not in spec["config"]  # collapses Lab's figures on a theme change
    assert PLOTLYJS_MARKER not in b["text/html"]
    assert 'style="width:100%;height:460px"' in b["text/html"]
    assert "window.Plotly.newPlot(gd" in b["text/html"]
    assert b["text/plain"].startswith("<Figure: Power over time W, modeled")


def test_figure_html_cannot_be_broken_out_of() -> None:
    """Texts (token texts, layer and component names) end up in the figure's JSON inside a
    <script>: they must not close it, and they decode back to what they were."""
    import plotly.graph_objects as go

    evil = "</script><script>alert(1)</script><!--"
    fig = go.Figure(go.Bar(x=[evil], y=[1]), layout={"height": 300})
    page = figure_html(fig)
    assert page.count("</script>") == 1
    assert page.count("<script>") == 1
    assert "<!--" not in page
    payload = page.split("var fig = ", 1)[1].split(";\n", 1)[0]
    assert json.loads(payload)["data"][0]["x"] == [evil]
    tokens = synthetic_run(n_tokens=4, n_layers=1, texts=[evil]).figures.token_waterfall()
    assert figure_html(tokens).count("</script>") == 1


def test_run_figures_one_output_each_and_plotlyjs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    run = synthetic_run(n_tokens=8, n_layers=3)
    first = _shown(monkeypatch, run.figures, _parent("cell-a", "m1"))
    assert len(first) == 1 + 5
    assert _has_plotlyjs(first[0])
    assert PLOTLY_MIME not in first[0]
    assert all(PLOTLY_MIME in o and not _has_plotlyjs(o) for o in first[1:])
    heights = [o[PLOTLY_MIME]["layout"]["height"] for o in first[1:]]
    assert min(heights) >= 300

    again_same_request = _shown(monkeypatch, run.figures, _parent("cell-a", "m1"))
    other_cell = _shown(monkeypatch, compare([run, synthetic_run(6, 3, seed=3)]),
                        _parent("cell-b", "m2"))  # fmt: skip
    assert not any(_has_plotlyjs(o) for o in again_same_request + other_cell)
    # the cell holding the copy runs again: its outputs were cleared, so it carries a new copy
    rerun = _shown(monkeypatch, run.figures, _parent("cell-a", "m3"))
    assert _has_plotlyjs(rerun[0])
    assert len(rerun) == 6
    # ... and once that cell is deleted, the next figures carry it
    after_delete = _shown(monkeypatch, run.figures, _parent("cell-c", "m4", deleted=("cell-a",)))
    assert _has_plotlyjs(after_delete[0])
    assert not _has_plotlyjs(_shown(monkeypatch, run.figures, _parent("cell-d", "m5"))[0])


def test_no_second_copy_after_plotlys_own_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """plotly's `notebook` renderer inlines plotly.js at a plain `fig.show()`: ours then does not,
    and after ours, plotly's does not either."""
    import plotly.io as pio

    run = synthetic_run(n_tokens=6, n_layers=2)
    InteractiveShell.instance()
    with capture_output() as cap:
        pio.show(run.figures.sankey())  # plotly's path: activates its notebook renderer
    assert sum(_has_plotlyjs(o.data) for o in cap.outputs) == 1
    shown = _shown(monkeypatch, run.figures, _parent("cell-b", "m1"))
    assert not any(_has_plotlyjs(o) for o in shown)

    monkeypatch.setattr(lew_html, "_COPY", PlotlyJsCopy())
    pio.renderers.default = "plotly_mimetype+notebook"  # plotly pending again, as at start
    assert _has_plotlyjs(_shown(monkeypatch, run.figures, _parent("cell-c", "m2"))[0])
    with capture_output() as cap:
        pio.show(run.figures.sankey())
    assert not any(_has_plotlyjs(o.data) for o in cap.outputs)


def test_a_restarted_kernel_finds_the_copy_in_the_saved_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = synthetic_run(n_tokens=6, n_layers=2)
    first = _shown(monkeypatch, run.figures, _parent("cell-a", "m1"))
    nb = {
        "cells": [
            {"id": "cell-a", "cell_type": "code", "outputs": [
                {"output_type": "display_data", "data": o, "metadata": {}} for o in first]},
            {"id": "cell-b", "cell_type": "code", "outputs": []},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path = tmp_path / "saved.ipynb"
    path.write_text(json.dumps(nb))
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    monkeypatch.setattr(lew_html, "_COPY", PlotlyJsCopy())  # the kernel restarted
    pio_reset()
    assert not _has_plotlyjs(_shown(monkeypatch, run.figures, _parent("cell-b", "m7"))[0])
    assert lew_html.plotlyjs_copy().cell == "cell-a"
    # re-running cell-a itself (its saved copy is about to be cleared) writes a fresh one
    assert _has_plotlyjs(_shown(monkeypatch, run.figures, _parent("cell-a", "m8"))[0])


def test_frontends_without_cell_ids_get_one_copy_per_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = synthetic_run(n_tokens=6, n_layers=2)
    assert _has_plotlyjs(_shown(monkeypatch, run.figures, _parent(None, "m1"))[0])
    assert not _has_plotlyjs(_shown(monkeypatch, run.figures, _parent(None, "m2"))[0])


def test_comparison_leads_with_its_headline_then_one_output_per_figure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = synthetic_run(8, 2, seed=1), synthetic_run(12, 2, seed=2)
    a.settings["max_new_tokens"], b.settings["max_new_tokens"] = 8, 12
    shown = _shown(monkeypatch, compare([a, b]), _parent("c", "m1"))
    head, js, *figs = shown
    assert "<table" in head["text/html"]
    assert "decode J/token" in head["text/html"]
    assert PLOTLY_MIME not in head
    assert not _has_plotlyjs(head)
    assert _has_plotlyjs(js)
    assert len(figs) == 4
    assert all(PLOTLY_MIME in f for f in figs)
    assert "max_new_tokens=8" in json.dumps(figs[0][PLOTLY_MIME])


def pio_reset() -> None:
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"
