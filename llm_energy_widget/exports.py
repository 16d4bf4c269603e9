"""Run exports: JSON (the to_dict shape), CSV/Parquet tables, and a Chrome/Perfetto trace.

Numbers keep their kind: the summary table has energy_kind, energy_scope, energy_source and
energy_resolution_ms (the source's real resolution, not the poll interval), `labels` says which
figure families are measured, estimated or modeled, and `columns` is the data dictionary of the
long tables: one row per column of `tokens` and `layers` with its name, unit, kind and definition.
The kinds are stated once there rather than repeated on every row of `layers` (a 4,096-token run
of a 30-layer model has 1.1 million rows).

Table columns (CSV, Parquet):

- `tokens`: per token, besides time and energy, `below_resolution` (shorter than the source's
  resolution: its energy is interpolated between readings), `layers_ms`, `layer_coverage`
  (hooked layer time / token time) and `outside_layers_j` (its energy outside the layers; empty
  for a token-level run).
- `layers`: one row per token x layer x component. `energy_j` is the token's energy x cell time /
  token time (modeled), so a token's cells add up to its energy minus `outside_layers_j`. The
  activation statistics are named for what they are: `mean_abs_x` (mean |x|), `std_x` (std of x),
  `max_abs_x` (max |x|) and `sparsity` (fraction |x| < 1e-4). Before, they were `act_mean`,
  `act_std` and `act_max`, names that hid the absolute value; the run's JSON keeps those keys.

CSV only: a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return (token text
is whatever the model wrote) is written with a leading `'`, as OWASP advises against formula
injection, so a spreadsheet shows it as text instead of running it. JSON, Parquet and the trace
keep the text as it is.

The trace puts phases (the `tail` after the last token included), tokens and layer components on
tracks; layers keep their measured length and each token ends with an `outside layers` slice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.attribution import OUTSIDE_LAYERS, layers_time_ms, share_denominator_ms
from .core.jsonsafe import strict_json
from .core.schema import METRIC_LABELS, METRIC_UNITS, SUMMARY_DEFINITIONS, SUMMARY_LABELS
from .errors import InvalidInputError, MissingDependencyError

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run

__all__ = [
    "COLUMN_FIELDS",
    "EXPORT_METRIC_NAMES",
    "FORMULA_PREFIXES",
    "PID",
    "PLACEMENT_NOTE",
    "TABLES",
    "TOKEN_LAYER_COLUMNS",
    "column_dictionary",
    "csv_safe_text",
    "export_metric_name",
    "pd_is_string_dtype",
    "tables",
    "to_chrome_trace",
    "to_csv",
    "to_json",
    "to_parquet",
    "trace_events",
]

TABLES = ("tokens", "phases", "power", "layers", "summary", "labels", "columns")
EXPORT_METRIC_NAMES = {
    "time_ms": "time_ms",
    "energy_j": "energy_j",
    "act_mean": "mean_abs_x",
    "act_std": "std_x",
    "act_max": "max_abs_x",
    "sparsity": "sparsity",
}
"""Stored layer-metric key -> its column in the exported tables and the trace."""
TOKEN_LAYER_COLUMNS = ("layers_ms", "layer_coverage", "outside_layers_j")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An unwritable path is the user's to fix: one line naming it, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _file(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise InvalidInputError(f"{p} is a directory; give a file path")
    with _writing(p.parent):
        p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _directory(directory: str | os.PathLike[str]) -> Path:
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise InvalidInputError(f"{d} is a file; give a directory for the tables")
    with _writing(d):
        d.mkdir(parents=True, exist_ok=True)
    return d


def to_json(run: Run, path: str | os.PathLike[str]) -> Path:
    """`run.to_dict()` as strict JSON (NaN written as null)."""
    p = _file(path)
    with _writing(p):
        p.write_text(json.dumps(strict_json(run.to_dict()), indent=1, allow_nan=False))
    return p


def export_metric_name(key: str) -> str:
    """'mean_abs_x' for the stored `act_mean`; other keys as they are."""
    return EXPORT_METRIC_NAMES.get(key, key)


def tables(run: Run) -> dict[str, pd.DataFrame]:
    """The run as flat tables: tokens, phases, power, layers (long), summary (one row), labels,
    columns (the data dictionary of tokens and layers)."""
    import pandas as pd

    summary: dict[str, Any] = {"run_id": run.run_id, "model": run.model.get("name")}
    for k, v in run.summary().items():
        if isinstance(v, dict):
            summary.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif k == "sequences":  # per sequence of a batch: its tokens and energy, as columns
            for seq in v:
                b = seq["sequence"]
                summary.update({f"{k}.{b}.{kk}": vv for kk, vv in seq.items() if kk != "sequence"})
        elif isinstance(v, list):  # warnings: one cell, readable in a spreadsheet
            summary[k] = "; ".join(map(str, v))
        else:
            summary[k] = v
    labels = pd.DataFrame(
        [{"figure": k, "kind": v} for k, v in run.labels().items()], columns=["figure", "kind"]
    )
    # Run.layers_df cannot reshape an empty array (a token-level run): its table is just empty
    layers = (
        run.layers_df()
        if run.layers.size
        else pd.DataFrame(columns=["token", "layer", "component", *run.metric_names])
    )
    layers = layers.rename(columns=EXPORT_METRIC_NAMES)
    tokens = run.tokens_df()
    for col in ("below_resolution", *TOKEN_LAYER_COLUMNS):
        if col not in tokens.columns:  # a token-level run: no layers, the same columns
            tokens[col] = pd.Series([None] * len(tokens), dtype=object)
    return {
        "tokens": tokens,
        "phases": run.phases_df(),
        "power": run.power_df(),
        "layers": layers,
        "summary": pd.DataFrame([summary]),
        "labels": labels,
        "columns": pd.DataFrame(column_dictionary(run), columns=list(COLUMN_FIELDS)),
    }


COLUMN_FIELDS = ("table", "column", "name", "unit", "kind", "definition")


def column_dictionary(run: Run) -> list[dict[str, str]]:
    """One row per column of `tokens` and `layers` (and of `power`'s per-GPU rails): name, unit,
    kind (measured / estimated / modeled, from `run.labels()`) and what it is."""
    lab = run.labels()
    energy = lab.get("tokens", lab.get("energy", "estimated"))
    timing = lab.get("timing", "measured")
    res = run.resolution_ms
    res_s = f"{res:g} ms" if res is not None else "unknown"
    rows = [
        ("tokens", "index", "token", "", "", "0 is the prefill token (prompt to first token)"),
        ("tokens", "token_id", "token id", "", "", "the tokenizer's id"),
        ("tokens", "text", "text", "", "", "the token's text as decoded"),
        ("tokens", "phase", "phase", "", "", "prefill (token 0) or decode"),
        ("tokens", "start_ms", "start", "ms", timing, "since the run's clock started"),
        ("tokens", "end_ms", "end", "ms", timing, "since the run's clock started"),
        ("tokens", "duration_ms", "time", "ms", timing, "end - start"),
        ("tokens", "instrumented", "instrumented", "", "",
         "the layer hooks ran during this token (False: a bare token, at plain speed, no layer "
         "row; empty: a token-level run)"),
        ("tokens", "sequence", "sequence", "", "",
         "the batch row that chose this token (0 for a single prompt)"),
        ("tokens", "step_tokens", "step tokens", "", "",
         "tokens its decoding step chose (the batch rows still running; 1 for one prompt)"),
        ("tokens", "energy_j", "energy", "J", energy,
         "E(end) - E(start) of the energy curve / step_tokens (a batched step's energy split "
         "equally among its tokens: modeled)"),
        ("tokens", "energy_kind", "energy kind", "", "",
         "the source's kind for a lone token, modeled where its step's energy was split"),
        ("tokens", "avg_power_w", "avg power", "W", energy, "the step's energy / time"),
        ("tokens", "below_resolution", "below resolution", "", timing,
         f"time < the source's resolution ({res_s}): energy interpolated between readings"),
        ("tokens", "layers_ms", "hooked time", "ms", lab.get("layers.time_ms", "measured"),
         "time inside the hooked decoder layers (sum of the token's cells)"),
        ("tokens", "layer_coverage", SUMMARY_LABELS["layer_coverage"], "",
         lab.get("layers.time_ms", "measured"),
         SUMMARY_DEFINITIONS.get("layer_coverage", "layers_ms / time")),
        ("tokens", "outside_layers_j", OUTSIDE_LAYERS, "J", lab.get("layers.outside", "modeled"),
         "energy x (1 - layer_coverage): embedding, final norm, lm_head, sampling, the loop"),
        ("layers", "token", "token", "", "", "tokens.index"),
        ("layers", "layer", "layer", "", "", "decoder layer's name (figures show L<number>)"),
        ("layers", "component", "component", "", "", "module inside the layer"),
    ]  # fmt: skip
    definitions = {
        "time_ms": "wall time of the component's forward calls in this token",
        "energy_j": "token energy x time_ms / token time (a share of time, not a measurement)",
        "act_mean": "mean of |x| over the component's output",
        "act_std": "standard deviation of x (population) over the output",
        "act_max": "max of |x| over the output",
        "sparsity": "fraction of the output with |x| < 1e-4",
    }
    power_kind = run.power_info.get("kind", "estimated")
    for gpu in run.power_info.get("gpus") or []:  # NVML's per-GPU rails, where the run has them
        i = gpu.get("index")
        rows.append(
            ("power", f"gpu{i}_w", f"GPU {i} power", "W", power_kind,
             f"GPU {i}'s power ({gpu.get('name') or 'NVML'}), one of the GPUs summed in gpu_w")
        )  # fmt: skip
        rows.append(
            ("power", f"gpu{i}_energy_j", f"GPU {i} energy", "J", power_kind,
             f"GPU {i}'s energy since the source opened, one of the GPUs summed in energy_j")
        )  # fmt: skip
    for key in run.metric_names:
        kind = lab.get(f"layers.{key}", lab.get("layers.activations", "measured"))
        rows.append(
            ("layers", export_metric_name(key), METRIC_LABELS.get(key, key),
             METRIC_UNITS.get(key, ""), kind, definitions.get(key, ""))
        )  # fmt: skip
    return [dict(zip(COLUMN_FIELDS, r, strict=True)) for r in rows]


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Characters that make a spreadsheet read a cell as a formula (OWASP CSV injection)."""


def csv_safe_text(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a leading `'`; else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def pd_is_string_dtype(col: Any) -> bool:
    from pandas.api.types import is_string_dtype

    return bool(is_string_dtype(col))


def to_csv(run: Run, directory: str | os.PathLike[str]) -> list[Path]:
    """One CSV per table in `directory`: tokens, phases, power, layers, summary, labels, columns.

    Text cells that a spreadsheet would run as a formula get a leading `'` (`csv_safe_text`).
    """
    d = _directory(directory)
    out = []
    for name, table in tables(run).items():
        p = d / f"{name}.csv"
        df = table
        text_cols = [c for c in df.columns if df[c].dtype == object or pd_is_string_dtype(df[c])]
        if text_cols:
            df = df.copy()
            for c in text_cols:
                df[c] = df[c].map(csv_safe_text)
        with _writing(p):
            df.to_csv(p, index=False, lineterminator="\r\n")  # RFC 4180; quotes a lone CR
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
    for name, table in tables(run).items():
        p = d / f"{name}.parquet"
        # Mixed-type object columns (e.g. all-None) are written as strings rather than failing.
        df = table.copy()
        for col in df.columns:
            if df[col].dtype == object and df[col].map(type).nunique() > 1:
                df[col] = df[col].map(lambda v: None if v is None else str(v))
        with _writing(p):
            df.to_parquet(p, index=False, engine="pyarrow")
        out.append(p)
    return out


# -- Chrome trace event format (chrome://tracing, ui.perfetto.dev) ------------------------------
PID = 1
TID_PHASES, TID_TOKENS, TID_LAYERS = 1, 2, 3
PLACEMENT_NOTE = (
    "modeled placement: a token's layers and components are laid end to end from its start, in "
    "execution order, each for its measured time_ms; the rest of the token is one "
    "'outside layers' slice at its end (in fact the embedding runs before the layers); the true "
    "start times were not recorded"
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
    res = run.resolution_ms
    res_s = f", resolution {res:g} ms" if res is not None else ""
    events: list[dict[str, Any]] = []
    events += _meta("process_name", None, f"llm-energy run {run.run_id} ({run.model.get('name')})")
    events += _meta("thread_name", TID_PHASES, f"phases (energy {kind}{res_s})", 1)
    events += _meta("thread_name", TID_TOKENS, f"tokens (energy {kind}{res_s})", 2)
    events += _meta("thread_name", TID_LAYERS, "layers x components (modeled placement)", 3)

    for ph in run.phases():
        if ph["end_ms"] is None:
            continue
        args = {"energy_j": ph["energy_j"], "avg_power_w": ph["avg_power_w"],
                "energy_kind": kind, "source": source}  # fmt: skip
        if ph["name"] == "tail":
            args["note"] = SUMMARY_DEFINITIONS.get("tail_energy_j", "after the last token")
        events.append(
            {
                "ph": "X", "pid": PID, "tid": TID_PHASES, "name": ph["name"], "cat": "phase",
                "ts": _us(ph["start_ms"]), "dur": _us(ph["end_ms"] - ph["start_ms"]),
                "args": args,
            }
        )  # fmt: skip
    tokens: list[dict[str, Any]] = [dict(t) for t in run.tokens()]  # keys read by name below
    for tok in tokens:
        if tok["start_ms"] is None or tok["duration_ms"] is None:
            continue  # no per-token timing: nothing to place
        events.append(
            {
                "ph": "X", "pid": PID, "tid": TID_TOKENS, "name": f"token {tok['index']}",
                "cat": "token", "ts": _us(tok["start_ms"]), "dur": _us(tok["duration_ms"]),
                "args": {"text": tok["text"], "token_id": tok["token_id"], "phase": tok["phase"],
                         "energy_j": tok["energy_j"], "avg_power_w": tok["avg_power_w"],
                         "below_resolution": tok.get("below_resolution"),
                         "instrumented": tok.get("instrumented"),
                         **{k: tok[k] for k in TOKEN_LAYER_COLUMNS if k in tok},
                         "energy_kind": kind, "source": source},
            }
        )  # fmt: skip
    if detail != "token":
        events += _layer_events(run, tokens, detail)
    events += _power_counters(run, kind, source)
    return [strict_json(e) for e in events]


def _layer_events(run: Run, tokens: list[dict[str, Any]], detail: str) -> list[dict[str, Any]]:
    from .view.text import layer_label

    arr = run.layers
    if arr.size == 0:
        return []
    ti = run.metric_names.index("time_ms") if "time_ms" in run.metric_names else None
    ei = run.metric_names.index("energy_j") if "energy_j" in run.metric_names else None
    if ti is None:
        return []
    out: list[dict[str, Any]] = []
    for i, tok in enumerate(tokens[: arr.shape[0]]):
        if tok["start_ms"] is None or tok["duration_ms"] is None:
            continue
        hooked = layers_time_ms(arr[i, :, :, ti])
        if not hooked > 0:
            continue
        times = np.nan_to_num(arr[i, :, :, ti].astype(np.float64), nan=0.0)
        # measured ms -> trace ms: 1, unless the hooked time exceeds the token's (clock skew)
        scale = tok["duration_ms"] / share_denominator_ms(tok["duration_ms"], hooked)
        t = float(tok["start_ms"])
        for li, lname in enumerate(run.layer_names):
            layer_ms = float(times[li].sum())
            if layer_ms <= 0:
                continue
            e_layer = float(np.nansum(arr[i, li, :, ei])) if ei is not None else None
            out.append(
                {
                    "ph": "X", "pid": PID, "tid": TID_LAYERS, "name": layer_label(lname),
                    "cat": "layer", "ts": _us(t), "dur": _us(layer_ms * scale),
                    "args": {"token": i, "layer": lname, "time_ms": layer_ms,
                             "energy_j": e_layer, "energy_kind": "modeled",
                             "time_kind": "measured", "placement": PLACEMENT_NOTE},
                }
            )  # fmt: skip
            if detail == "component":
                tc = t
                for ci, cname in enumerate(run.component_names):
                    c_ms = float(times[li, ci])
                    if c_ms <= 0:
                        continue
                    vals = {
                        export_metric_name(m): float(arr[i, li, ci, k])
                        for k, m in enumerate(run.metric_names)
                    }
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
        rest_ms = float(tok["start_ms"]) + tok["duration_ms"] - t
        if rest_ms > 1e-9:
            out.append(
                {
                    "ph": "X", "pid": PID, "tid": TID_LAYERS, "name": OUTSIDE_LAYERS,
                    "cat": "outside_layers", "ts": _us(t), "dur": _us(rest_ms),
                    "args": {"token": i, "time_ms": rest_ms,
                             "energy_j": tok.get("outside_layers_j"),
                             "layer_coverage": tok.get("layer_coverage"),
                             "energy_kind": "modeled", "placement": PLACEMENT_NOTE},
                }
            )  # fmt: skip
    return out


def _power_counters(run: Run, kind: str, source: str) -> list[dict[str, Any]]:
    pw = {**run.power_arrays(), **run.rail_arrays()}  # per-GPU rails: counters of their own
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
                "energy_scope": run.power_info.get("scope"),
                "energy_resolution_ms": run.resolution_ms,
                "power_interval_ms": run.power_info.get("interval_ms"),
                "power_window_ms": run.power_info.get("power_window_ms"),
                "layer_coverage": run.summary().get("layer_coverage"),
                "layer_placement": PLACEMENT_NOTE,
                "metrics": [export_metric_name(m) for m in run.metric_names],
            }
        ),
    }
    with _writing(p):
        p.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")))
    return p
