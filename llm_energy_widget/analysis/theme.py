"""One look for every figure, readable on a light and a dark notebook theme alike.

The kernel cannot know the frontend's theme, and JupyterLab's plotly extension and VS Code's
plotly renderer draw the figure JSON as it is (no script of ours runs there). So the figures
carry a neutral template: transparent backgrounds (the page's own background shows through), a
mid-grey for text (#767676: 4.5:1 on white, 4.2:1 on JupyterLab's dark #111), translucent grey
grid lines, and trace colours of mid lightness, which read on both.

Titles wrap here into a bold first line and smaller detail lines, so a long title (unit, kind,
source, resolution) never runs out of the plot at notebook widths.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.jsonsafe import finite_or_none
from ..view.palette import CATEGORICAL, plotly_colorscale

__all__ = [
    "FONT_COLOR",
    "GRID_COLOR",
    "PALETTE",
    "compact",
    "luminance",
    "mix",
    "plain_title",
    "rgba",
    "spread",
    "style",
    "template",
    "text_on",
    "title_text",
]

FONT_COLOR = "#767676"
GRID_COLOR = "rgba(128,128,128,0.22)"
LINE_COLOR = "rgba(128,128,128,0.55)"
PALETTE = CATEGORICAL
"""`view.palette.CATEGORICAL` (Tableau-10 order): the plotly colorway."""

TITLE_WRAP_CHARS = 96
"""Detail lines wrap at this many characters (about 700 px at 12 px type)."""


def _axis() -> dict[str, Any]:
    return {
        "gridcolor": GRID_COLOR,
        "linecolor": LINE_COLOR,
        "zerolinecolor": LINE_COLOR,
        "tickcolor": LINE_COLOR,
        "automargin": True,
        "title": {"standoff": 10},
    }


def template() -> dict[str, Any]:
    """The neutral template as a plain dict (a few hundred bytes in each figure)."""
    return {
        "layout": {
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "font": {"color": FONT_COLOR, "size": 12},
            "colorway": list(PALETTE),
            "xaxis": _axis(),
            "yaxis": _axis(),
            "legend": {"bgcolor": "rgba(0,0,0,0)"},
            "modebar": {
                "bgcolor": "rgba(0,0,0,0)",
                "color": "rgba(128,128,128,0.65)",
                "activecolor": "rgba(128,128,128,1)",
            },
            "hoverlabel": {"font": {"size": 12}},
            "colorscale": {"sequential": plotly_colorscale()},
        }
    }


def title_text(main: str, details: str = "") -> tuple[str, int]:
    """'<b>main</b><br><span>details…</span>' wrapped to notebook width, and its line count."""
    lines = [f"<b>{html.escape(main, quote=False)}</b>"]
    for chunk in textwrap.wrap(details, TITLE_WRAP_CHARS) if details else []:
        lines.append(f'<span style="font-size:11px">{html.escape(chunk, quote=False)}</span>')
    return "<br>".join(lines), len(lines)


def plain_title(text: str) -> str:
    """A figure title without its markup, lines joined by spaces (for text/plain and tests)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text.replace("<br>", " ")))


def style(
    fig: Any,
    main: str,
    details: str = "",
    *,
    height_px: int,
    x: str | None = None,
    y: str | None = None,
    legend_below: bool = True,
    extra_top_px: int = 0,
) -> Any:
    """Template, wrapped title, explicit height (the output's size is never left to CSS).

    The title hangs from the top of the figure and the top margin grows with its lines, so a
    wrapped title never runs into the plot; `extra_top_px` makes room for subplot titles.
    """
    text, n_lines = title_text(main, details)
    # assigned, not merged: update_layout would merge it into plotly's default template (7 KB
    # of defaults in every figure, twice per output)
    fig.layout.template = template()
    fig.update_layout(
        title={
            "text": text, "x": 0.0, "xanchor": "left", "xref": "paper",
            "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 14},
            "font": {"size": 14},
        },
        height=height_px,
        autosize=True,
        margin={"l": 60, "r": 30, "t": 30 + 15 * n_lines + extra_top_px, "b": 50, "pad": 0},
    )  # fmt: skip
    if legend_below:
        fig.update_layout(
            legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.14, "yanchor": "top",
                    "traceorder": "normal"}
        )  # fmt: skip
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_layout(yaxis_title_text=y)
    return fig


def compact(values: Iterable[Any], digits: int = 4) -> list[float | None]:
    """Plain floats rounded to `digits` significant digits, None for NaN/inf.

    Figure data travels as JSON twice per output (the plotly mime and the HTML fallback);
    four digits is what every hover and axis shows. Plain lists, not plotly's base64 typed
    arrays, so any plotly.js a viewer bundles (VS Code's renderer, nbviewer) reads them.
    """
    out: list[float | None] = []
    for v in values:
        f = finite_or_none(v)
        out.append(None if f is None else float(f"{f:.{digits}g}"))
    return out


def rgba(hex_color: str, alpha: float) -> str:
    """'rgba(r,g,b,a)' from '#rrggbb'."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def mix(hex_color: str, other: str, t: float) -> str:
    """'#rrggbb' a share t of the way from `hex_color` to `other` (opaque, unlike rgba)."""
    a, b = _rgb(hex_color), _rgb(other)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def luminance(hex_color: str) -> float:
    """WCAG relative luminance of an sRGB colour."""

    def lin(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else float(((v + 0.055) / 1.055) ** 2.4)

    r, g, b = (lin(c) for c in _rgb(hex_color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_on(hex_color: str) -> str:
    """White or near-black, whichever contrasts more with an opaque fill (treemap tiles)."""
    lum = luminance(hex_color)
    return "#ffffff" if (1.05 / (lum + 0.05)) >= ((lum + 0.05) / 0.0597) else "#1a1a1a"


def spread(colors: Sequence[str], n: int) -> list[str]:
    """n colours from the palette, cycling."""
    return [colors[i % len(colors)] for i in range(n)]
