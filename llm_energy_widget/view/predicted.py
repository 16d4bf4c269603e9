"""Predicted vs measured, after a run: what the store's other runs said this run would cost.

A consumer: it reads the finished run and the store it was saved in, never the producer. Shown
only when the store has enough matching history for a fit (same machine, device, power source
and kind, model size; `analysis.predict`): a first-principles guess next to a measurement says
nothing about the history, so it is left out. Every predicted number is **modeled**; the measured
ones keep the run's kind.

`summary_with_predicted(run)` is the run's summary with `summary["predicted"]`:
    {"kind": "modeled", "measured_kind", "label", "coverage", "n_runs", "run_ids", "source",
     "host", "rows": [{"key", "figure", "unit", "predicted", "low", "high", "measured",
     "error", "within"}]}        error = (predicted − measured) / measured
The widget's summary cards, the text view and the static / saved HTML show it.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from ..errors import EnergyWidgetError
from .text import esc, fmt_sig

if TYPE_CHECKING:
    from ..core.run import RunData

__all__ = ["predicted_html", "predicted_of", "predicted_text", "summary_with_predicted"]

log = logging.getLogger(__name__)

_ATTR = "_lew_predicted"  # cached on the run: (run_id, n_tokens) -> the dict or None
ROWS = ("total_energy_j", "decode_j_per_token", "prefill_energy_j")
"""The rows shown, in order: the run's energy and its two per-token parts."""


def predicted_of(run: RunData, store: Any = None) -> dict[str, Any] | None:
    """The run's predicted-vs-measured figures from `store` (default: the store the run was
    saved in), or None: the run is not finished, has no store, or the history is too short.
    Computed once per run (cached on it)."""
    if run.status != "completed":  # (`done` is set after the done listeners: not asked)
        return None
    key = (run.run_id, run.n_tokens)
    cached = getattr(run, _ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    value = _compute(run, store)
    setattr(run, _ATTR, (key, value))
    return value


def _compute(run: RunData, store: Any) -> dict[str, Any] | None:
    from ..analysis.predict import predicted_vs_measured
    from ..run import Run

    if not isinstance(run, Run):  # a run's data without its model features: nothing to fit
        return None
    own = None
    if store is None:
        path = getattr(run, "store_path", None)
        if not path:
            return None
        from ..store import Store

        try:
            store = own = Store(path, read_only=True)
        except (EnergyWidgetError, sqlite3.Error, OSError) as exc:
            log.debug("no predicted-vs-measured for run %s: %s", run.run_id, exc)
            return None
    try:
        pvm = predicted_vs_measured(run, store)
    except (EnergyWidgetError, sqlite3.Error) as exc:
        log.debug("no predicted-vs-measured for run %s: %s", run.run_id, exc)
        return None
    finally:
        if own is not None:
            own.close()
    if pvm is None or pvm["method"] != "fit":
        return None  # no history to compare with: a first-principles guess is not shown
    by_key = {r["key"]: r for r in pvm["rows"]}
    rows = [
        {k: by_key[key][k] for k in ("key", "figure", "unit", "predicted", "low", "high",
                                     "measured", "error", "within")}
        for key in ROWS
        if key in by_key
    ]  # fmt: skip
    if not rows:
        return None
    b = pvm["basis"]
    return {
        "kind": "modeled",
        "measured_kind": pvm["measured_kind"],
        "label": pvm["label"],
        "coverage": pvm["coverage"],
        "n_runs": b["n_runs"],
        "run_ids": list(b["run_ids"]),
        "source": b["source"],
        "host": b["host"],
        "rows": rows,
    }


def summary_with_predicted(run: RunData, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """`summary` (default: the run's) with `predicted` added when there is one."""
    s = dict(run.summary() if summary is None else summary)
    pvm = predicted_of(run)
    if pvm is not None:
        s["predicted"] = pvm
    return s


def _basis(p: dict[str, Any]) -> str:
    n = p["n_runs"]
    return (
        f"predicted (modeled) from {n} earlier run{'s' if n != 1 else ''} of {p['source']} on "
        f"{p['host']}, {100 * (p['coverage'] or 0):.0f} % interval; measured: {p['measured_kind']}"
    )


def _row_text(r: dict[str, Any]) -> tuple[str, str, str, str]:
    unit = f" {r['unit']}"
    # + 0.0: a -0.04 % rounds to +0.0 %, not -0.0 %
    err = "–" if r["error"] is None else f"{round(100 * r['error'], 1) + 0.0:+.1f} %"
    return (
        r["figure"],
        f"{fmt_sig(r['predicted'], unit, 3)} [{fmt_sig(r['low'], '', 3)}–"
        f"{fmt_sig(r['high'], '', 3)}]",
        fmt_sig(r["measured"], unit, 3),
        err + ("" if r["within"] else " (outside the interval)"),
    )


def predicted_text(p: dict[str, Any] | None) -> list[str]:
    """Lines for the text view: the basis, then one line a figure."""
    if not p:
        return []
    lines = [_basis(p)]
    for r in p["rows"]:
        fig, pred, meas, err = _row_text(r)
        lines.append(f"  {fig}: predicted {pred}, measured {meas}, error {err}")
    return lines


def predicted_html(p: dict[str, Any] | None) -> str:
    """A small table for the static and saved HTML ('' when there is no prediction)."""
    if not p:
        return ""
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _row_text(r)) + "</tr>" for r in p["rows"]
    )
    return (
        f'<div class="lew-predicted"><p>{esc(_basis(p))}</p><table><thead><tr><th>figure</th>'
        "<th>predicted (modeled)</th><th>measured</th><th>error</th></tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )
