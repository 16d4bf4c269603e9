"""Number formats shared by every view, so a figure reads the same in the widget, the static view,
the report and the CLI (js/format.ts mirrors them)."""

from __future__ import annotations

import math
import re

__all__ = ["format_cost", "layer_label"]


def format_cost(usd: float | None, missing: str = "–") -> str:
    """Cost in US dollars: `$3.1e-06` (3 significant digits, Python's `g`, as `fmtCost` in JS)."""
    if usd is None or not math.isfinite(usd):
        return missing
    return f"${usd:.3g}"


def layer_label(name: str) -> str:
    """'L12' for a layer named '12' or 'model.layers.12' (the widget's rule); else the name."""
    m = re.search(r"(\d+)$", name)
    return f"L{m.group(1)}" if m else name
