"""The one colour palette of every view: the widget's canvases (js/theme.ts holds the same values,
tests/view_units/test_palette.py checks it), the static SVG, the matplotlib PNG and the plotly
figures.

- `RAIL_COLORS`: the power rails' lines, keyed by rail (`total`, `cpu`, ...).
- `PHASE_COLORS` and `PHASE_ALPHA`: the phase bands behind the power chart (the canvas fills
  each band with its colour at its alpha; the SVG and PNG use their own uniform opacity).
- `NEUTRAL`: a phase without a colour, a cell without a value.
- `SEQUENTIAL`: the heatmaps' and token shading's colour scale (viridis, 9 stops, linear between).
- `KIND_COLORS`: the text colour of a figure's kind (js/widget.css's `.lew-kind-*`).
- `CATEGORICAL`: one colour per run or series in the plotly comparisons (Tableau-10 order).
"""

from __future__ import annotations

import math

__all__ = [
    "CATEGORICAL",
    "KIND_COLORS",
    "NEUTRAL",
    "PHASE_ALPHA",
    "PHASE_COLORS",
    "RAIL_COLORS",
    "SEQUENTIAL",
    "matplotlib_stops",
    "phase_fill",
    "plotly_colorscale",
    "sequential_hex",
    "sequential_rgb",
]

RAIL_COLORS: dict[str, str] = {
    "total": "#d62728",
    "cpu": "#1f77b4",
    "gpu": "#2ca02c",
    "ane": "#9467bd",
    "dram": "#ff7f0e",
}
PHASE_COLORS: dict[str, str] = {
    "baseline": "#808080",
    "tokenize": "#17becf",
    "to_device": "#bcbd22",
    "prefill": "#ff7f0e",
    "decode": "#1f77b4",
    "tail": "#e377c2",
    "detokenize": "#9467bd",
}
PHASE_ALPHA: dict[str, float] = {
    "baseline": 0.14,
    "tokenize": 0.14,
    "to_device": 0.14,
    "prefill": 0.16,
    "decode": 0.12,
    "tail": 0.18,
    "detokenize": 0.14,
}
NEUTRAL = "#808080"
SEQUENTIAL: tuple[tuple[int, int, int], ...] = (
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
)
"""viridis, 9 stops: readable on light and dark backgrounds."""
KIND_COLORS: dict[str, str] = {
    "measured": "#2e7d32",
    "estimated": "#b26a00",
    "modeled": "#6a4fb3",
}
CATEGORICAL: tuple[str, ...] = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2",
    "#72B7B2", "#EECA3B", "#9D755D", "#FF9DA6", "#8C8C8C",
)  # fmt: skip
"""Tableau-10 order: every colour keeps >= 2.5:1 against white and against #111."""


def _hex(c: tuple[int, int, int]) -> str:
    return f"#{c[0]:02x}{c[1]:02x}{c[2]:02x}"


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def sequential_rgb(x: float) -> tuple[int, int, int]:
    """The colour of x in [0, 1] on `SEQUENTIAL` (clamped); `NEUTRAL` where x is not finite.

    The same arithmetic as js/theme.ts's `colormap` (halves round up, as Math.round)."""
    if not math.isfinite(x):
        return _rgb(NEUTRAL)
    t = min(1.0, max(0.0, x)) * (len(SEQUENTIAL) - 1)
    i = min(len(SEQUENTIAL) - 2, int(t))
    f = t - i
    a, b = SEQUENTIAL[i], SEQUENTIAL[i + 1]
    r, g, bl = (math.floor(a[k] + (b[k] - a[k]) * f + 0.5) for k in range(3))
    return r, g, bl


def sequential_hex(x: float) -> str:
    """`sequential_rgb(x)` as `#rrggbb`."""
    return _hex(sequential_rgb(x))


def plotly_colorscale() -> list[list[float | str]]:
    """`SEQUENTIAL` as a plotly colorscale: [[0, '#440154'], [0.125, ...], ..., [1, '#fde725']]."""
    n = len(SEQUENTIAL) - 1
    return [[i / n, _hex(c)] for i, c in enumerate(SEQUENTIAL)]


def matplotlib_stops() -> list[tuple[float, float, float]]:
    """`SEQUENTIAL` as matplotlib colours (0-1 floats), for `LinearSegmentedColormap.from_list`."""
    return [(r / 255, g / 255, b / 255) for r, g, b in SEQUENTIAL]


def phase_fill(name: str) -> str:
    """A phase band's fill as the canvas draws it: `rgba(255,127,14,0.16)`."""
    r, g, b = _rgb(PHASE_COLORS.get(name, NEUTRAL))
    return f"rgba({r},{g},{b},{PHASE_ALPHA.get(name, 0.1)})"
