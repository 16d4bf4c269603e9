"""Run exports: JSON (the to_dict shape), CSV/Parquet tables, and a Chrome/Perfetto trace.

Numbers keep their kind: the summary table has energy_kind, energy_source and energy_resolution_ms,
and `labels` says which figures are measured, estimated or modeled (layer energy_j is modeled: the
token's energy split by measured time).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError, MissingDependencyError
from .jsonutil import strict_json
from .run import METRICS

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run

TABLES = ("tokens", "phases", "power", "layers", "summary", "labels")


def _file(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise InvalidInputError(f"{p} is a directory; give a file path")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _directory(directory: str | os.PathLike[str]) -> Path:
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise InvalidInputError(f"{d} is a file; give a directory for the tables")
    d.mkdir(parents=True, exist_ok=True)
    return d


def to_json(run: Run, path: str | os.PathLike[str]) -> Path:
    """`run.to_dict()` as strict JSON (NaN written as null)."""
    p = _file(path)
    p.write_text(json.dumps(strict_json(run.to_dict()), indent=1, allow_nan=False))
    return p


def tables(run: Run) -> dict[str, pd.DataFrame]:
    """The run as flat tables: tokens, phases, power, layers (long), summary (one row), labels."""
    import pandas as pd

    summary: dict[str, Any] = {"run_id": run.run_id, "model": run.model.get("name")}
    for k, v in run.summary().items():
        if isinstance(v, dict):
            summary.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            summary[k] = v
    labels = pd.DataFrame(
        [{"figure": k, "kind": v} for k, v in run.labels().items()], columns=["figure", "kind"]
    )
    layers = run.layers_df()
    if layers.empty:
        layers = pd.DataFrame(columns=["token", "layer", "component", *run.metric_names])
    return {
        "tokens": run.tokens_df(),
        "phases": run.phases_df(),
        "power": run.power_df(),
        "layers": layers,
        "summary": pd.DataFrame([summary]),
        "labels": labels,
    }


def to_csv(run: Run, directory: str | os.PathLike[str]) -> list[Path]:
    """One CSV per table in `directory`: tokens, phases, power, layers, summary, labels."""
    d = _directory(directory)
    out = []
    for name, df in tables(run).items():
        p = d / f"{name}.csv"
        df.to_csv(p, index=False)
        out.append(p)
    return out


def to_parquet(run: Run, directory: str | os.PathLike[str]) -> list[Path]:
    """One Parquet file per table; needs pyarrow."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "Parquet export needs pyarrow, which is not installed: pip install pyarrow"
        ) from exc
    d = _directory(directory)
    out = []
    for name, df in tables(run).items():
        p = d / f"{name}.parquet"
        # Mixed-type object columns (e.g. all-None) are written as strings rather than failing.
        df = df.copy()
        for col in df.columns:
            if df[col].dtype == object and df[col].map(type).nunique() > 1:
                df[col] = df[col].map(lambda v: None if v is None else str(v))
        df.to_parquet(p, index=False, engine="pyarrow")
        out.append(p)
    return out


# -- Chrome trace event format (chrome://tracing, ui.perfetto.dev) ------------------------------
PID = 1
TID_PHASES, TID_TOKENS, TID_LAYERS = 1, 2, 3
PLACEMENT_NOTE = (
    "modeled placement: the token's interval is divided among layer components in proportion to "
    "their measured time_ms, in execution order; the true start times were not recorded"
)


def _us(t_ms: float) -> float:
    return round(float(t_ms) * 1000.0, 3)


def _meta(name: str, tid: int | None, value: str, sort: int | None = None) -> list[dict[str, Any]]:
    ev: dict[str, Any] = {"ph": "M", "pid": PID, "name": name, "args": {"name": value}}
    if tid is not None:
        ev["tid"] = tid
    out = [ev]
    if sort is not None and tid is not None:
        out.append(
            {
                "ph": "M",
                "pid": PID,
                "tid": tid,
                "name": "thread_sort_index",
                "args": {"sort_index": sort},
            }
        )
    return out


def trace_events(run: Run, detail: str = "component") -> list[dict[str, Any]]:
    """Trace events: phases, tokens and layer components as "X" slices, power as "C" counters."""
    if detail not in ("token", "layer", "component"):
        raise InvalidInputError(f"detail must be 'token', 'layer' or 'component', got {detail!r}")
    kind = run.power_info.get("kind", "estimated")
    source = run.power_info.get("source", "unknown")
    events: list[dict[str, Any]] = []
    events += _meta("process_name", None, f"llm-energy run {run.run_id} ({run.model.get('name')})")
    events += _meta("thread_name", TID_PHASES, f"phases (energy {kind})", 1)
    events += _meta("thread_name", TID_TOKENS, f"tokens (energy {kind})", 2)
    events += _meta("thread_name", TID_LAYERS, "layers x components (modeled placement)", 3)

    for ph in run.phases():
        if ph["end_ms"] is None:
            continue
        events.append(
            {
                "ph": "X", "pid": PID, "tid": TID_PHASES, "name": ph["name"], "cat": "phase",
                "ts": _us(ph["start_ms"]), "dur": _us(ph["end_ms"] - ph["start_ms"]),
                "args": {"energy_j": ph["energy_j"], "avg_power_w": ph["avg_power_w"],
                         "energy_kind": kind, "source": source},
            }
        )  # fmt: skip
    tokens = run.tokens()
    for tok in tokens:
        events.append(
            {
                "ph": "X", "pid": PID, "tid": TID_TOKENS, "name": f"token {tok['index']}",
                "cat": "token", "ts": _us(tok["start_ms"]), "dur": _us(tok["duration_ms"]),
                "args": {"text": tok["text"], "token_id": tok["token_id"], "phase": tok["phase"],
                         "energy_j": tok["energy_j"], "avg_power_w": tok["avg_power_w"],
                         "energy_kind": kind, "source": source},
            }
        )  # fmt: skip
    if detail != "token":
        events += _layer_events(run, tokens, detail)
    events += _power_counters(run, kind, source)
    return [strict_json(e) for e in events]


def _layer_events(run: Run, tokens: list[dict[str, Any]], detail: str) -> list[dict[str, Any]]:
    arr = run.layers
    if arr.size == 0:
        return []
    ti = run.metric_names.index("time_ms") if "time_ms" in run.metric_names else None
    ei = run.metric_names.index("energy_j") if "energy_j" in run.metric_names else None
    if ti is None:
        return []
    out: list[dict[str, Any]] = []
    for i, tok in enumerate(tokens[: arr.shape[0]]):
        times = np.nan_to_num(arr[i, :, :, ti].astype(np.float64), nan=0.0)
        total = float(times.sum())
        if total <= 0:
            continue
        scale = tok["duration_ms"] / total  # token wall time per measured ms
        t = float(tok["start_ms"])
        for li, lname in enumerate(run.layer_names):
            layer_ms = float(times[li].sum())
            if layer_ms <= 0:
                continue
            e_layer = float(np.nansum(arr[i, li, :, ei])) if ei is not None else None
            out.append(
                {
                    "ph": "X", "pid": PID, "tid": TID_LAYERS, "name": lname, "cat": "layer",
                    "ts": _us(t), "dur": _us(layer_ms * scale),
                    "args": {"token": i, "time_ms": layer_ms, "energy_j": e_layer,
                             "energy_kind": "modeled", "time_kind": "measured",
                             "placement": PLACEMENT_NOTE},
                }
            )  # fmt: skip
            if detail == "component":
                tc = t
                for ci, cname in enumerate(run.component_names):
                    c_ms = float(times[li, ci])
                    if c_ms <= 0:
                        continue
                    vals = {m: float(arr[i, li, ci, k]) for k, m in enumerate(run.metric_names)}
                    out.append(
                        {
                            "ph": "X", "pid": PID, "tid": TID_LAYERS, "name": cname,
                            "cat": "component", "ts": _us(tc), "dur": _us(c_ms * scale),
                            "args": {"token": i, "layer": lname, **vals,
                                     "energy_kind": "modeled", "placement": PLACEMENT_NOTE},
                        }
                    )  # fmt: skip
                    tc += c_ms * scale
            t += layer_ms * scale
    return out


def _power_counters(run: Run, kind: str, source: str) -> list[dict[str, Any]]:
    pw = run.power_arrays()
    out: list[dict[str, Any]] = []
    cols = [c for c in pw if c.endswith("_w") and np.isfinite(pw[c]).any()]
    for i, t in enumerate(pw["t_ms"]):
        for c in cols:
            v = float(pw[c][i])
            if math.isfinite(v):
                out.append(
                    {
                        "ph": "C", "pid": PID, "name": f"power {c} (W, {kind}, {source})",
                        "ts": _us(t), "args": {"W": v},
                    }
                )  # fmt: skip
        e = float(pw["energy_j"][i])
        if math.isfinite(e):
            out.append(
                {
                    "ph": "C", "pid": PID, "name": f"cumulative energy (J, {kind}, {source})",
                    "ts": _us(t), "args": {"J": e},
                }
            )  # fmt: skip
    return out


def to_chrome_trace(run: Run, path: str | os.PathLike[str], detail: str = "component") -> Path:
    """Write a trace that opens in Perfetto / chrome://tracing (ts in µs, shown in ms)."""
    p = _file(path)
    doc = {
        "traceEvents": trace_events(run, detail),
        "displayTimeUnit": "ms",
        "otherData": strict_json(
            {
                "run_id": run.run_id,
                "model": run.model.get("name"),
                "status": run.status,
                "power_source": run.power_info.get("source"),
                "energy_kind": run.power_info.get("kind"),
                "energy_resolution_ms": run.power_info.get("interval_ms"),
                "layer_placement": PLACEMENT_NOTE,
                "metrics": list(METRICS),
            }
        ),
    }
    p.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")))
    return p
