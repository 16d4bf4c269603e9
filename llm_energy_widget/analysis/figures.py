"""Plotly figures of one run; every title says the unit, the kind and the source of its numbers.

They are plain `go.Figure`s: JupyterLab (plotly's bundled extension), VS Code (plotly mimetype) and
exported HTML (`fig.to_html()` or nbconvert with the notebook renderer) all render them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..run import Run

PHASE_COLORS = {
    "baseline": "rgba(150,150,150,0.18)",
    "tokenize": "rgba(255,196,0,0.18)",
    "to_device": "rgba(255,140,0,0.18)",
    "prefill": "rgba(220,60,60,0.16)",
    "decode": "rgba(40,120,220,0.14)",
    "detokenize": "rgba(120,200,80,0.18)",
}
RAIL_COLORS = {"cpu_w": "#1f77b4", "gpu_w": "#2ca02c", "ane_w": "#9467bd", "dram_w": "#8c564b"}
SUM_METRICS = ("time_ms", "energy_j")  # summed over tokens; activation statistics are averaged


def energy_label(run: Run) -> str:
    """'estimated, source estimate, resolution 100 ms' for titles."""
    info = run.power_info
    res = info.get("resolution_ms") or info.get("interval_ms")
    res_s = f", resolution {res:g} ms" if isinstance(res, (int, float)) else ""
    return f"{info.get('kind', 'estimated')}, source {info.get('source', 'unknown')}{res_s}"


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
        """Layers x components for one metric: one token, or all tokens (sum or mean)."""
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
        if token is None:
            agg = "sum over tokens" if metric in SUM_METRICS else "mean over tokens"
            with np.errstate(all="ignore"):
                z = (np.nansum if metric in SUM_METRICS else np.nanmean)(arr[:, :, :, m], axis=0)
        else:
            if not -arr.shape[0] <= token < arr.shape[0]:
                raise InvalidInputError(f"token must be in [0, {arr.shape[0]}); got {token}")
            z, agg = arr[token, :, :, m], f"token {token}"
        kind = run.labels().get(f"layers.{metric}", run.labels()["layers.activations"])
        unit = {"time_ms": "ms", "energy_j": "J"}.get(metric, "")
        src = (
            f", from {energy_label(run)} energy split by measured time"
            if metric == "energy_j"
            else ""
        )
        fig = go.Figure(
            go.Heatmap(z=z, x=run.component_names, y=run.layer_names, colorscale="Viridis",
                       colorbar={"title": f"{metric} ({unit or 'value'})"})
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed")
        return _layout(
            fig,
            f"{metric} per layer x component ({unit + ', ' if unit else ''}{kind}{src}; {agg})",
            "component",
            "layer",
        )

    def _phase_layer_energy(self) -> dict[str, np.ndarray]:
        """phase -> [layers, components] modeled energy (J) of the tokens in that phase."""
        run = self.run
        arr = run.layers
        if arr.size == 0 or "energy_j" not in run.metric_names:
            return {}
        ei = run.metric_names.index("energy_j")
        out: dict[str, np.ndarray] = {}
        toks = run.tokens()
        for i in range(min(arr.shape[0], len(toks))):
            ph = toks[i]["phase"]
            cell = np.nan_to_num(arr[i, :, :, ei].astype(np.float64))
            out[ph] = out[ph] + cell if ph in out else cell
        return out

    def treemap(self) -> go.Figure:
        """Phase > layer > component energy (component energy is modeled)."""
        import plotly.graph_objects as go

        run = self.run
        ids, labels, parents, values = [], [], [], []
        for ph, cells in self._phase_layer_energy().items():
            ids.append(ph)
            labels.append(ph)
            parents.append("")
            values.append(float(cells.sum()))
            for li, lname in enumerate(run.layer_names):
                lid = f"{ph}/{lname}"
                ids.append(lid)
                labels.append(lname)
                parents.append(ph)
                values.append(float(cells[li].sum()))
                for ci, cname in enumerate(run.component_names):
                    ids.append(f"{lid}/{cname}")
                    labels.append(cname)
                    parents.append(lid)
                    values.append(float(cells[li, ci]))
        fig = go.Figure(
            go.Treemap(ids=ids, labels=labels, parents=parents, values=values,
                       branchvalues="total", hovertemplate="%{label}: %{value:.4g} J (modeled)"
                       "<extra></extra>")
        )  # fmt: skip
        return _layout(
            fig,
            f"Energy by phase > layer > component (J; phase totals {energy_label(run)}, "
            "split by measured time: modeled)",
            None,
            None,
        )

    def sankey(self) -> go.Figure:
        """Energy flow: total -> phases -> (prefill, decode) -> layers."""
        import plotly.graph_objects as go

        run = self.run
        kind = run.power_info.get("kind", "estimated")
        nodes: list[str] = []

        def node(name: str) -> int:
            if name not in nodes:
                nodes.append(name)
            return nodes.index(name)

        src, dst, val, note = [], [], [], []
        phases = [p for p in run.phases() if p["energy_j"] is not None and p["energy_j"] > 0]
        total = sum(p["energy_j"] for p in phases)
        root = node(f"total {total:.3g} J ({kind})")
        for ph in phases:
            src.append(root)
            dst.append(node(ph["name"]))
            val.append(ph["energy_j"])
            note.append(kind)
        layer_e = self._phase_layer_energy()
        for ph in phases:
            cells = layer_e.get(ph["name"])
            if cells is None or ph["name"] not in ("prefill", "decode"):
                continue
            in_layers = 0.0
            for li, lname in enumerate(run.layer_names):
                e = float(cells[li].sum())
                if e > 0:
                    src.append(node(ph["name"]))
                    dst.append(node(lname))
                    val.append(e)
                    note.append("modeled")
                    in_layers += e
            rest = ph["energy_j"] - in_layers
            if rest > 1e-12:
                src.append(node(ph["name"]))
                dst.append(node("outside hooked layers"))
                val.append(rest)
                note.append(kind)
        fig = go.Figure(
            go.Sankey(
                node={"label": nodes, "pad": 12},
                link={"source": src, "target": dst, "value": val, "customdata": note,
                      "hovertemplate": "%{value:.4g} J (%{customdata})<extra></extra>"},
            )
        )  # fmt: skip
        return _layout(
            fig,
            f"Energy flow (J): total and phases {energy_label(run)}; layers modeled",
            None,
            None,
        )


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
