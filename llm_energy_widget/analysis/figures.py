"""Plotly figures of one run; every title says the unit, the kind and the source of its numbers.

`run.figures` displays all of them, each as its own notebook output at its own height
(`analysis.html`: the plotly mime for JupyterLab and VS Code, HTML for nbconvert, plotly.js
inlined at most once per notebook); `run.figures.sankey()` etc. return plain `go.Figure`s.

Layer energies are the token's energy x cell time / token time (`core.attribution`): the hooked
layers hold only part of a token (its layer coverage), so the treemap and the sankey carry the rest
as an explicit `outside layers` node and their leaves add up to the tokens' energy. Figures that
average over tokens average the decode tokens only: the prefill token runs the whole prompt at
once and would pull a per-token mean towards the prompt's length. Layers are labelled L0, L1, ….

Sizes stay bounded whatever the run: the power lines are drawn from at most `MAX_LINE_POINTS`
points (min and max per bucket, so peaks survive), long runs' decode tokens are binned into at
most `MAX_TOKEN_BARS` bars, and the treemap and the sankey show the largest layers and
components with the rest gathered in `other N layers` / `other N components`, so 30 layers x 12
components stay readable and each figure stays well under 300 KB in a saved notebook.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS
from ..core.schema import METRIC_LABELS, METRIC_UNITS, SUMMARY_LABELS
from ..errors import InvalidInputError
from ..view.palette import NEUTRAL, plotly_colorscale
from ..view.palette import PHASE_COLORS as _WIDGET_PHASE_COLORS
from ..view.palette import RAIL_COLORS as _WIDGET_RAIL_COLORS
from ..view.text import kind_text, layer_label, window_note
from .theme import FONT_COLOR, GRID_COLOR, PALETTE, compact, mix, rgba, style, text_on

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..run import Run

__all__ = [
    "BETWEEN_TOKENS",
    "MAX_LINE_POINTS",
    "MAX_SANKEY_LAYERS",
    "MAX_TOKEN_BARS",
    "MAX_TREEMAP_COMPONENTS",
    "MAX_TREEMAP_LAYERS",
    "NO_LAYER_DATA",
    "PHASE_COLORS",
    "RAIL_COLORS",
    "RunFigures",
    "decode_rows",
    "energy_label",
]

PHASE_COLORS: dict[str, str] = dict(_WIDGET_PHASE_COLORS)
"""The widget's phase colours, so a phase looks the same in the widget and in the figures."""
RAIL_COLORS: dict[str, str] = {f"{k}_w": v for k, v in _WIDGET_RAIL_COLORS.items()}
"""The widget's rail colours (`cpu_w`, …, `total_w`)."""
SUM_METRICS = ("time_ms", "energy_j")  # summed over tokens; activation statistics are averaged
NO_LAYER_DATA = "no layer data"
"""Energy of tokens whose layers were not profiled (a run cut short), kept so totals still add."""
BETWEEN_TOKENS = "in phase, outside tokens"
"""A phase's energy outside its tokens' intervals (clock gaps), kept so the sankey conserves."""

MAX_LINE_POINTS = 800
"""Points per power line at most (a min/max pair per bucket, about one bucket per 2 px of a
notebook-wide plot): more draws nothing new, and every point is paid twice in the saved notebook."""
MAX_TOKEN_BARS = 300
"""Bars of the token waterfall at most (under 3 px a bar is no longer one token to the eye);
longer runs bin their decode tokens."""
MAX_TREEMAP_LAYERS = 12
MAX_TREEMAP_COMPONENTS = 8
MAX_SANKEY_LAYERS = 10


def energy_label(run: Run) -> str:
    """'estimated · process, source estimate, resolution 100 ms' for titles.

    The resolution is the real one (`Run.resolution_ms`: the source's own, else the poll
    interval); a source whose power readings are averages says over how long.
    """
    info = run.power_info
    res = run.resolution_ms
    res_s = f", resolution {res:g} ms" if res is not None else ""
    win = window_note(info.get("power_window_ms"))
    win_s = f", power readings are {win}s" if win else ""
    kind = kind_text(info.get("kind", "estimated"), info.get("scope"))
    return f"{kind}, source {info.get('source', 'unknown')}{res_s}{win_s}"


def decode_rows(layers: np.ndarray) -> tuple[list[int], str]:
    """Token rows a per-token mean is taken over, and how to say so.

    The decode tokens (2nd to last, as `decode J/token`) that have a layer row: with sampled
    instrumentation the bare ones have none (NaN), and the count says so; a run with only its
    prefill token measured falls back to that token and says so.
    """
    n_rows = layers.shape[0]
    flat = layers.reshape(n_rows, -1) if n_rows else layers.reshape(0, 0)
    rows = [i for i in range(1, n_rows) if np.isfinite(flat[i]).any()]
    n_dec = max(n_rows - 1, 0)
    if rows:
        n = len(rows)
        if n < n_dec:
            return rows, (
                f"mean over {n} instrumented decode token{'s' if n != 1 else ''} of {n_dec} "
                "(prefill excluded)"
            )
        return rows, f"mean over {n} decode token{'s' if n != 1 else ''} (prefill excluded)"
    return list(range(min(n_rows, 1))), "prefill token only (no decode token measured)"


def _coverage_note(run: Run) -> str:
    """'layer coverage (hooked / token time) 75.0 %' from the summary ('' when unknown)."""
    cov = run.summary().get("layer_coverage")
    if cov is None:
        return ""
    return f"{SUMMARY_LABELS['layer_coverage']} {100 * cov:.1f} %"


def _phase_color(name: str) -> str:
    return PHASE_COLORS.get(name, NEUTRAL)


def _envelope(t: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points of (t, y): each bucket's min and max, in time order."""
    n = t.size
    if n <= max_points:
        return t, y
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: list[int] = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        seg = y[a:b]
        if np.isnan(seg).all():
            keep.append(a)
            continue
        lo, hi = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        keep.extend(sorted({lo, hi}))
    idx = np.asarray(keep, dtype=int)
    return t[idx], y[idx]


def _token_text(text: str) -> str:
    """A token as hover text: quoted like Python shows it (spaces and newlines visible), and
    escaped, since plotly reads hover text as HTML."""
    return html.escape(json.dumps(text, ensure_ascii=False), quote=False)


class RunFigures:
    """`run.figures`: one method per figure; `.all()` for every one that has data.

    Displayed in a notebook, every figure is its own output at full size (`analysis.html`).
    """

    def __init__(self, run: Run) -> None:
        self.run = run

    def __repr__(self) -> str:
        return f"<RunFigures of run {self.run.run_id}: {', '.join(self.names())}>"

    @staticmethod
    def names() -> list[str]:
        return ["power_timeline", "token_waterfall", "layer_heatmap", "treemap", "sankey"]

    def all(self) -> list[go.Figure]:
        figs = [self.power_timeline(), self.token_waterfall()]
        if self.run.layers.size:
            figs += [self.layer_heatmap(), self.treemap()]
        figs.append(self.sankey())
        return figs

    def _ipython_display_(self) -> None:
        from .html import display_figures

        display_figures(self.all())

    def to_html(self, include_plotlyjs: bool = True) -> str:
        """Every figure as one HTML fragment (plotly.js inline once: renders offline)."""
        from .html import figures_html

        return figures_html(self.all(), include_plotlyjs=include_plotlyjs)

    # -- figures ----------------------------------------------------------------------------------
    def power_timeline(self) -> go.Figure:
        """Power per rail and total over time; phases as shaded bands and as a labelled strip.

        Phase names sit in their own strip above the plot, inside each phase's bar, and a name
        that does not fit its bar is hidden rather than drawn over its neighbour (a 3-ms
        tokenize next to a 20-ms tail); every phase stays in the legend and in the hover.
        """
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        run = self.run
        kind = str(run.power_info.get("kind", "estimated"))
        pw = run.power_arrays()
        t_s = pw["t_ms"] / 1000.0
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, row_heights=[0.09, 0.91], vertical_spacing=0.02
        )
        reduced = False
        for col, label in (
            ("cpu_w", "CPU"), ("gpu_w", "GPU"), ("ane_w", "ANE"), ("dram_w", "DRAM"),
            ("total_w", "total"),
        ):  # fmt: skip
            y = pw[col]
            if not np.isfinite(y).any():
                continue
            tt, yy = _envelope(t_s, y, MAX_LINE_POINTS)
            reduced = reduced or tt.size < t_s.size
            width = 2.2 if col == "total_w" else 1.3
            fig.add_trace(
                go.Scatter(
                    x=compact(tt, 6), y=compact(yy), name=label, mode="lines",
                    line={"color": RAIL_COLORS.get(col, FONT_COLOR), "width": width},
                    hovertemplate=f"{label}: %{{y:.4g}} W<extra></extra>",
                ),
                row=2, col=1,
            )  # fmt: skip
        for ph in run.phases():
            if ph["end_ms"] is None:
                continue
            x0, x1 = ph["start_ms"] / 1000.0, ph["end_ms"] / 1000.0
            color = _phase_color(ph["name"])
            fig.add_vrect(x0=x0, x1=x1, line_width=0, fillcolor=rgba(color, 0.13), row=2, col=1)
            e = ph["energy_j"]
            energy = f"{e:.4g} J ({kind})" if e is not None else "energy unknown"
            fig.add_trace(
                go.Bar(
                    y=["phase"], x=[max(x1 - x0, 0.0)], base=[x0], orientation="h",
                    name=ph["name"], marker_color=color,
                    marker_line_width=0, text=[ph["name"]], textposition="inside",
                    insidetextanchor="middle",
                    hovertemplate=(
                        f"{html.escape(ph['name'])}: {1000 * (x1 - x0):.4g} ms, "
                        f"{energy}<extra></extra>"
                    ),
                ),
                row=1, col=1,
            )  # fmt: skip
        if run.baseline_w is not None:
            fig.add_hline(
                y=run.baseline_w, line_dash="dot", line_color=FONT_COLOR, row=2, col=1,
                annotation_text="idle baseline", annotation_position="bottom right",
            )  # fmt: skip
        fig.update_layout(barmode="overlay", uniformtext={"minsize": 9, "mode": "hide"})
        fig.update_yaxes(showticklabels=False, showgrid=False, fixedrange=True, row=1, col=1)
        fig.update_yaxes(title_text=f"power (W, {kind})", row=2, col=1)
        fig.update_xaxes(title_text="time since start (s)", row=2, col=1)
        fig.update_xaxes(showgrid=False, row=1, col=1)
        drawn = f"; lines drawn from <= {MAX_LINE_POINTS} points (min/max per bucket)"
        return style(
            fig,
            "Power over time",
            f"W, {energy_label(run)}{drawn if reduced else ''}",
            height_px=460,
        )

    def token_waterfall(self) -> go.Figure:
        """Energy of each token (bars, from E(t)) and the cumulative energy (line).

        Up to `MAX_TOKEN_BARS` tokens each get a bar; a longer run keeps its prefill token's bar
        and bins its decode tokens, each bar the mean J/token of its bin (the hover says which
        tokens, their min and max).
        """
        import plotly.graph_objects as go

        run = self.run
        toks = run.tokens()
        kind = str(run.power_info.get("kind", "estimated"))
        e = np.array(
            [np.nan if t["energy_j"] is None else t["energy_j"] for t in toks], dtype=float
        )
        dur = np.array(
            [np.nan if t["duration_ms"] is None else t["duration_ms"] for t in toks], dtype=float
        )
        cum = np.nancumsum(e) if e.size else e
        prefill_c, decode_c = _phase_color("prefill"), _phase_color("decode")
        fig = go.Figure()
        if len(toks) <= MAX_TOKEN_BARS:
            for phase, color, label in (
                ("prefill", prefill_c, "prefill token"), ("decode", decode_c, "decode tokens"),
            ):  # fmt: skip
                rows = [i for i, t in enumerate(toks) if (t["phase"] == "prefill") == (
                    phase == "prefill")]  # fmt: skip
                if not rows:
                    continue
                fig.add_trace(
                    go.Bar(
                        x=[toks[i]["index"] for i in rows], y=compact(e[rows]),
                        name=f"{label} (J, {kind})", marker_color=color, marker_line_width=0,
                        hovertext=[_token_text(toks[i]["text"]) for i in rows],
                        customdata=compact(dur[rows]),
                        hovertemplate="token %{x} %{hovertext}<br>%{y:.4g} J in "
                        "%{customdata:.1f} ms<extra></extra>",
                    )
                )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=[t["index"] for t in toks], y=compact(cum), name=f"cumulative (J, {kind})",
                    yaxis="y2", mode="lines", line={"color": PALETTE[1], "width": 2},
                    hovertemplate="through token %{x}: %{y:.4g} J<extra></extra>",
                )
            )  # fmt: skip
            binned = ""
        else:
            k = math.ceil((len(toks) - 1) / (MAX_TOKEN_BARS - 1))
            starts = list(range(1, len(toks), k))
            centres, means, lows, highs, ends, labels = [], [], [], [], [], []
            for a in starts:
                b = min(a + k, len(toks))
                seg = e[a:b]
                centres.append((a + b - 1) / 2)
                finite = seg[np.isfinite(seg)]
                means.append(float(finite.mean()) if finite.size else math.nan)
                lows.append(float(finite.min()) if finite.size else math.nan)
                highs.append(float(finite.max()) if finite.size else math.nan)
                ends.append(float(cum[b - 1]))
                labels.append(f"tokens {a}–{b - 1}")
            fig.add_trace(
                go.Bar(
                    x=[0], y=compact(e[:1]), width=[k], name=f"prefill token (J, {kind})",
                    marker_color=prefill_c, marker_line_width=0,
                    hovertemplate="token 0 (prefill): %{y:.4g} J<extra></extra>",
                )
            )  # fmt: skip
            fig.add_trace(
                go.Bar(
                    x=compact(centres, 6), y=compact(means), width=[k] * len(centres),
                    name=f"decode, mean J/token per {k} tokens ({kind})", marker_color=decode_c,
                    marker_line_width=0, hovertext=labels,
                    customdata=[[lo, hi] for lo, hi in zip(compact(lows), compact(highs),
                                                            strict=True)],
                    hovertemplate="%{hovertext}: mean %{y:.4g} J/token (min %{customdata[0]:.4g},"
                    " max %{customdata[1]:.4g})<extra></extra>",
                )
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=[0, *[min(a + k, len(toks)) - 1 for a in starts]],
                    y=compact([float(cum[0]), *ends]), name=f"cumulative (J, {kind})",
                    yaxis="y2", mode="lines", line={"color": PALETTE[1], "width": 2},
                    hovertemplate="through token %{x}: %{y:.4g} J<extra></extra>",
                )
            )  # fmt: skip
            binned = f"; decode tokens in bins of {k} (bar: the bin's mean J/token)"
        fig.update_layout(
            bargap=0.1,
            barmode="overlay",
            yaxis2={
                "title": {"text": f"cumulative energy (J, {kind})"},
                "overlaying": "y",
                "side": "right",
                "tickmode": "auto",  # round numbers of its own, not ticks synced to the left axis
                "showgrid": False,
                "rangemode": "tozero",
                "linecolor": GRID_COLOR,
                "automargin": True,
            },
        )
        fig.update_yaxes(rangemode="tozero")
        return style(
            fig,
            "Energy per token",
            f"J, {energy_label(run)}; the first token includes the prefill{binned}",
            height_px=420,
            x="token",
            y=f"energy (J, {kind})",
        )

    def layer_heatmap(self, metric: str = "energy_j", token: int | None = None) -> go.Figure:
        """Layers x components for one metric: one token, or over the run.

        Over the run, time and energy are summed over all tokens (prefill included: totals) and
        activation statistics are the mean over the decode tokens (prefill excluded).
        """
        import plotly.graph_objects as go

        run = self.run
        if metric not in run.metric_names:
            raise InvalidInputError(
                f"metric must be one of {', '.join(run.metric_names)}; got {metric!r}"
            )
        arr = run.layers
        if arr.size == 0:
            raise InvalidInputError(f"run {run.run_id} has no layer data (level {run.level!r})")
        m = run.metric_names.index(metric)
        note = ""
        if token is None:
            if metric in SUM_METRICS:
                z = np.nansum(arr[:, :, :, m], axis=0)
                n_with = int(np.isfinite(arr.reshape(arr.shape[0], -1)).any(axis=1).sum())
                agg = (
                    f"sum over all {arr.shape[0]} tokens, prefill included"
                    if n_with == arr.shape[0]
                    else f"sum over the {n_with} instrumented tokens of {arr.shape[0]}, prefill "
                    "included (bare tokens have no layer row)"
                )
                cov = _coverage_note(run)
                if metric == "energy_j" and cov:
                    note = f"; {cov}, the rest is '{OUTSIDE_LAYERS}'"
            else:
                rows, agg = decode_rows(arr)
                with np.errstate(all="ignore"):
                    z = np.nanmean(arr[rows, :, :, m], axis=0)
        else:
            if not -arr.shape[0] <= token < arr.shape[0]:
                raise InvalidInputError(f"token must be in [0, {arr.shape[0]}); got {token}")
            z, agg = arr[token, :, :, m], f"token {token}"
        kind = run.labels().get(f"layers.{metric}", run.labels()["layers.activations"])
        name = METRIC_LABELS.get(metric, metric)
        unit = METRIC_UNITS.get(metric, "")
        src = (
            f", from {energy_label(run)} energy split by measured time"
            if metric == "energy_j"
            else ""
        )
        fig = go.Figure(
            go.Heatmap(
                z=[compact(row) for row in np.asarray(z, dtype=float)], x=run.component_names,
                y=_layer_labels(run), colorscale=plotly_colorscale(), xgap=1, ygap=1,
                colorbar={"title": {"text": f"{name} ({unit})" if unit else name},
                          "outlinewidth": 0},
                hovertemplate="%{y} %{x}: %{z:.4g}" + (f" {unit}" if unit else "")
                + "<extra></extra>",
            )
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", showgrid=False)
        fig.update_xaxes(showgrid=False)
        return style(
            fig,
            f"{name[:1].upper()}{name[1:]} per layer x component",
            f"{unit + ', ' if unit else ''}{kind}{src}; {agg}{note}",
            height_px=int(min(max(200 + 18 * len(run.layer_names), 380), 1000)),
            x="component",
            y="layer",
            legend_below=False,
        )

    def _phase_splits(self) -> dict[str, _PhaseSplit]:
        """phase -> its tokens' energy split into layer x component cells and the rest."""
        run = self.run
        arr = run.layers
        if arr.size == 0 or "energy_j" not in run.metric_names:
            return {}
        ei = run.metric_names.index("energy_j")
        out: dict[str, _PhaseSplit] = {}
        for i, tok in enumerate(run.tokens()):
            e = tok["energy_j"]
            if e is None:
                continue
            sp = out.setdefault(tok["phase"], _PhaseSplit(np.zeros(arr.shape[1:3])))
            cells = (
                np.nan_to_num(arr[i, :, :, ei].astype(np.float64))
                if i < arr.shape[0]
                else np.zeros(arr.shape[1:3])
            )
            sp.cells += cells
            sp.tokens_j += e
            outside = tok.get("outside_layers_j")
            if outside is not None:
                sp.outside_j += outside
            else:  # layers not profiled for this token (cut short): keep its energy visible
                sp.no_layers_j += e - float(cells.sum())
        return out

    def treemap(self) -> go.Figure:
        """Phase > layer > component energy, plus each phase's energy outside the layers.

        A phase is its tokens' energy; its children are the layers (L0, …: modeled cells) and
        `outside layers` (embedding, final norm, lm_head, sampling, the loop), so they add up.
        A phase shows at most `MAX_TREEMAP_LAYERS` layer boxes (the largest, then one
        `other N layers`), a layer at most `MAX_TREEMAP_COMPONENTS` component boxes (the
        largest, then `other N components`).
        """
        import plotly.graph_objects as go

        run = self.run
        kind = str(run.power_info.get("kind", "estimated"))
        names = _layer_labels(run)
        comps = list(run.component_names)
        ids: list[str] = []
        labels: list[str] = []
        parents: list[str] = []
        values: list[float] = []
        kinds: list[str] = []
        colors: list[str] = []

        def add(id_: str, label: str, parent: str, value: float, k: str, color: str = "") -> None:
            ids.append(id_)
            labels.append(label)
            parents.append(parent)
            values.append(value)
            kinds.append(k)
            colors.append(color)

        def add_components(lid: str, row: np.ndarray, color: str) -> None:  # one layer's boxes
            for ci, value in _top(row, MAX_TREEMAP_COMPONENTS):
                label = comps[ci] if ci >= 0 else f"other {-ci} components"
                add(f"{lid}/{label}", label, lid, value, "modeled", color)

        for ph, sp in self._phase_splits().items():
            # opaque fills, so each box's text contrast does not depend on the page's theme
            pc = _phase_color(ph)
            add(ph, ph, "", sp.total_j, kind, pc)
            layer_j = sp.cells.sum(axis=1)
            shown = {li for li, _ in _top(layer_j, MAX_TREEMAP_LAYERS) if li >= 0}
            for li in sorted(shown):
                lid = f"{ph}/{names[li]}"
                add(lid, names[li], ph, float(layer_j[li]), "modeled", mix(pc, "#000000", 0.15))
                add_components(lid, sp.cells[li], mix(pc, "#ffffff", 0.3))
            rest = [li for li in range(len(names)) if li not in shown]
            if rest:
                lid = f"{ph}/other layers"
                add(lid, f"other {len(rest)} layers", ph, float(layer_j[rest].sum()),
                    "modeled", mix(pc, "#808080", 0.45))  # fmt: skip
                add_components(lid, sp.cells[rest].sum(axis=0), mix(pc, "#808080", 0.25))
            add(f"{ph}/{OUTSIDE_LAYERS}", OUTSIDE_LAYERS, ph, sp.outside_j, "modeled", "#7a7a7a")
            if sp.no_layers_j > 0:
                add(f"{ph}/{NO_LAYER_DATA}", NO_LAYER_DATA, ph, sp.no_layers_j, kind, "#a0a0a0")
        fig = go.Figure(
            go.Treemap(
                ids=ids, labels=labels, parents=parents, values=values,
                branchvalues="total", customdata=kinds, maxdepth=2, sort=True,
                marker={"colors": colors, "line": {"width": 1, "color": "rgba(128,128,128,0.5)"}},
                texttemplate="%{label}<br>%{value:.3g} J",
                textfont={"color": [text_on(c) for c in colors]},
                pathbar={"visible": True, "textfont": {"color": FONT_COLOR}},
                hovertemplate="%{id}: %{value:.4g} J (%{customdata}), "
                "%{percentParent:.1%} of %{parent}<extra></extra>",
            )
        )  # fmt: skip
        cov = _coverage_note(run)
        return style(
            fig,
            "Energy by phase > layer > component",
            f"J; token energies {energy_label(run)}, split by measured time: modeled"
            f"{'; ' + cov if cov else ''}, the rest '{OUTSIDE_LAYERS}'; click a layer for its "
            "components",
            height_px=560,
            legend_below=False,
        )

    def sankey(self) -> go.Figure:
        """Energy flow: total -> phases -> (prefill, decode) -> layers and `outside layers`.

        A run with more than `MAX_SANKEY_LAYERS` layers shows its largest ones and gathers the
        rest in one `other N layers` node (at most `MAX_SANKEY_LAYERS` layer nodes in all).
        The idle baseline is measured before the run and is not part of its total.
        """
        import plotly.graph_objects as go

        run = self.run
        kind = str(run.power_info.get("kind", "estimated"))
        names = _layer_labels(run)
        nodes: list[str] = []
        node_colors: list[str] = []

        def node(name: str, color: str = "#8c8c8c") -> int:
            if name not in nodes:
                nodes.append(name)
                node_colors.append(color)
            return nodes.index(name)

        src: list[int] = []
        dst: list[int] = []
        val: list[float] = []
        note: list[str] = []

        def link(a: str, b: str, value: float, k: str, color: str = "#8c8c8c") -> None:
            src.append(node(a))
            dst.append(node(b, color))
            val.append(value)
            note.append(k)

        phases = [  # (phase name, its energy)
            (p["name"], e)
            for p in run.phases()
            if p["name"] != "baseline" and (e := p["energy_j"]) is not None and e > 0
        ]
        total = sum(e for _, e in phases)
        root = f"total {total:.3g} J ({kind})"
        node(root)
        for name, e in phases:
            link(root, name, e, kind, _phase_color(name))
        splits = self._phase_splits()
        layer_total = sum(
            (sp.cells.sum(axis=1) for n, sp in splits.items() if n in ("prefill", "decode")),
            start=np.zeros(len(names)),
        )
        if len(names) > MAX_SANKEY_LAYERS:
            shown = {li for li, _ in _top(layer_total, MAX_SANKEY_LAYERS) if li >= 0}
        else:
            shown = set(range(len(names)))
        other = f"other {len(names) - len(shown)} layers"
        layer_color = PALETTE[0]
        for name, e in phases:
            sp = splits.get(name)
            if sp is None or name not in ("prefill", "decode"):
                continue
            per_layer = sp.cells.sum(axis=1)
            for li in sorted(shown):
                if per_layer[li] > 0:
                    link(name, names[li], float(per_layer[li]), "modeled", layer_color)
            rest = float(sum(per_layer[li] for li in range(len(names)) if li not in shown))
            if rest > 0:
                link(name, other, rest, "modeled", rgba(layer_color, 0.6))
            if sp.outside_j > 0:
                link(name, OUTSIDE_LAYERS, sp.outside_j, "modeled")
            if sp.no_layers_j > 0:
                link(name, NO_LAYER_DATA, sp.no_layers_j, kind)
            gap = e - sp.tokens_j
            if gap > 1e-9 * e:
                link(name, BETWEEN_TOKENS, gap, kind)
        link_colors = [_translucent(node_colors[s]) for s in src]
        column = max(len(phases), len(nodes) - 1 - len(phases), 1)  # the tallest node column
        fig = go.Figure(
            go.Sankey(
                arrangement="snap", valueformat=".4g", valuesuffix=" J",
                node={"label": nodes, "pad": 16, "thickness": 16, "color": node_colors,
                      "line": {"width": 0},
                      "hovertemplate": "%{label}: %{value:.4g} J<extra></extra>"},
                link={"source": src, "target": dst, "value": val,
                      "customdata": note, "color": link_colors,
                      "hovertemplate": "%{source.label} → %{target.label}: %{value:.4g} J "
                      "(%{customdata})<extra></extra>"},
                textfont={"color": FONT_COLOR, "size": 12, "shadow": "none"},
            )
        )  # fmt: skip
        cov = _coverage_note(run)
        return style(
            fig,
            "Energy flow",
            f"J: total and phases {energy_label(run)}; layers and '{OUTSIDE_LAYERS}' modeled"
            f"{'; ' + cov if cov else ''}",
            height_px=int(min(max(120 + 34 * column, 420), 900)),
            legend_below=False,
        )


def _translucent(color: str) -> str:
    if color.startswith("#"):
        return rgba(color, 0.35)
    if color.startswith("rgba("):
        return color.rsplit(",", 1)[0] + ",0.3)"
    return "rgba(128,128,128,0.3)"


def _top(values: np.ndarray, n: int) -> list[tuple[int, float]]:
    """(index, value) of the n largest entries in index order, then (-count, sum) of the rest
    when more than n entries (the 'other' box; its index is minus how many it holds)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    if v.size <= n:
        return [(i, float(v[i])) for i in range(v.size)]
    keep = sorted(np.argsort(-v, kind="stable")[: n - 1].tolist())
    rest = [i for i in range(v.size) if i not in set(keep)]
    return [(i, float(v[i])) for i in keep] + [(-len(rest), float(v[rest].sum()))]


@dataclass
class _PhaseSplit:
    """One phase's token energy (J): layer x component cells, outside the layers, unprofiled."""

    cells: np.ndarray
    outside_j: float = 0.0
    no_layers_j: float = 0.0
    tokens_j: float = 0.0

    @property
    def total_j(self) -> float:
        """Cells + outside layers + unprofiled: the phase's tokens' energy, as its children add."""
        return float(self.cells.sum()) + self.outside_j + self.no_layers_j


def _layer_labels(run: Run) -> list[str]:
    """L0, L1, … for the run's layers (their own names if the short ones would collide)."""
    short = [layer_label(n) for n in run.layer_names]
    return short if len(set(short)) == len(short) else list(run.layer_names)
