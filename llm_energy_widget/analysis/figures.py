"""Plotly figures of one run; every title says the unit, the kind and the source of its numbers.

They are plain `go.Figure`s: JupyterLab (plotly's bundled extension), VS Code (plotly mimetype) and
exported HTML (`fig.to_html()` or nbconvert with the notebook renderer) all render them.

Layer energies are the token's energy x cell time / token time (`core.attribution`): the hooked
layers hold only part of a token (its layer coverage), so the treemap and the sankey carry the rest
as an explicit `outside layers` node and their leaves add up to the tokens' energy. Figures that
average over tokens average the decode tokens only: the prefill token runs the whole prompt at
once and would pull a per-token mean towards the prompt's length. Layers are labelled L0, L1, ….
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS
from ..core.schema import METRIC_LABELS, METRIC_UNITS, SUMMARY_LABELS
from ..errors import InvalidInputError
from .names import kind_scope, layer_label, window_note

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..run import Run

PHASE_COLORS = {
    "baseline": "rgba(150,150,150,0.18)",
    "tokenize": "rgba(255,196,0,0.18)",
    "to_device": "rgba(255,140,0,0.18)",
    "prefill": "rgba(220,60,60,0.16)",
    "decode": "rgba(40,120,220,0.14)",
    "tail": "rgba(160,90,200,0.16)",
    "detokenize": "rgba(120,200,80,0.18)",
}
RAIL_COLORS = {"cpu_w": "#1f77b4", "gpu_w": "#2ca02c", "ane_w": "#9467bd", "dram_w": "#8c564b"}
SUM_METRICS = ("time_ms", "energy_j")  # summed over tokens; activation statistics are averaged
NO_LAYER_DATA = "no layer data"
"""Energy of tokens whose layers were not profiled (a run cut short), kept so totals still add."""
BETWEEN_TOKENS = "in phase, outside tokens"
"""A phase's energy outside its tokens' intervals (clock gaps), kept so the sankey conserves."""


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
    kind = kind_scope(info.get("kind", "estimated"), info.get("scope"))
    return f"{kind}, source {info.get('source', 'unknown')}{res_s}{win_s}"


def decode_rows(n_rows: int) -> tuple[list[int], str]:
    """Token rows a per-token mean is taken over, and how to say so.

    The decode tokens (2nd to last, as `decode J/token`); a run with only its prefill token
    falls back to that token and says so.
    """
    rows = list(range(1, n_rows))
    if rows:
        n = len(rows)
        return rows, f"mean over {n} decode token{'s' if n != 1 else ''} (prefill excluded)"
    return list(range(n_rows)), "prefill token only (no decode tokens)"


def _coverage_note(run: Run) -> str:
    """'layer coverage (hooked / token time) 75.0 %' from the summary ('' when unknown)."""
    cov = run.summary().get("layer_coverage")
    if cov is None:
        return ""
    return f"{SUMMARY_LABELS['layer_coverage']} {100 * cov:.1f} %"


class RunFigures:
    """`run.figures`: one method per figure; `.all()` for every one that has data."""

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

    def _repr_html_(self) -> str:
        from .html import figures_html

        return figures_html(self.all())

    # -- figures ----------------------------------------------------------------------------------
    def power_timeline(self) -> go.Figure:
        """Power per rail and total over time, phases as shaded bands."""
        import plotly.graph_objects as go

        run = self.run
        pw = run.power_arrays()
        t_s = pw["t_ms"] / 1000.0
        fig = go.Figure()
        for col, color in RAIL_COLORS.items():
            if np.isfinite(pw[col]).any():
                fig.add_trace(go.Scatter(x=t_s, y=pw[col], name=col[:-2].upper(), mode="lines",
                                         line={"color": color, "width": 1.2}))  # fmt: skip
        fig.add_trace(go.Scatter(x=t_s, y=pw["total_w"], name="total", mode="lines",
                                 line={"color": "black", "width": 2}))  # fmt: skip
        for ph in run.phases():
            if ph["end_ms"] is None:
                continue
            fig.add_vrect(
                x0=ph["start_ms"] / 1000.0, x1=ph["end_ms"] / 1000.0, line_width=0,
                fillcolor=PHASE_COLORS.get(ph["name"], "rgba(0,0,0,0.08)"),
                annotation_text=ph["name"], annotation_position="top left",
            )  # fmt: skip
        if run.baseline_w is not None:
            fig.add_hline(y=run.baseline_w, line_dash="dot", annotation_text="idle baseline")
        return _layout(
            fig,
            f"Power over time (W, {energy_label(run)})",
            "time since start (s)",
            f"power (W, {run.power_info.get('kind', 'estimated')})",
        )

    def token_waterfall(self) -> go.Figure:
        """Energy of each token (bars, from E(t)) and the cumulative energy (line)."""
        import plotly.graph_objects as go

        run = self.run
        toks = run.tokens()
        kind = run.power_info.get("kind", "estimated")
        x = [t["index"] for t in toks]
        e = np.array(
            [np.nan if t["energy_j"] is None else t["energy_j"] for t in toks], dtype=float
        )
        fig = go.Figure()
        fig.add_trace(
            go.Bar(
                x=x, y=e, name=f"energy per token (J, {kind})",
                marker_color=["#d62728" if t["phase"] == "prefill" else "#1f77b4" for t in toks],
                customdata=[[t["text"], t["duration_ms"]] for t in toks],
                hovertemplate="token %{x} %{customdata[0]!r}<br>%{y:.4g} J in "
                "%{customdata[1]:.1f} ms<extra></extra>",
            )
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=x, y=np.nancumsum(e), name=f"cumulative (J, {kind})", yaxis="y2",
                       mode="lines+markers", line={"color": "black"})
        )  # fmt: skip
        fig.update_layout(
            yaxis2={"title": f"cumulative energy (J, {kind})", "overlaying": "y", "side": "right"}
        )
        return _layout(
            fig,
            f"Energy per token (J, {energy_label(run)}; first token includes prefill)",
            "token",
            f"energy (J, {kind})",
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
                agg = f"sum over all {arr.shape[0]} tokens, prefill included"
                cov = _coverage_note(run)
                if metric == "energy_j" and cov:
                    note = f"; {cov}, the rest is '{OUTSIDE_LAYERS}'"
            else:
                rows, agg = decode_rows(arr.shape[0])
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
            go.Heatmap(z=z, x=run.component_names, y=_layer_labels(run), colorscale="Viridis",
                       colorbar={"title": f"{name} ({unit})" if unit else name})
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed")
        return _layout(
            fig,
            f"{name} per layer x component ({unit + ', ' if unit else ''}{kind}{src}; {agg}{note})",
            "component",
            "layer",
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
        """
        import plotly.graph_objects as go

        run = self.run
        kind = str(run.power_info.get("kind", "estimated"))
        names = _layer_labels(run)
        ids: list[str] = []
        labels: list[str] = []
        parents: list[str] = []
        values: list[float] = []
        kinds: list[str] = []

        def add(id_: str, label: str, parent: str, value: float, k: str) -> None:
            ids.append(id_)
            labels.append(label)
            parents.append(parent)
            values.append(value)
            kinds.append(k)

        for ph, sp in self._phase_splits().items():
            add(ph, ph, "", sp.total_j, kind)
            for li, lname in enumerate(names):
                lid = f"{ph}/{lname}"
                add(lid, lname, ph, float(sp.cells[li].sum()), "modeled")
                for ci, cname in enumerate(run.component_names):
                    add(f"{lid}/{cname}", cname, lid, float(sp.cells[li, ci]), "modeled")
            add(f"{ph}/{OUTSIDE_LAYERS}", OUTSIDE_LAYERS, ph, sp.outside_j, "modeled")
            if sp.no_layers_j > 0:
                add(f"{ph}/{NO_LAYER_DATA}", NO_LAYER_DATA, ph, sp.no_layers_j, kind)
        fig = go.Figure(
            go.Treemap(ids=ids, labels=labels, parents=parents, values=values,
                       branchvalues="total", customdata=kinds,
                       hovertemplate="%{label}: %{value:.4g} J (%{customdata})<extra></extra>")
        )  # fmt: skip
        cov = _coverage_note(run)
        return _layout(
            fig,
            f"Energy by phase > layer > component (J; token energies {energy_label(run)}, "
            f"split by measured time: modeled{'; ' + cov if cov else ''}, "
            f"the rest '{OUTSIDE_LAYERS}')",
            None,
            None,
        )

    def sankey(self) -> go.Figure:
        """Energy flow: total -> phases -> (prefill, decode) -> layers and `outside layers`.

        The idle baseline is measured before the run and is not part of its total.
        """
        import plotly.graph_objects as go

        run = self.run
        kind = str(run.power_info.get("kind", "estimated"))
        names = _layer_labels(run)
        nodes: list[str] = []

        def node(name: str) -> int:
            if name not in nodes:
                nodes.append(name)
            return nodes.index(name)

        src, dst, val, note = [], [], [], []

        def link(a: str, b: str, value: float, k: str) -> None:
            src.append(node(a))
            dst.append(node(b))
            val.append(value)
            note.append(k)

        phases = [
            p
            for p in run.phases()
            if p["name"] != "baseline" and p["energy_j"] is not None and p["energy_j"] > 0
        ]
        total = sum(p["energy_j"] for p in phases)
        root = f"total {total:.3g} J ({kind})"
        node(root)
        for ph in phases:
            link(root, ph["name"], ph["energy_j"], kind)
        splits = self._phase_splits()
        for ph in phases:
            sp = splits.get(ph["name"])
            if sp is None or ph["name"] not in ("prefill", "decode"):
                continue
            for li, lname in enumerate(names):
                e = float(sp.cells[li].sum())
                if e > 0:
                    link(ph["name"], lname, e, "modeled")
            if sp.outside_j > 0:
                link(ph["name"], OUTSIDE_LAYERS, sp.outside_j, "modeled")
            if sp.no_layers_j > 0:
                link(ph["name"], NO_LAYER_DATA, sp.no_layers_j, kind)
            gap = ph["energy_j"] - sp.tokens_j
            if gap > 1e-9 * ph["energy_j"]:
                link(ph["name"], BETWEEN_TOKENS, gap, kind)
        fig = go.Figure(
            go.Sankey(
                node={"label": nodes, "pad": 12},
                link={"source": src, "target": dst, "value": val, "customdata": note,
                      "hovertemplate": "%{value:.4g} J (%{customdata})<extra></extra>"},
            )
        )  # fmt: skip
        cov = _coverage_note(run)
        return _layout(
            fig,
            f"Energy flow (J): total and phases {energy_label(run)}; layers and "
            f"'{OUTSIDE_LAYERS}' modeled{'; ' + cov if cov else ''}",
            None,
            None,
        )


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


def _layout(fig: Any, title: str, x: str | None, y: str | None) -> Any:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        margin={"l": 60, "r": 60, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_layout(yaxis_title_text=y)
    return fig
