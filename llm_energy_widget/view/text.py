"""The one home for how a number reads as text, in every view: the static SVG/HTML/text view, the
report, the saved output, the PNG's header, the plotly titles and tables, the CLI and the trace
export (js/format.ts mirrors the ones the widget shows).

The core needs none of these (it keeps numbers, never their text), so they live with the views;
`analysis` and `cli` import them from here. "–" is the mark for a figure that cannot be known
(None, NaN or infinite); the CLI's run text says "n/a" instead.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

__all__ = [
    "MISSING",
    "esc",
    "fmt_energy",
    "fmt_num",
    "fmt_pct",
    "fmt_sig",
    "format_cost",
    "kind_text",
    "layer_label",
    "response_texts",
    "short_layer",
    "window_adjective",
    "window_note",
]

MISSING = "–"


def esc(x: Any) -> str:
    """`x` as HTML text or an attribute value (quotes escaped): run text is untrusted."""
    return html.escape(str(x), quote=True)


def fmt_energy(j: float | None) -> str:
    """Energy with an SI prefix, 3 significant digits: `1.5 J`, `750 mJ`, `1.2 kJ`, `0 J`."""
    if j is None or not math.isfinite(j):
        return MISSING
    a = abs(j)
    if a >= 1000:
        return f"{j / 1000:.3g} kJ"
    if a >= 1:
        return f"{j:.3g} J"
    if a >= 1e-3:
        return f"{j * 1e3:.3g} mJ"
    return f"{j * 1e6:.3g} µJ" if a else "0 J"


def fmt_num(x: float | None, unit: str = "") -> str:
    """A figure with its unit: 3 significant digits, whole numbers from 1000 (`1234 ms`)."""
    if x is None or not math.isfinite(x):
        return MISSING
    s = f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return f"{s} {unit}".strip()


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage, 3 significant digits: 0.912 -> `91.2 %`."""
    return MISSING if x is None or not math.isfinite(x) else f"{x * 100:.3g} %"


def fmt_sig(v: Any, unit: str = "", digits: int = 4, missing: str = MISSING) -> str:
    """A float to `digits` significant digits (`0.75 J` with unit " J"); other values as they
    print (ints, text); `missing` for None and non-finite floats."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return missing
    if isinstance(v, float):
        return f"{v:.{digits}g}{unit}"
    return f"{v}{unit}"


def format_cost(usd: float | None, missing: str = MISSING) -> str:
    """Cost in US dollars: `$3.1e-06` (3 significant digits, Python's `g`, as `fmtCost` in JS)."""
    if usd is None or not math.isfinite(usd):
        return missing
    return f"${usd:.3g}"


def kind_text(kind: object, scope: object = None) -> str:
    """A figure's kind with the scope it covers, where known: "estimated · process"."""
    k = str(kind) if kind else "estimated"
    return f"{k} · {scope}" if scope else k


def window_adjective(ms: float) -> str:
    """A power averaging window as an adjective: 1000 -> "1-s", 100 -> "100-ms"."""
    return f"{ms / 1000:.3g}-s" if ms >= 1000 else f"{ms:.3g}-ms"


def window_note(window_ms: object) -> str:
    """'1-s average' for a source that averages power over 1000 ms ('' when it does not)."""
    if not isinstance(window_ms, (int, float)) or math.isnan(window_ms) or window_ms <= 0:
        return ""
    if window_ms >= 1000:
        return f"{window_ms / 1000:g}-s average"
    return f"{window_ms:g}-ms average"


def layer_label(name: str) -> str:
    """'L12' for a layer named '12' or 'model.layers.12' (the widget's rule); else the name."""
    m = re.search(r"(\d+)$", name)
    return f"L{m.group(1)}" if m else name


def short_layer(name: str) -> str:
    """`model.layers.12` -> `12` (for an axis that says they are decoder layers)."""
    tail = name.rsplit(".", 1)[-1]
    return tail if tail.isdigit() else name


def response_texts(run: Any) -> list[tuple[str, str]]:
    """(label, text) of what the run generated: ("response", text) for one prompt; for a batch
    one per sequence, labelled with its tokens and energy (its shares of the steps: modeled)."""
    if run.n_sequences <= 1:
        return [("response", run.response)] if run.response else []
    out = []
    for q in run.summary().get("sequences") or []:
        n = q["tokens"]
        label = (
            f"sequence {q['sequence']} ({n} token{'' if n == 1 else 's'}, "
            f"{fmt_energy(q['energy_j'])} modeled)"
        )
        out.append((label, str(q["text"])))
    return out
