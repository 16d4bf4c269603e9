"""Figures as notebook HTML that renders without a kernel, a CDN or a notebook extension.

plotly.js goes inline once per output (about 4.7 MB), so the output also renders in VS Code, in
nbconvert HTML and offline; the alternative (`include_plotlyjs="cdn"`) breaks offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def figures_html(figs: Sequence[Any], include_plotlyjs: bool | str = True) -> str:
    parts = []
    for i, fig in enumerate(figs):
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=include_plotlyjs if i == 0 else False,
                config={"displaylogo": False, "responsive": True},
            )
        )
    return "\n".join(parts)
