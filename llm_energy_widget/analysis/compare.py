"""Side-by-side comparison of runs: one table and a few figures on common axes.

The headline columns are `decode_j_per_token`, `prefill_j_per_prompt_token` and
`decode_tokens_per_s`; the table keeps the summary's keys, the text, the HTML and the figures show
them by their `core.schema` names (`decode J/token`, …).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.schema import SUMMARY_LABELS
from ..errors import InvalidInputError
from ..run import Run
from .figures import decode_rows
from .names import layer_label, summary_name

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..store import Store

TABLE_COLUMNS = (
    "label", "run_id", "model", "status", "level", "max_new_tokens", "input_tokens",
    "output_tokens", "batch_size", "dtype", "device", "decode_j_per_token",
    "prefill_j_per_prompt_token", "decode_tokens_per_s", "tokens_per_s", "ttft_ms",
    "total_energy_j", "net_energy_j", "net_energy_reliable", "prefill_energy_j",
    "decode_energy_j", "tail_energy_j", "prefill_share", "decode_share", "avg_power_w",
    "layer_coverage", "duration_ms", "energy_kind", "energy_scope", "energy_source",
    "energy_resolution_ms",
)  # fmt: skip
TEXT_COLUMNS = (
    "label", "run_id", "status", "output_tokens", "decode_j_per_token",
    "prefill_j_per_prompt_token", "decode_tokens_per_s", "ttft_ms", "total_energy_j",
    "prefill_share", "energy_kind",
)  # fmt: skip


def _resolve(runs: Any, store: Store | None) -> list[Run]:
    import pandas as pd

    if isinstance(runs, (Run, str)):
        runs = [runs]
    if isinstance(runs, pd.DataFrame):  # e.g. Store.runs(experiment=...)
        if "run_id" not in runs.columns:
            raise InvalidInputError("a DataFrame of runs needs a run_id column (Store.runs())")
        runs = list(runs["run_id"])
    if not isinstance(runs, Iterable):
        raise InvalidInputError(f"compare needs runs or run ids, got {type(runs).__name__}")
    out: list[Run] = []
    for r in runs:
        if isinstance(r, Run):
            out.append(r)
        elif isinstance(r, dict) and "run_id" in r:
            out.append(Run.from_dict(r))
        elif isinstance(r, str):
            if store is None:
                from ..store import default_store

                store = default_store()
            out.append(store.load(r))
        else:
            raise InvalidInputError(
                f"compare takes Run objects, run dicts or run ids; got {type(r).__name__}"
            )
    if not out:
        raise InvalidInputError("compare needs at least one run")
    return out


def _labels(runs: Sequence[Run]) -> list[str]:
    """Short labels from what differs between the runs (settings, model, level)."""

    def facets(r: Run) -> dict[str, Any]:
        f: dict[str, Any] = {"model": r.model.get("name"), "level": r.level}
        for k in ("max_new_tokens", "batch_size", "dtype", "device", "input_tokens"):
            if r.settings.get(k) is not None:
                f[k] = r.settings[k]
        for k, v in (r.settings.get("generate_kwargs") or {}).items():
            if k not in ("max_new_tokens", "pad_token_id") and isinstance(v, (int, float, str)):
                f[k] = v
        return f

    fs = [facets(r) for r in runs]
    keys = sorted({k for f in fs for k in f})
    varying = [k for k in keys if len({repr(f.get(k)) for f in fs}) > 1]
    labels = []
    for r, f in zip(runs, fs, strict=True):
        parts = [f"{k}={f.get(k)}" for k in varying if k != "model"]
        if "model" in varying:
            parts.insert(0, str(f.get("model")).rsplit("/", 1)[-1])
        labels.append(" ".join(parts) or r.run_id[:8])
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{r.run_id[:6]}]" for lab, r in zip(labels, runs, strict=True)]
    return labels


class Comparison:
    """`.table` (one row per run), `.figures` (plotly), rich display in notebooks."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self.labels = _labels(self.runs)
        self.table = self._table()
        kinds = {r.power_info.get("kind") for r in self.runs}
        sources = {r.power_info.get("source") for r in self.runs}
        self.notes: list[str] = []
        if len(kinds) > 1 or len(sources) > 1:
            self.notes.append(
                f"runs mix power sources/kinds ({', '.join(map(str, sorted(map(str, sources))))}"
                f"; {', '.join(sorted(map(str, kinds)))}): their energies are not comparable"
            )
        for r in self.runs:
            if r.status != "completed":
                self.notes.append(f"run {r.run_id} is {r.status}: its figures cover part of it")
        self._figures: dict[str, go.Figure] | None = None
        self.experiment: str | None = None  # set by sweep()

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.runs)} runs>\n{self.to_text()}"

    def _table(self) -> pd.DataFrame:
        import pandas as pd

        rows = []
        for label, r in zip(self.labels, self.runs, strict=True):
            s = r.summary()
            pe, de = s.get("prefill_energy_j"), s.get("decode_energy_j")
            both = (pe or 0.0) + (de or 0.0)
            rows.append(
                {
                    "label": label,
                    "run_id": r.run_id,
                    "model": r.model.get("name"),
                    "status": r.status,
                    "level": r.level,
                    "max_new_tokens": r.settings.get("max_new_tokens"),
                    "input_tokens": s.get("input_tokens"),
                    "output_tokens": s.get("output_tokens"),
                    "batch_size": r.settings.get("batch_size"),
                    "dtype": r.settings.get("dtype"),
                    "device": r.settings.get("device"),
                    **{k: s.get(k) for k in TABLE_COLUMNS if k in s and k != "input_tokens"},
                    "prefill_share": pe / both if pe is not None and both > 0 else None,
                    "decode_share": de / both if de is not None and both > 0 else None,
                }
            )
        df = pd.DataFrame(rows)
        return df[[c for c in TABLE_COLUMNS if c in df.columns]]

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready dicts (NaN -> None)."""
        out = []
        for rec in self.table.to_dict(orient="records"):
            out.append(
                {
                    str(k): None if isinstance(v, float) and math.isnan(v) else _py(v)
                    for k, v in rec.items()
                }
            )
        return out

    def _named(self, df: pd.DataFrame) -> pd.DataFrame:
        """The table with its summary columns headed by their names ('decode J/token')."""
        return df.rename(columns={c: summary_name(c) for c in df.columns})

    def to_text(self) -> str:
        df = self.table[[c for c in TEXT_COLUMNS if c in self.table.columns]]
        text = self._named(df).to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return "\n".join([text, *(f"note: {n}" for n in self.notes)])

    # -- figures ----------------------------------------------------------------------------------
    @property
    def figures(self) -> dict[str, go.Figure]:
        """name -> figure: efficiency, phase_split, layer_energy, power."""
        if self._figures is None:
            figs = {
                "efficiency": self.efficiency_figure(),
                "phase_split": self.phase_split_figure(),
                "power": self.power_figure(),
            }
            if any(r.layers.size for r in self.runs):
                figs["layer_energy"] = self.layer_energy_figure()
            self._figures = figs
        return self._figures

    def _kind(self) -> str:
        kinds = sorted({str(r.power_info.get("kind", "estimated")) for r in self.runs})
        sources = sorted({str(r.power_info.get("source", "unknown")) for r in self.runs})
        return f"{'/'.join(kinds)}, source {'/'.join(sources)}"

    def efficiency_figure(self) -> go.Figure:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        t = self.table
        panels = (
            ("decode_j_per_token", self._kind()),
            ("prefill_j_per_prompt_token", self._kind()),
            ("decode_tokens_per_s", "measured"),
        )
        fig = make_subplots(
            rows=1,
            cols=len(panels),
            subplot_titles=[f"{SUMMARY_LABELS[k]} ({kind})" for k, kind in panels],
        )
        for col, (key, _) in enumerate(panels, start=1):
            y = t[key] if key in t.columns else [None] * len(t)
            fig.add_trace(go.Bar(x=t["label"], y=y, name=SUMMARY_LABELS[key]), 1, col)
            fig.update_yaxes(title_text=SUMMARY_LABELS[key], row=1, col=col)
        fig.update_layout(showlegend=False)
        return _style(fig, f"Efficiency per run (energy {self._kind()})")

    def phase_split_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        t = self.table
        fig = go.Figure()
        for col, name, color in (
            ("prefill_energy_j", "prefill", "#d62728"),
            ("decode_energy_j", "decode", "#1f77b4"),
            ("tail_energy_j", "tail", "#9467bd"),
        ):
            if col in t.columns and t[col].notna().any():
                fig.add_trace(go.Bar(x=t["label"], y=t[col], name=name, marker_color=color))
        fig.update_layout(barmode="stack", yaxis_title=f"energy (J, {self._kind()})")
        return _style(fig, f"Prefill vs decode energy (J, {self._kind()})")

    def layer_energy_figure(self) -> go.Figure:
        """Each layer's modeled energy per decode token (the prefill token excluded: it runs the
        whole prompt, and prompts differ between runs)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for label, r in zip(self.labels, self.runs, strict=True):
            arr = r.layers
            if arr.size == 0 or "energy_j" not in r.metric_names:
                continue
            ei = r.metric_names.index("energy_j")
            rows, how = decode_rows(arr.shape[0])
            per_layer = np.nansum(arr[rows, :, :, ei], axis=(0, 2)) / max(len(rows), 1)
            fig.add_trace(
                go.Scatter(x=[layer_label(n) for n in r.layer_names], y=per_layer,
                           name=f"{label} ({how})", mode="lines+markers", text=r.layer_names)
            )  # fmt: skip
        fig.update_layout(xaxis_title="layer", yaxis_title="energy per decode token (J, modeled)")
        return _style(
            fig,
            f"Energy per layer, mean over decode tokens (prefill excluded) "
            f"(J, modeled: {self._kind()} split by measured time)",
        )

    def power_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        for label, r in zip(self.labels, self.runs, strict=True):
            pw = r.power_arrays()
            t0 = next((p["start_ms"] for p in r.phases() if p["name"] == "prefill"), None)
            if t0 is None:
                t0 = float(pw["t_ms"][0]) if pw["t_ms"].size else 0.0
            fig.add_trace(
                go.Scatter(x=(pw["t_ms"] - t0) / 1000.0, y=pw["total_w"], name=label, mode="lines")
            )
        fig.update_layout(
            xaxis_title="time since prefill start (s)", yaxis_title=f"power (W, {self._kind()})"
        )
        return _style(fig, f"Total power over time, aligned at prefill start (W, {self._kind()})")

    # -- display ----------------------------------------------------------------------------------
    def _table_html(self) -> str:
        notes = "".join(f"<p><b>note:</b> {html.escape(n)}</p>" for n in self.notes)
        table = self._named(self.table)
        return table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–") + notes

    def to_html(self, include_plotlyjs: bool | str = True) -> str:
        """Table and figures as one HTML fragment (plotly.js inline once: renders offline)."""
        from .html import figures_html

        return self._table_html() + figures_html(
            list(self.figures.values()), include_plotlyjs=include_plotlyjs
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": self.to_html()}

    def widget(self) -> Any:
        """An ipywidgets Tab of plotly FigureWidgets (live kernel only; see `to_html` otherwise)."""
        import ipywidgets as widgets
        import plotly.graph_objects as go

        names = list(self.figures)
        table = widgets.HTML(self._table_html())
        tabs = widgets.Tab(children=[go.FigureWidget(self.figures[n]) for n in names])
        for i, n in enumerate(names):
            tabs.set_title(i, n.replace("_", " "))
        return widgets.VBox([table, tabs])


def _py(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


def _style(fig: Any, title: str) -> Any:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        margin={"l": 60, "r": 30, "t": 70, "b": 60},
    )
    return fig


def compare(runs: Any, store: Store | None = None) -> Comparison:
    """Compare runs given as Run objects, run dicts, ids (or unique prefixes) or a Store.runs()
    DataFrame; ids are loaded from `store` (default: the default store)."""
    return Comparison(_resolve(runs, store))
