"""A run as one PNG, drawn in the kernel: the power curve with its phases, the layer x component
heatmap, and the headline figures with their kinds.

Why in the kernel: a notebook executed headless (`make demo`, `jupyter nbconvert --execute`,
papermill) is never rendered by a browser, and GitHub, nbviewer and many viewers show only
`image/png`, text and sanitized HTML. The image is what every one of them can show.

matplotlib's Agg canvas is used directly (no pyplot): nothing touches the user's backend or global
figure state, and it works on any thread. The image is quantized to a small palette, which keeps
a run's image around 20-40 KB: every output of a run carries it (twice: as `image/png` and inside
the HTML), so its size is most of a saved notebook's size.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS
from ..core.schema import METRIC_LABELS, SUMMARY_LABELS
from ..power.record import RAILS
from .palette import CATEGORICAL, NEUTRAL, PHASE_COLORS, RAIL_COLORS, matplotlib_stops
from .static import (
    mean_rows,
    source_line,
    summary_rows,
)
from .text import fmt_energy, fmt_pct, kind_text, short_layer

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["HEADLINE_KEYS", "header_lines", "headline_figures", "render_png"]

WIDTH_PX = 860
HEIGHT_PX = 560
POWER_ONLY_HEIGHT_PX = 330
LEFT_PX = 130  # room for the longest component name on the heatmap's rows
DPI = 100
PALETTE_COLORS = 64
"""Enough for the viridis ramp, the rails and antialiased text; a full-colour PNG is ~3x larger."""

LOG_COLOUR_RATIO = 20.0
"""A heatmap spanning more than this (max / min cell) is coloured on a log scale: one large
component (attention) would otherwise leave every other cell the same dark colour."""

HEADLINE_KEYS = ("decode_j_per_token", "total_energy_j", "avg_power_w", "decode_tokens_per_s")
"""The figures printed in the image's header (every one with its kind)."""

_LOCK = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe


def headline_figures(run: Run) -> list[tuple[str, str, str]]:
    """(name, value, kind) of the figures the image prints, from `static_render.summary_rows`."""
    wanted = {SUMMARY_LABELS[k] for k in HEADLINE_KEYS}
    return [r for r in summary_rows(run) if r[0] in wanted]


def _mean_time(run: Run) -> tuple[np.ndarray, str] | None:
    """Mean measured time per token [layers, components] over the decode tokens, and its name."""
    if run.layers.size == 0 or "time_ms" not in run.metric_names:
        return None
    rows, idx, _what = mean_rows(run)
    if rows.shape[0] == 0:
        return None
    ti = run.metric_names.index("time_ms")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell never measured stays NaN
        mean = np.nanmean(rows[..., ti].astype(np.float64), axis=0)
    prefill_only = len(idx) == 1 and run.tokens()[idx[0]]["phase"] == "prefill"
    what = (
        "the prefill token (no decode token yet)"
        if prefill_only
        else (f"mean of {len(idx)} decode tokens, prefill excluded")
    )
    return mean, what


def _draw_power(ax: Any, run: Run) -> None:
    pw = run.power_arrays()
    t = pw["t_ms"] / 1000.0
    kind = kind_text(run.labels()["power"], run.power_info.get("scope"))
    ax.set_title(f"Power (W, {kind})", loc="left", fontsize=9, fontweight="bold")
    if t.size < 2:
        ax.text(0.5, 0.5, "no power samples", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    phases = run.phases()
    t_end = float(t[-1])
    for p in phases:
        a = p["start_ms"] / 1000.0
        b = (p["end_ms"] / 1000.0) if p["end_ms"] is not None else t_end
        ax.axvspan(
            a, max(b, a + 1e-3), color=PHASE_COLORS.get(p["name"], NEUTRAL), alpha=0.16, lw=0
        )
    total = pw["total_w"]
    for rail in RAILS:
        col = pw[f"{rail}_w"]
        if not np.isfinite(col).any():
            continue
        if np.allclose(col, total, equal_nan=True):  # the only rail: it is the total
            continue
        ax.plot(t, col, color=RAIL_COLORS[rail], lw=1.0, label=rail)
    device = {k[:-2]: v for k, v in run.rail_arrays().items() if k.endswith("_w")}
    if len(device) > 1:  # one dashed line per GPU (a single GPU's is the gpu rail itself)
        for k, (rail, col) in enumerate(device.items()):
            color = CATEGORICAL[k % len(CATEGORICAL)]
            ax.plot(t, col, color=color, lw=0.8, ls="--", label=rail)
    if np.isfinite(total).any():
        ax.plot(t, total, color=RAIL_COLORS["total"], lw=1.8, label="total")
        top = float(np.nanmax(total))
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    ax.set_xlim(
        min(float(t[0]), *(p["start_ms"] / 1000 for p in phases)) if phases else t[0], t_end
    )
    ax.set_xlabel("time (s)", fontsize=7, labelpad=0)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="y", color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    names = list(dict.fromkeys(p["name"] for p in phases))
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color=PHASE_COLORS.get(n, NEUTRAL), alpha=0.35) for n in names]
    labels += names
    ax.legend(
        handles,
        labels,
        fontsize=6.5,
        ncol=min(6, len(labels)),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        frameon=False,
        handlelength=1.2,
        columnspacing=0.9,
    )


def _draw_heatmap(fig: Any, ax: Any, run: Run) -> None:
    """Components as rows (their names read across), layers as columns."""
    got = _mean_time(run)
    label = METRIC_LABELS["time_ms"].capitalize()
    if got is None:
        ax.set_title(f"{label} by layer × component: no layer data", loc="left", fontsize=8.5)
        ax.set_axis_off()
        return
    mean, what = got
    ax.set_title(
        f"{label} per token by layer × component (ms, measured) · {what}",
        loc="left",
        fontsize=8.5,
        fontweight="bold",
    )
    masked = np.ma.masked_invalid(mean.T)
    positive = masked.compressed()
    positive = positive[positive > 0]
    norm = None
    if positive.size and positive.max() / positive.min() > LOG_COLOUR_RATIO:
        from matplotlib.colors import LogNorm

        norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max()))
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("lew_sequential", matplotlib_stops())
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    n_c, n_l = masked.shape
    step = max(1, math.ceil(n_l / 16))
    ax.set_xticks(range(0, n_l, step))
    ax.set_xticklabels([short_layer(run.layer_names[i]) for i in range(0, n_l, step)], fontsize=6.5)
    ax.set_xlabel("decoder layer", fontsize=7, labelpad=1)
    ax.set_yticks(range(n_c))
    ax.set_yticklabels(run.component_names, fontsize=6.5)
    ax.tick_params(length=2, pad=1)
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("ms" + (", log scale" if norm is not None else ""), fontsize=6.5, labelpad=1)


def header_lines(run: Run) -> list[str]:
    """The image's header: the run, its headline figures (two a line) and where power came from."""
    name = run.model.get("name", "run")
    reason = f" ({run.end_reason})" if run.end_reason else ""
    lines = [
        f"{name} · run {run.run_id} · {run.status}{reason} · "
        f"{run.prompt_tokens} prompt tokens in, {run.n_tokens} out"
    ]
    figs = [f"{n}: {v} ({k})" for n, v, k in headline_figures(run)]
    lines += ["     ".join(figs[i : i + 2]) for i in range(0, len(figs), 2)]
    s = run.summary()
    cov = s.get("layer_coverage")
    outside = s.get("outside_layers_energy_j")
    extra = source_line(run)
    if cov is not None:
        extra += f" · layers cover {fmt_pct(cov)} of token time"
        if outside is not None:
            extra += f", {OUTSIDE_LAYERS} {fmt_energy(outside)} (modeled)"
    if run.error_message:
        lines.append(f"error: {run.error_message[:160]}")
    return [*lines, extra]


def render_png(run: Run, width_px: int = WIDTH_PX, height_px: int | None = None) -> bytes:
    """The run as PNG bytes (palette PNG, ~20-40 KB). Thread-safe; no global matplotlib state.

    Without layer data (level "token", or no token yet) there is no heatmap, and the image is
    `POWER_ONLY_HEIGHT_PX` tall unless `height_px` says otherwise.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    lines = header_lines(run)
    heat = _mean_time(run) is not None
    if height_px is None:
        height_px = HEIGHT_PX if heat else POWER_ONLY_HEIGHT_PX
    with _LOCK:
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        y = 1.0 - 8 / height_px
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            fig.text(
                0.012,
                y,
                line,
                fontsize=7 if last else 8.5,
                fontweight="bold" if i == 0 else "normal",
                color="#555555" if last else "#222222",
                va="top",
            )
            y -= (13 if last else 15) / height_px
        top = y - 24 / height_px
        left = LEFT_PX / width_px
        bottom = 0.56 if heat else 80 / height_px  # room for the phase legend below
        power_ax = fig.add_axes((left, bottom, 0.985 - left, top - bottom))
        _draw_power(power_ax, run)
        if heat:
            _draw_heatmap(fig, fig.add_axes((left, 0.07, 0.94 - left, 0.29)), run)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        image = Image.fromarray(rgba[..., :3].copy())
    pal = image.quantize(
        colors=PALETTE_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    out = io.BytesIO()
    pal.save(out, format="PNG", optimize=True)
    return out.getvalue()
