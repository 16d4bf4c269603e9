"""RunFigures on synthetic runs: every figure has data, units and kinds in its titles."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import support.runs as hr
from support.runs import hand_run, num

from llm_energy_widget.analysis.figures import (
    MAX_LINE_POINTS,
    MAX_SANKEY_LAYERS,
    MAX_TOKEN_BARS,
    MAX_TREEMAP_COMPONENTS,
    MAX_TREEMAP_LAYERS,
)
from llm_energy_widget.analysis.html import figure_bundle
from llm_energy_widget.analysis.names import layer_label
from llm_energy_widget.analysis.theme import FONT_COLOR, TITLE_WRAP_CHARS, luminance, plain_title
from llm_energy_widget.core.attribution import OUTSIDE_LAYERS
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.run import Run
from llm_energy_widget.testing import LAYER_COVERAGE, synthetic_run


@pytest.fixture(scope="module")
def run() -> Run:
    r = synthetic_run(n_tokens=8, n_layers=3)
    r.baseline_w = 12.0
    return r


def _title(fig: go.Figure) -> str:
    """The title as read: wrapped lines joined, markup dropped."""
    return plain_title(str(fig.layout.title.text))


def test_power_timeline(run: Run) -> None:
    fig = run.figures.power_timeline()
    assert "W" in _title(fig)
    assert "modeled" in _title(fig)
    assert "source synthetic" in _title(fig)
    assert "resolution 100 ms" in _title(fig)
    lines = [t.name for t in fig.data if t.type == "scatter"]
    assert lines == ["CPU", "DRAM", "total"]  # rails without data are left out
    strip = [t.name for t in fig.data if t.type == "bar"]
    assert strip == ["prefill", "decode"]  # the phase strip: one labelled bar per phase
    assert len(fig.layout.shapes) == 3  # prefill band, decode band, baseline line
    assert "W, modeled" in fig.layout.yaxis2.title.text


def test_token_waterfall_matches_energy_curve(run: Run) -> None:
    # bars per phase (the legend says which colour is which), then the cumulative line
    prefill, decode, line = run.figures.token_waterfall().data
    expected = [num(t["energy_j"]) for t in run.tokens()]
    assert list(prefill.x) == [0]
    assert list(decode.x) == list(range(1, 8))
    assert [*prefill.y, *decode.y] == pytest.approx(expected, rel=1e-3)  # 4 significant digits
    assert list(line.y) == pytest.approx(np.cumsum(expected), rel=1e-3)
    assert "J, modeled" in _title(run.figures.token_waterfall())


def test_layer_heatmap(run: Run) -> None:
    fig = run.figures.layer_heatmap()
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (3, 9)
    # cells hold the layers' share of each token; the rest is outside the layers (lm_head, loop)
    inside = sum(num(t["energy_j"]) - num(t["outside_layers_j"]) for t in run.tokens())
    assert z.sum() == pytest.approx(inside, rel=1e-4)
    assert inside == pytest.approx(0.75 * sum(num(t["energy_j"]) for t in run.tokens()), rel=1e-4)
    assert "modeled" in _title(fig)
    assert "J" in _title(fig)
    t = run.figures.layer_heatmap("time_ms", token=2)
    assert "measured" in _title(t)
    assert "token 2" in _title(t)
    # activation statistics are averaged over the decode tokens only (8 tokens: 7 decode)
    act = run.figures.layer_heatmap("act_max")
    assert "Max |x|" in _title(act)
    assert "mean over 7 decode tokens (prefill excluded)" in _title(act)
    assert list(act.data[0].y) == ["L0", "L1", "L2"]
    with pytest.raises(InvalidInputError, match="metric must be one of"):
        run.figures.layer_heatmap("watts")
    with pytest.raises(InvalidInputError, match="token must be in"):
        run.figures.layer_heatmap(token=99)


def test_treemap_and_sankey_conserve_energy(run: Run) -> None:
    # the layers cover 75 % of each synthetic token: cells + outside layers = the tokens' energy
    tokens_j = sum(num(t["energy_j"]) for t in run.tokens())
    tm = run.figures.treemap()
    d = tm.data[0]
    roots = [v for v, p in zip(d.values, d.parents, strict=True) if p == ""]
    assert sum(roots) == pytest.approx(tokens_j, rel=1e-4)
    outside = [v for v, lab in zip(d.values, d.labels, strict=True) if lab == OUTSIDE_LAYERS]
    assert sum(outside) == pytest.approx((1 - LAYER_COVERAGE) * tokens_j, rel=1e-4)
    assert "modeled" in _title(tm)
    assert "layer coverage (hooked / token time) 75.0 %" in _title(tm)
    sk = run.figures.sankey()
    labels = list(sk.data[0].node.label)
    assert labels[0].startswith("total")
    assert {"prefill", "decode", "L0", OUTSIDE_LAYERS} <= set(labels)
    link = sk.data[0].link
    out_of_root = sum(v for s, v in zip(link.source, link.value, strict=True) if s == 0)
    assert out_of_root == pytest.approx(sum(num(p["energy_j"]) for p in run.phases()))
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
    """Every flow of `support.runs` (10 W constant), worked out in its docstring."""
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
    assert value["prefill"] == pytest.approx(1.0)
    assert value["decode"] == pytest.approx(1.5)
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
    assert np.asarray(fig.data[0].z, dtype=float) == pytest.approx(np.full((2, 2), 2.0))
    assert _title(fig).startswith("Mean |x| per layer x component measured;")
    assert "mean over 2 decode tokens (prefill excluded)" in _title(fig)
    assert fig.data[0].colorbar.title.text == "mean |x|"
    energy = r.figures.layer_heatmap()
    z = np.asarray(energy.data[0].z, dtype=float)
    assert z == pytest.approx(np.array([[0.5, 0.5], [0.35, 0.45]]))
    assert "sum over all 3 tokens, prefill included" in _title(energy)
    assert "72.0 %" in _title(energy)
    only_prefill = synthetic_run(n_tokens=1, n_layers=2)
    assert "prefill token only" in _title(only_prefill.figures.layer_heatmap("act_std"))


def test_titles_carry_real_resolution_scope_and_power_window() -> None:
    r = hand_run(power={"power_window_ms": 1000.0})
    title = _title(r.figures.power_timeline())
    assert "measured · device, source hand, resolution 75 ms" in title  # not the 50 ms poll
    assert "power readings are 1-s averages" in title
    assert layer_label("model.layers.12") == "L12"
    assert layer_label("lm_head") == "lm_head"


def test_all_and_html_render(run: Run) -> None:
    figs = run.figures.all()
    assert len(figs) == 5
    for f in figs:
        json.loads(f.to_json())  # serializable for the plotly mimetype (VS Code, JupyterLab)
    html = run.figures.to_html()
    assert html.count("Plotly.newPlot(gd,") == 5
    assert html.count("* plotly.js v") == 1  # plotly.js inline once (offline: no CDN)
    assert "<script src=" not in html


def test_token_level_run_has_no_layer_figures() -> None:
    r = synthetic_run(n_tokens=4, n_layers=0, components=())
    assert len(r.figures.all()) == 3
    with pytest.raises(InvalidInputError, match="no layer data"):
        r.figures.layer_heatmap()


COMPONENTS_12 = tuple(f"comp{i}" for i in range(12))


def _with_short_phases(n_tokens: int = 8, n_layers: int = 3, **kw: object) -> Run:
    """A synthetic run ending in a 12-ms tail and a 2-ms detokenize, as real runs do."""
    r = synthetic_run(n_tokens=n_tokens, n_layers=n_layers, finish=False, **kw)
    t = num(r.phases()[-1]["end_ms"])
    Recorder(r).phase_start("tail", t)
    Recorder(r).phase_end("tail", t + 12.0)
    Recorder(r).phase_start("detokenize", t + 12.0)
    Recorder(r).phase_end("detokenize", t + 14.0)
    Recorder(r).finish("completed", "synthetic run complete")
    return r


def test_phase_names_never_overlap_in_the_power_timeline() -> None:
    """Names sit inside their phase's bar in a strip of their own; one that does not fit is
    hidden (uniformtext), not drawn over its neighbour; every phase stays in the legend."""
    fig = _with_short_phases().figures.power_timeline()
    strip = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in strip] == ["prefill", "decode", "tail", "detokenize"]
    for bar in strip:
        assert list(bar.text) == [bar.name]
        assert bar.textposition == "inside"
        assert bar.showlegend is not False
    assert fig.layout.uniformtext.mode == "hide"
    assert fig.layout.barmode == "overlay"
    # no phase name as free text (the old top-left annotations piled up on short phases)
    assert not [a for a in fig.layout.annotations if a.text in {"tail", "detokenize"}]
    tail = next(t for t in strip if t.name == "tail")
    assert tail.x[0] == pytest.approx(0.012)
    assert "12 ms" in tail.hovertemplate


def test_layers_are_labelled_L0_in_every_figure() -> None:
    r = synthetic_run(n_tokens=6, n_layers=3)  # layers named "layers.0", …
    assert list(r.figures.layer_heatmap().data[0].y) == ["L0", "L1", "L2"]
    assert {"L0", "L1", "L2"} <= set(r.figures.treemap().data[0].labels)
    assert {"L0", "L1", "L2"} <= set(r.figures.sankey().data[0].node.label)
    assert not any("layers." in str(x) for x in r.figures.sankey().data[0].node.label)


def test_treemap_and_sankey_stay_readable_for_30_layers_x_12_components() -> None:
    r = synthetic_run(n_tokens=16, n_layers=30, components=COMPONENTS_12)
    tokens_j = sum(num(t["energy_j"]) for t in r.tokens())
    tm = r.figures.treemap().data[0]
    ids = list(tm.ids)
    value = dict(zip(ids, tm.values, strict=True))
    kids: dict[str, list[str]] = {}
    for id_, parent in zip(ids, tm.parents, strict=True):
        kids.setdefault(parent, []).append(id_)
    for phase in kids[""]:
        layers = [k for k in kids[phase] if k.rsplit("/", 1)[1] != OUTSIDE_LAYERS]
        assert len(layers) <= MAX_TREEMAP_LAYERS
        assert f"{phase}/other layers" in layers
        for lid in layers:
            assert 0 < len(kids[lid]) <= MAX_TREEMAP_COMPONENTS
            assert sum(value[k] for k in kids[lid]) == pytest.approx(value[lid])
        assert sum(value[k] for k in kids[phase]) == pytest.approx(value[phase])
    assert len(ids) <= 2 * (2 + MAX_TREEMAP_LAYERS * (1 + MAX_TREEMAP_COMPONENTS))
    other = [lab for lab in tm.labels if lab.startswith("other ") and "layers" in lab]
    assert set(other) == {f"other {30 - MAX_TREEMAP_LAYERS + 1} layers"}
    assert sum(value[p] for p in kids[""]) == pytest.approx(tokens_j, rel=1e-6)
    assert tm.maxdepth == 2  # phases and layers at a glance; a click opens a layer's components

    sk = r.figures.sankey().data[0]
    labels = list(sk.node.label)
    layer_nodes = [lab for lab in labels if lab.startswith("L") or lab.startswith("other ")]
    assert len(layer_nodes) <= MAX_SANKEY_LAYERS
    assert f"other {30 - MAX_SANKEY_LAYERS + 1} layers" in labels
    out_of_root = sum(v for s, v in zip(sk.link.source, sk.link.value, strict=True) if s == 0)
    into_leaves = sum(
        v
        for s, v in zip(sk.link.source, sk.link.value, strict=True)
        if labels[s] in ("prefill", "decode")
    )
    assert out_of_root == pytest.approx(sum(num(p["energy_j"]) for p in r.phases()))
    assert into_leaves == pytest.approx(tokens_j, rel=1e-6)
    assert len(labels) <= 1 + 7 + MAX_SANKEY_LAYERS + 3  # root, phases, layers, the rest
    # the hottest layer is one of the nodes shown (top-N by energy, not the first N)
    per_layer = r.figures._phase_splits()["decode"].cells.sum(axis=1)
    assert f"L{int(np.argmax(per_layer))}" in labels


def test_long_runs_stay_small_and_keep_their_peaks() -> None:
    r = synthetic_run(n_tokens=3000, n_layers=2, components=("attn", "mlp"))
    pw = r.power_arrays()
    assert pw["t_ms"].size > MAX_LINE_POINTS
    fig = r.figures.power_timeline()
    for line in (t for t in fig.data if t.type == "scatter"):
        assert len(line.x) <= MAX_LINE_POINTS
    total = next(t for t in fig.data if t.name == "total")
    assert max(total.y) == pytest.approx(float(np.nanmax(pw["total_w"])), rel=1e-3)
    assert min(total.y) == pytest.approx(float(np.nanmin(pw["total_w"])), rel=1e-3)
    assert "drawn from <= 800 points" in _title(fig)

    wf = r.figures.token_waterfall()
    prefill, decode, line = wf.data
    assert list(prefill.x) == [0]
    assert len(decode.x) <= MAX_TOKEN_BARS
    k = int(decode.width[0])
    energies = np.array([t["energy_j"] for t in r.tokens()])
    n_decode = len(energies) - 1
    counts = [min(k, n_decode - i * k) for i in range(len(decode.y))]
    assert sum(m * c for m, c in zip(decode.y, counts, strict=True)) == pytest.approx(
        energies[1:].sum(), rel=1e-3
    )
    assert line.y[-1] == pytest.approx(energies.sum(), rel=1e-3)
    assert f"bins of {k}" in _title(wf)
    assert "mean J/token" in decode.name

    for f in r.figures.all():  # JSON + HTML of a figure leave room for the PNG Lab adds
        assert len(json.dumps(figure_bundle(f))) < 150_000, plain_title(f.layout.title.text)


def test_figures_read_on_light_and_dark_backgrounds(run: Run) -> None:
    """Transparent backgrounds (the page's shows through), a mid-grey for text, no black or
    white ink that vanishes on one of the two themes."""
    for fig in run.figures.all():
        layout = fig.layout
        tpl = layout.template.layout
        assert tpl.paper_bgcolor == "rgba(0,0,0,0)"
        assert tpl.plot_bgcolor == "rgba(0,0,0,0)"
        assert tpl.font.color == FONT_COLOR
        assert layout.height
        assert layout.height >= 300
        for trace in fig.data:
            line = getattr(trace, "line", None)
            color = getattr(line, "color", None) if line is not None else None
            assert color not in ("black", "#000000", "white", "#ffffff"), trace.name
    for bg in ("#ffffff", "#111111"):
        assert _contrast(FONT_COLOR, bg) >= 4.0


def test_titles_wrap_to_notebook_width(run: Run) -> None:
    for fig in run.figures.all():
        lines = str(fig.layout.title.text).split("<br>")
        assert all(len(plain_title(line)) <= TITLE_WRAP_CHARS for line in lines)
        assert fig.layout.margin.t >= 30 + 15 * len(lines)  # the title never runs into the plot


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
