"""RunFigures on synthetic runs: every figure has data, units and kinds in its titles."""

from __future__ import annotations

import json

import lew_hand_runs as hr
import numpy as np
import plotly.graph_objects as go
import pytest
from lew_hand_runs import hand_run

from llm_energy_widget.analysis.names import layer_label
from llm_energy_widget.core.attribution import OUTSIDE_LAYERS
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.run import Run
from llm_energy_widget.testing import LAYER_COVERAGE, synthetic_run


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
    # activation statistics are averaged over the decode tokens only (8 tokens: 7 decode)
    act = run.figures.layer_heatmap("act_max")
    assert "max |x|" in _title(act) and "mean over 7 decode tokens (prefill excluded)" in _title(
        act
    )
    assert list(act.data[0].y) == ["L0", "L1", "L2"]
    with pytest.raises(InvalidInputError, match="metric must be one of"):
        run.figures.layer_heatmap("watts")
    with pytest.raises(InvalidInputError, match="token must be in"):
        run.figures.layer_heatmap(token=99)


def test_treemap_and_sankey_conserve_energy(run: Run) -> None:
    # the layers cover 75 % of each synthetic token: cells + outside layers = the tokens' energy
    tokens_j = sum(t["energy_j"] for t in run.tokens())
    tm = run.figures.treemap()
    d = tm.data[0]
    roots = [v for v, p in zip(d.values, d.parents, strict=True) if p == ""]
    assert sum(roots) == pytest.approx(tokens_j, rel=1e-4)
    outside = [v for v, lab in zip(d.values, d.labels, strict=True) if lab == OUTSIDE_LAYERS]
    assert sum(outside) == pytest.approx((1 - LAYER_COVERAGE) * tokens_j, rel=1e-4)
    assert "modeled" in _title(tm) and "layer coverage (hooked / token time) 75.0 %" in _title(tm)
    sk = run.figures.sankey()
    labels = list(sk.data[0].node.label)
    assert labels[0].startswith("total") and {"prefill", "decode", "L0", OUTSIDE_LAYERS} <= set(
        labels
    )
    link = sk.data[0].link
    out_of_root = sum(v for s, v in zip(link.source, link.value, strict=True) if s == 0)
    assert out_of_root == pytest.approx(sum(p["energy_j"] for p in run.phases()))
    into_outside = sum(
        v for t, v in zip(link.target, link.value, strict=True) if labels[t] == OUTSIDE_LAYERS
    )
    assert into_outside == pytest.approx((1 - LAYER_COVERAGE) * tokens_j, rel=1e-4)
    assert "layer coverage (hooked / token time) 75.0 %" in _title(sk)


def _links(fig: go.Figure) -> dict[tuple[str, str], float]:
    sk = fig.data[0]
    labels = list(sk.node.label)
    return {
        (labels[s], labels[t]): v
        for s, t, v in zip(sk.link.source, sk.link.target, sk.link.value, strict=True)
    }


def test_sankey_of_the_hand_run() -> None:
    """Every flow of `lew_hand_runs` (10 W constant), worked out in its docstring."""
    links = _links(hand_run().figures.sankey())
    assert links == pytest.approx(
        {
            ("total 3 J (measured)", "prefill"): 1.0,
            ("total 3 J (measured)", "decode"): 1.5,
            ("total 3 J (measured)", "tail"): hr.TAIL_J,
            ("prefill", "L0"): 0.4,
            ("prefill", "L1"): 0.2,
            ("prefill", OUTSIDE_LAYERS): 0.4,
            ("decode", "L0"): 0.2 + 0.4,
            ("decode", "L1"): 0.2 + 0.4,
            ("decode", OUTSIDE_LAYERS): 0.1 + 0.2,
        }
    )
    assert sum(v for (_, b), v in links.items() if b == OUTSIDE_LAYERS) == pytest.approx(
        sum(hr.OUTSIDE_J)
    )


def test_treemap_of_the_hand_run() -> None:
    fig = hand_run().figures.treemap()
    d = fig.data[0]
    value = dict(zip(d.ids, d.values, strict=True))
    assert value["prefill"] == pytest.approx(1.0) and value["decode"] == pytest.approx(1.5)
    assert value[f"prefill/{OUTSIDE_LAYERS}"] == pytest.approx(0.4)
    assert value[f"decode/{OUTSIDE_LAYERS}"] == pytest.approx(0.3)
    assert value["decode/L1/mlp"] == pytest.approx(0.15 + 0.2)
    # children add up to their parent (plotly's branchvalues="total" draws nothing otherwise)
    for id_, parent in zip(d.ids, d.parents, strict=True):
        kids = [v for v, p in zip(d.values, d.parents, strict=True) if p == id_]
        if kids:
            assert sum(kids) == pytest.approx(value[id_])
        assert parent == "" or parent in value
    assert "72.0 %" in _title(fig)


def test_heatmap_means_exclude_the_prefill_token() -> None:
    r = hand_run()
    fig = r.figures.layer_heatmap("act_mean")
    # mean |x| is 10 in the prefill token, 1 and 3 in the decode tokens
    assert np.asarray(fig.data[0].z) == pytest.approx(np.full((2, 2), 2.0))
    assert _title(fig).startswith("mean |x| per layer x component (measured;")
    assert "mean over 2 decode tokens (prefill excluded)" in _title(fig)
    assert fig.data[0].colorbar.title.text == "mean |x|"
    energy = r.figures.layer_heatmap()
    assert np.asarray(energy.data[0].z) == pytest.approx(np.array([[0.5, 0.5], [0.35, 0.45]]))
    assert "sum over all 3 tokens, prefill included" in _title(energy)
    assert "72.0 %" in _title(energy)
    only_prefill = synthetic_run(n_tokens=1, n_layers=2)
    assert "prefill token only" in _title(only_prefill.figures.layer_heatmap("act_std"))


def test_titles_carry_real_resolution_scope_and_power_window() -> None:
    r = hand_run(power={"power_window_ms": 1000.0})
    title = _title(r.figures.power_timeline())
    assert "measured · device, source hand, resolution 75 ms" in title  # not the 50 ms poll
    assert "power readings are 1-s averages" in title
    assert layer_label("model.layers.12") == "L12" and layer_label("lm_head") == "lm_head"


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
