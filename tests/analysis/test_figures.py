"""RunFigures on synthetic runs: every figure has data, units and kinds in its titles."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.run import Run
from llm_energy_widget.testing import synthetic_run


@pytest.fixture(scope="module")
def run() -> Run:
    r = synthetic_run(n_tokens=8, n_layers=3)
    r.baseline_w = 12.0
    return r


def _title(fig: go.Figure) -> str:
    return str(fig.layout.title.text)


def test_power_timeline(run: Run) -> None:
    fig = run.figures.power_timeline()
    assert "W" in _title(fig) and "modeled" in _title(fig) and "source synthetic" in _title(fig)
    assert "resolution 100 ms" in _title(fig)
    names = [t.name for t in fig.data]
    assert names == ["CPU", "DRAM", "total"]  # rails without data are left out
    assert len(fig.layout.shapes) == 3  # prefill band, decode band, baseline line
    assert "W, modeled" in fig.layout.yaxis.title.text


def test_token_waterfall_matches_energy_curve(run: Run) -> None:
    fig = run.figures.token_waterfall()
    bars, line = fig.data
    expected = [t["energy_j"] for t in run.tokens()]
    assert list(bars.y) == pytest.approx(expected)
    assert list(line.y) == pytest.approx(np.cumsum(expected))
    assert "J, modeled" in _title(fig)


def test_layer_heatmap(run: Run) -> None:
    fig = run.figures.layer_heatmap()
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3, 9)
    # cells hold the layers' share of each token; the rest is outside the layers (lm_head, loop)
    inside = sum(t["energy_j"] - t["outside_layers_j"] for t in run.tokens())
    assert z.sum() == pytest.approx(inside, rel=1e-4)
    assert inside == pytest.approx(0.75 * sum(t["energy_j"] for t in run.tokens()), rel=1e-4)
    assert "modeled" in _title(fig) and "J" in _title(fig)
    t = run.figures.layer_heatmap("time_ms", token=2)
    assert "measured" in _title(t) and "token 2" in _title(t)
    assert "mean over tokens" in _title(run.figures.layer_heatmap("act_max"))
    with pytest.raises(InvalidInputError, match="metric must be one of"):
        run.figures.layer_heatmap("watts")
    with pytest.raises(InvalidInputError, match="token must be in"):
        run.figures.layer_heatmap(token=99)


def test_treemap_and_sankey_conserve_energy(run: Run) -> None:
    tm = run.figures.treemap().data[0]
    roots = [v for v, p in zip(tm.values, tm.parents, strict=True) if p == ""]
    assert sum(roots) == pytest.approx(sum(t["energy_j"] for t in run.tokens()), rel=1e-4)
    assert "modeled" in _title(run.figures.treemap())
    sk = run.figures.sankey().data[0]
    labels = list(sk.node.label)
    assert labels[0].startswith("total") and {"prefill", "decode", "layers.0"} <= set(labels)
    out_of_root = sum(v for s, v in zip(sk.link.source, sk.link.value, strict=True) if s == 0)
    assert out_of_root == pytest.approx(sum(p["energy_j"] for p in run.phases()))


def test_all_and_html_render(run: Run) -> None:
    figs = run.figures.all()
    assert len(figs) == 5
    for f in figs:
        json.loads(f.to_json())  # serializable for the plotly mimetype (VS Code, JupyterLab)
    html = run.figures._repr_html_()
    assert html.count("Plotly.newPlot") == 5
    assert html.count("plotly.js v") <= 2  # plotly.js inline once (offline)


def test_token_level_run_has_no_layer_figures() -> None:
    r = synthetic_run(n_tokens=4, n_layers=0, components=())
    assert len(r.figures.all()) == 3
    with pytest.raises(InvalidInputError, match="no layer data"):
        r.figures.layer_heatmap()
