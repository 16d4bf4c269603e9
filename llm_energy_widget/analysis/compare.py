"""Side-by-side comparison of runs: one table and a few figures on common axes.

Displayed, a comparison leads with the headline numbers (`HEADLINE`: decode J/token, prefill
J/prompt token, decode tokens/s, the prefill / decode / tail energies and the total, each column
with its kind), its runs labelled by what differs between them (model, prompt, level, power
source, settings), then its figures, each a full-size output. The table keeps the summary's keys;
the text, the HTML and the figures show them by their `core.schema` names (`decode J/token`, …).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.jsonsafe import none_if_nan
from ..core.schema import SUMMARY_LABELS
from ..errors import InvalidInputError
from ..run import Run
from ..view.text import esc, fmt_sig, kind_text, layer_label
from .figures import MAX_LINE_POINTS, PHASE_COLORS, _envelope, decode_rows
from .names import summary_name, summary_unit
from .theme import PALETTE, compact, style

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..store import Store

__all__ = [
    "HEADLINE",
    "NOT_IN_LABELS",
    "PROMPT_CHARS",
    "SETTING_ORDER",
    "TABLE_COLUMNS",
    "TEXT_COLUMNS",
    "TIMING_KEYS",
    "Comparison",
    "compare",
    "run_labels",
]

TABLE_COLUMNS = (
    "label", "run_id", "model", "status", "level", "max_new_tokens", "input_tokens",
    "output_tokens", "batch_size", "dtype", "quantization", "device", "decode_j_per_token",
    "prefill_j_per_prompt_token", "decode_tokens_per_s", "tokens_per_s", "ttft_ms",
    "total_energy_j", "net_energy_j", "net_energy_reliable", "prefill_energy_j",
    "decode_energy_j", "tail_energy_j", "prefill_share", "decode_share", "avg_power_w",
    "layer_coverage", "duration_ms", "energy_kind", "energy_scope", "energy_source",
    "energy_resolution_ms",
)  # fmt: skip
TEXT_COLUMNS = (
    "label", "run_id", "status", "quantization", "decode_j_per_token", "prefill_j_per_prompt_token",
    "decode_tokens_per_s", "prefill_energy_j", "decode_energy_j", "tail_energy_j",
    "total_energy_j", "energy_kind", "energy_scope",
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


PROMPT_CHARS = 28
"""A prompt in a run label is cut to this many characters (after the prefix all prompts share)."""
SETTING_ORDER = (
    "max_new_tokens", "input_tokens", "batch_size", "dtype", "device", "do_sample",
    "temperature", "top_p", "top_k", "num_beams", "repetition_penalty",
)  # fmt: skip
"""Settings in labels come in this order, the rest alphabetically after them."""
NOT_IN_LABELS = frozenset(
    {"generate_kwargs", "sweep_point", "price_per_kwh", "carbon_g_per_kwh", "pad_token_id",
     "eos_token_id", "streamer", "interval_ms", "baseline_s", "prompt_sent"}
)  # fmt: skip
"""Keys that do not tell runs apart for a reader (bookkeeping, prices, the poll rhythm; the
prompt as sent through the chat template repeats the prompt, which labels already show)."""


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _facets(r: Run) -> dict[str, Any]:
    """What a run was: its model, prompt, level, power source and every scalar setting."""
    name = r.model.get("name")
    f: dict[str, Any] = {
        "model": str(name).rstrip("/").rsplit("/", 1)[-1] if name else None,
        "prompt": r.prompt,
        "level": r.level,
        "power": r.power_info.get("source"),
    }
    for k, v in (r.settings.get("generate_kwargs") or {}).items():
        if k not in NOT_IN_LABELS and _scalar(v):
            f[k] = v
    for k, v in r.settings.items():
        if k not in NOT_IN_LABELS and _scalar(v) and v is not None:
            f[k] = v
    return f


def _setting_rank(key: str) -> tuple[int, str]:
    return (SETTING_ORDER.index(key) if key in SETTING_ORDER else len(SETTING_ORDER), key)


def _shared_rank(key: str) -> tuple[int, int, str]:
    """What all runs share, in the caption: model, level, power source, then the settings."""
    first = ("model", "level", "power")
    return (0, first.index(key), key) if key in first else (1, *_setting_rank(key))


def _prompt_parts(prompts: Sequence[str]) -> list[str]:
    """Each prompt shortened to what tells it apart: the shared prefix dropped (at a word
    boundary), the rest cut to PROMPT_CHARS (at a word boundary where one is near)."""
    texts = [" ".join(str(p).split()) for p in prompts]
    common = os.path.commonprefix(texts)  # noqa: RUF071 (characters are what is meant)
    cut = common.rfind(" ") + 1 if len(set(texts)) > 1 else 0
    out = []
    for t in texts:
        rest = t[cut:]
        short = rest
        if len(rest) > PROMPT_CHARS:
            cut_at = rest[: PROMPT_CHARS - 1]
            word = cut_at.rfind(" ")
            short = (cut_at[:word] if word > PROMPT_CHARS // 2 else cut_at).rstrip() + "…"
        out.append(f"prompt “{'…' if cut else ''}{short}”")
    return out


def run_labels(runs: Sequence[Run]) -> tuple[list[str], dict[str, Any]]:
    """Each run's label from what differs between the runs, and what they all share.

    The model, the prompt, the level, the power source and the settings that vary make the
    label ("SmolLM2-135M-Instruct · max_new_tokens=16"); runs alike in all of them are told
    apart by their order and id ("run 2 · 3f2a9c").
    """
    fs = [_facets(r) for r in runs]
    keys = {k for f in fs for k in f}
    varying = {k for k in keys if len({repr(f.get(k)) for f in fs}) > 1}
    shared = {k: fs[0].get(k) for k in keys - varying if fs and fs[0].get(k) is not None}
    prompts = _prompt_parts([f.get("prompt") or "" for f in fs]) if "prompt" in varying else None
    settings = sorted(varying - {"model", "prompt", "level", "power"}, key=_setting_rank)
    labels = []
    for i, f in enumerate(fs):
        parts: list[str] = []
        if "model" in varying:
            parts.append(str(f.get("model")))
        if prompts is not None:
            parts.append(prompts[i])
        for k in ("level", "power"):
            if k in varying:
                parts.append(f"{k}={f.get(k)}")
        parts += [f"{k}={f.get(k)}" for k in settings]
        labels.append(" · ".join(parts))
    if len(set(labels)) < len(labels):
        labels = [
            " · ".join(p for p in (lab, f"run {i + 1}", r.run_id[:6]) if p)
            for i, (lab, r) in enumerate(zip(labels, runs, strict=True))
        ]
    shared.pop("prompt", None)
    return labels, shared


HEADLINE = (
    "decode_j_per_token", "prefill_j_per_prompt_token", "decode_tokens_per_s",
    "prefill_energy_j", "decode_energy_j", "tail_energy_j", "total_energy_j",
)  # fmt: skip
"""The columns `compare()` leads with, in this order; `.table` has the rest."""
TIMING_KEYS = frozenset({"decode_tokens_per_s", "tokens_per_s", "ttft_ms", "duration_ms"})
"""Headline numbers measured by the clock whatever the power source (the rest are energies)."""


class Comparison:
    """`.table` (one row per run), `.figures` (plotly), rich display in notebooks.

    Displayed, it leads with the headline numbers of each run (names from
    `core.schema.SUMMARY_LABELS`, each column with its kind), then shows every figure as its own
    full-size output (`analysis.html`).
    """

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self.labels, self.shared = run_labels(self.runs)
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
        # set by sweep(): the failed and the skipped points (index, point, error or reason)
        self.failures: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []

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
                    "quantization": r.settings.get("quantization"),
                    "device": r.settings.get("device"),
                    **{k: s.get(k) for k in TABLE_COLUMNS if k in s and k != "input_tokens"},
                    "prefill_share": pe / both if pe is not None and both > 0 else None,
                    "decode_share": de / both if de is not None and both > 0 else None,
                }
            )
        df = pd.DataFrame(rows)
        quant = [q if isinstance(q, str) else "none" for q in df["quantization"]]
        if len(set(quant)) <= 1:
            df = df.drop(columns="quantization")  # a column only where it tells runs apart
        else:
            df["quantization"] = quant
        return df[[c for c in TABLE_COLUMNS if c in df.columns]]

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready dicts (NaN -> None)."""
        out = []
        for rec in self.table.to_dict(orient="records"):
            out.append(
                {str(k): _py(none_if_nan(v) if isinstance(v, float) else v) for k, v in rec.items()}
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
        """name -> figure: efficiency, phase_split, power, layer_energy (when layers exist)."""
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

    def _plot_labels(self) -> list[str]:
        return [_plot_text(label) for label in self.labels]

    def _bars_height(self) -> int:
        return int(min(max(150 + 34 * len(self.runs), 300), 900))

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
            shared_yaxes=True,
            horizontal_spacing=0.04,
            subplot_titles=[f"{SUMMARY_LABELS[k]} ({kind.split(',')[0]})" for k, kind in panels],
        )
        for col, (key, _) in enumerate(panels, start=1):
            x = t[key] if key in t.columns else [None] * len(t)
            fig.add_trace(
                go.Bar(
                    y=self._plot_labels(), x=compact(x), orientation="h",
                    name=SUMMARY_LABELS[key], marker_color=PALETTE[col - 1],
                    marker_line_width=0, customdata=list(t["run_id"]),
                    hovertemplate=f"%{{y}}<br>{SUMMARY_LABELS[key]}: %{{x:.4g}}"
                    "<br>run %{customdata}<extra></extra>",
                ),
                1, col,
            )  # fmt: skip
            fig.update_xaxes(title_text=SUMMARY_LABELS[key], rangemode="tozero", row=1, col=col)
        fig.update_yaxes(autorange="reversed", showgrid=False)
        fig.update_layout(showlegend=False)
        fig.update_annotations(font={"size": 12})
        return style(
            fig,
            "Efficiency per run",
            f"energy {self._kind()}; decode tokens/s measured",
            height_px=self._bars_height() + 24,
            legend_below=False,
            extra_top_px=24,
        )

    def phase_split_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        t = self.table
        fig = go.Figure()
        for col, name in (
            ("prefill_energy_j", "prefill"),
            ("decode_energy_j", "decode"),
            ("tail_energy_j", "tail"),
        ):
            if col in t.columns and t[col].notna().any():
                fig.add_trace(
                    go.Bar(
                        y=self._plot_labels(), x=compact(t[col]), name=name, orientation="h",
                        marker_color=PHASE_COLORS.get(name), marker_line_width=0,
                        hovertemplate=f"%{{y}}<br>{name}: %{{x:.4g}} J<extra></extra>",
                    )
                )  # fmt: skip
        fig.update_layout(barmode="stack")
        fig.update_yaxes(autorange="reversed", showgrid=False)
        return style(
            fig,
            "Prefill vs decode energy",
            f"J, {self._kind()}; tail: after the last token",
            height_px=self._bars_height() + 40,
            x=f"energy (J, {self._kind().split(',')[0]})",
        )

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
            rows, how = decode_rows(arr)
            per_layer = np.nansum(arr[rows, :, :, ei], axis=(0, 2)) / max(len(rows), 1)
            fig.add_trace(
                go.Scatter(x=[layer_label(n) for n in r.layer_names], y=compact(per_layer),
                           name=_plot_text(f"{label} ({how})"), mode="lines+markers",
                           text=r.layer_names,
                           hovertemplate="%{x} (%{text}): %{y:.4g} J<extra></extra>")
            )  # fmt: skip
        return style(
            fig,
            "Energy per layer, mean over decode tokens (prefill excluded)",
            f"J, modeled: {self._kind()} split by measured time",
            height_px=420,
            x="layer",
            y="energy per decode token (J, modeled)",
        )

    def power_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        reduced = False
        for label, r in zip(self.labels, self.runs, strict=True):
            pw = r.power_arrays()
            t0 = next((p["start_ms"] for p in r.phases() if p["name"] == "prefill"), None)
            if t0 is None:
                t0 = float(pw["t_ms"][0]) if pw["t_ms"].size else 0.0
            t_s = (pw["t_ms"] - t0) / 1000.0
            tt, yy = _envelope(t_s, pw["total_w"], MAX_LINE_POINTS)
            reduced = reduced or tt.size < t_s.size
            fig.add_trace(
                go.Scatter(x=compact(tt, 6), y=compact(yy), name=_plot_text(label), mode="lines",
                           hovertemplate="%{x:.3f} s: %{y:.4g} W<extra></extra>")
            )  # fmt: skip
        drawn = f"; lines drawn from <= {MAX_LINE_POINTS} points (min/max per bucket)"
        return style(
            fig,
            "Total power over time, aligned at prefill start",
            f"W, {self._kind()}{drawn if reduced else ''}",
            height_px=420,
            x="time since prefill start (s)",
            y=f"power (W, {self._kind().split(',')[0]})",
        )

    # -- display ----------------------------------------------------------------------------------
    def headline_html(self) -> str:
        """The headline numbers of every run, each column with its kind, as an HTML table."""
        t = self.table
        kinds = [str(r.power_info.get("kind", "estimated")) for r in self.runs]
        uniform = kinds[0] if len(set(kinds)) == 1 else None
        cols = [k for k in HEADLINE if k in t.columns]

        def kind_of(key: str) -> str:
            if key in TIMING_KEYS:
                return "measured"
            return uniform if uniform is not None else "kind per run →"

        def sub_of(key: str) -> str:
            unit = summary_unit(key)
            return f"{unit} · {kind_of(key)}" if unit else kind_of(key)

        head = "".join(f"<th>{html.escape(SUMMARY_LABELS[k])}</th>" for k in cols)
        sub = "".join(f'<th style="{_SUB}">{html.escape(sub_of(k))}</th>' for k in cols)
        share = "prefill share (of prefill + decode)"
        body = []
        for i, (label, r) in enumerate(zip(self.labels, self.runs, strict=True)):
            row = t.iloc[i]
            cells = "".join(f'<td style="{_NUM}">{_fmt(row.get(k))}</td>' for k in cols)
            sh = none_if_nan(row.get("prefill_share"))
            share_cell = "–" if sh is None else f"{100 * sh:.0f} %"
            info = r.power_info
            kind = kind_text(info.get("kind", "estimated"), info.get("scope"))
            body.append(
                f'<tr><td style="text-align:left" title="run {html.escape(r.run_id)}">'
                f"{html.escape(label)}</td>{cells}"
                f'<td style="{_NUM}">{share_cell}</td>'
                f'<td style="text-align:left">{html.escape(kind)} '
                f"({html.escape(str(info.get('source', 'unknown')))})</td></tr>"
            )
        shared = ", ".join(
            f"{k} {v}" if k in ("model", "level", "power") else f"{k}={v}"
            for k, v in sorted(self.shared.items(), key=lambda kv: _shared_rank(kv[0]))
            if k in ("model", "level", "power", *SETTING_ORDER)
        )
        caption = f"compare(): {len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"
        if self.experiment:
            caption += f", experiment {self.experiment}"
        if shared:
            caption += f"; all share {shared}"
        notes = "".join(
            f'<p style="margin:0.3em 0"><b>note:</b> {html.escape(n)}</p>' for n in self.notes
        )
        return (
            f'<div class="lew-compare"><p style="margin:0 0 0.4em 0">{html.escape(caption)}</p>'
            f'<table><thead><tr><th style="text-align:left">run</th>{head}'
            f'<th>{html.escape(share)}</th><th style="text-align:left">energy kind</th></tr>'
            f'<tr><th></th>{sub}<th style="{_SUB}">{html.escape(kind_of("prefill_energy_j"))}'
            f"</th><th></th></tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
            '<p style="margin:0.4em 0 0 0;opacity:0.75">every column: <code>.table</code>; '
            "the figures: <code>.figures</code></p></div>"
        )

    def to_html(self, include_plotlyjs: bool = True) -> str:
        """Headline table and figures as one HTML fragment (plotly.js inline once: offline)."""
        from .html import figures_html

        return self.headline_html() + figures_html(
            list(self.figures.values()), include_plotlyjs=include_plotlyjs
        )

    def _ipython_display_(self) -> None:
        """The headline table, then each figure as its own full-size output."""
        from IPython.display import display

        from .html import display_figures

        display({"text/html": self.headline_html(), "text/plain": repr(self)}, raw=True)
        display_figures(list(self.figures.values()))

    def widget(self) -> Any:
        """An ipywidgets Tab of plotly FigureWidgets (live kernel only; see `to_html` otherwise)."""
        import ipywidgets as widgets
        import plotly.graph_objects as go

        names = list(self.figures)
        table = widgets.HTML(self.headline_html())
        tabs = widgets.Tab(children=[go.FigureWidget(self.figures[n]) for n in names])
        for i, n in enumerate(names):
            tabs.set_title(i, n.replace("_", " "))
        return widgets.VBox([table, tabs])


def _plot_text(text: str) -> str:
    """A run label as plotly text: plotly reads tags in it ('<b>' in a prompt would turn bold),
    and shows entities as the characters they stand for."""
    return html.escape(text, quote=False)


_NUM = "text-align:right;font-variant-numeric:tabular-nums"
_SUB = "font-weight:normal;font-size:85%;opacity:0.75;white-space:nowrap"


def _fmt(v: Any) -> str:
    if isinstance(v, (int, float, np.floating, np.integer)):
        return fmt_sig(float(v), digits=4)
    return fmt_sig(v) if v is None else esc(v)


def _py(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


def compare(runs: Any, store: Store | None = None) -> Comparison:
    """Compare runs given as Run objects, run dicts, ids (or unique prefixes) or a Store.runs()
    DataFrame; ids are loaded from `store` (default: the default store)."""
    return Comparison(_resolve(runs, store))
