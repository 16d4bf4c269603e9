"""The kernel -> view protocol: event batches, their binary encoding and the run snapshot.

Kept apart from the widget so the HTML report, the saved outputs and the tests encode runs without
importing anywidget. `WIRE_VERSION` goes in every run's meta; `js/protocol.ts` is checked against
`protocol_constants()` by a test, so the two sides cannot drift.

Encoding (why it looks like this):
- Layer rows are sent as one byte per cell and metric, on a per-token log scale between the
  metric's smallest positive and largest value (`quantize_rows`): 30 layers x 9 components x 5
  metrics = 1.35 KB/token instead of 6.5 KB in float32, with every value within +-0.9 % of it
  for a 100x range (+-1.8 % for 10,000x), small cells included. The linear 8-bit scale this
  replaced put 40-77 % errors (95th percentile) on the small cells: the layernorms next to the
  MLP. Each token's hooked layer time (`layer_ms`) is sent exact, in float32: the view scales
  the decoded times to it, so the coverage and the cells' sum are exact. Token indices in a row
  go as their first one, not as a buffer, which pays for `layer_ms`. The modeled `energy_j`
  metric is not sent: the view derives it as the Run does (`core.attribution`: the token's
  energy x cell time / token time). Full-precision values stay in the Python Run.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS, layers_time_ms, share_denominator_ms
from ..core.jsonsafe import nan_if_none, strict_json
from ..core.schema import (
    ESTIMATE_UNCERTAINTY,
    FIGURE_ORIGINS,
    KIND_DEFINITIONS,
    METRIC_LABELS,
    METRIC_UNITS,
    POWER_COLUMNS,
    RAILS,
    SUMMARY_DEFINITIONS,
    SUMMARY_LABELS,
)
from .predicted import summary_with_predicted

if TYPE_CHECKING:
    from ..core.run import RunData as Run

__all__ = [
    "BUFFER_DTYPES",
    "DERIVED_METRICS",
    "HEADER_TYPES",
    "LAYER_CODES",
    "MEAN_ALWAYS",
    "POWER_COLS",
    "Q_LOG_STEPS",
    "Q_MAX",
    "Q_NAN",
    "Q_ZERO",
    "SAVED_FULL_ROWS",
    "SAVED_TIME_ROWS",
    "VIEW_NAMES",
    "WIRE_VERSION",
    "Batch",
    "dequantize_rows",
    "encode",
    "layer_means",
    "power_meta",
    "protocol_constants",
    "quantize_rows",
    "relative_precision",
    "replay_batch",
    "run_meta",
    "saved_snapshot",
    "snapshot_of",
]

WIRE_VERSION = 1
"""Bumped when a header field or buffer changes meaning; the view refuses a newer one."""
POWER_COLS: tuple[str, ...] = POWER_COLUMNS
DERIVED_METRICS: tuple[str, ...] = ("energy_j",)
"""Metrics the view recomputes from others, so they are never sent."""
Q_NAN = 255
Q_MAX = 254.0
Q_ZERO = 0
"""On the log scale: code 0 is exactly 0, codes 1..254 are log-spaced from lo to hi, 255 is NaN."""
Q_LOG_STEPS = 253.0
LAYER_CODES = "log8"
"""The header's name for the layer codes' scale (`quantize_rows`); a header without it is linear."""
HEADER_TYPES: tuple[str, ...] = ("delta", "snapshot")
"""header["type"]: a delta (applied in seq order) or a snapshot (a catch-up, idempotent)."""
BUFFER_DTYPES: dict[str, str] = {
    "power": "float32",
    "tok_time": "float32",
    "tok_id": "int32",
    "te_idx": "uint32",
    "te_j": "float32",
    "layer_idx": "uint32",
    "layer_range": "float32",
    "layer_q": "uint8",
    "layer_ms": "float32",
    "lt_idx": "uint32",
    "lt_range": "float32",
    "lt_q": "uint8",
    "lt_ms": "float32",
    "lm": "float32",
}
"""Each binary buffer's element type, by the name header["buffers"] gives it."""


def protocol_constants() -> dict[str, Any]:
    """The protocol's constants as `js/protocol.ts` spells them (its `PROTOCOL`), for the test
    that keeps the two sides equal."""
    return {
        "WIRE_VERSION": WIRE_VERSION,
        "Q_NAN": Q_NAN,
        "Q_MAX": int(Q_MAX),
        "Q_ZERO": Q_ZERO,
        "Q_LOG_STEPS": int(Q_LOG_STEPS),
        "LAYER_CODES": LAYER_CODES,
        "RAILS": list(RAILS),
        "POWER_COLS": list(POWER_COLS),
        "DERIVED_METRICS": list(DERIVED_METRICS),
        "HEADER_TYPES": list(HEADER_TYPES),
        "BUFFER_DTYPES": dict(BUFFER_DTYPES),
    }


@dataclass
class Batch:
    """Events collected since the last flush (or a replay of a whole run, for a snapshot)."""

    power: list[tuple[float, ...]] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    token_energy: dict[int, float] = field(default_factory=dict)
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    phases: dict[tuple[str, float], dict[str, Any]] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    power_info: dict[str, Any] | None = None
    first_event_s: float | None = None

    def add(self, event: str, payload: dict[str, Any]) -> None:
        if self.first_event_s is None:
            self.first_event_s = time.time()
        if event == "power":
            self.power.append(tuple(nan_if_none(payload.get(k)) for k in POWER_COLS))
        elif event == "token":
            self.tokens.append(payload)
        elif event == "token_energy":
            self.token_energy[int(payload["index"])] = float(payload["energy_j"])
        elif event == "layers":
            values = payload["values"]
            # a bare token's row (sampled instrumentation) is all NaN: it has no row to send,
            # and the view must not take 1.35 KB of NaN codes for one
            if np.isnan(np.asarray(values, dtype=np.float32)).all():
                return
            self.layers[int(payload["index"])] = values
        elif event == "phase":
            key = (str(payload["name"]), float(payload["start_ms"]))
            self.phases[key] = {
                "name": payload["name"],
                "start_ms": payload["start_ms"],
                "end_ms": payload.get("end_ms"),
            }
        elif event == "status":
            self.status = {"status": payload.get("status"), "reason": payload.get("reason")}
        elif event == "error":
            self.error = {"message": payload.get("message"), "type": payload.get("type")}
        elif event == "done":
            self.summary = payload
        elif event == "power_info":  # what the source chose once open: badges follow it live
            self.power_info = power_meta(payload)

    @property
    def empty(self) -> bool:
        return self.first_event_s is None


def quantize_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, L, C, M] float -> (uint8 codes [n, L, C, M], float32 [n, M, 2] lo/hi); NaN -> 255.

    Per token and metric. Where no value is negative (times, |x| statistics, sparsity) the scale
    is logarithmic: lo is the smallest positive value, so every cell keeps the same relative
    precision, exp(ln(hi / lo) / 506) - 1 at worst; 0 is code 0, exactly. A token and metric with
    negative values keeps a linear scale over [lo, hi] (lo < 0 tells the decoder).
    """
    v = np.asarray(rows, dtype=np.float64)
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        lo_all = np.where(finite, v, np.inf).min(axis=(1, 2))
        hi = np.where(finite, v, -np.inf).max(axis=(1, 2))
        lo_pos = np.where(finite & (v > 0), v, np.inf).min(axis=(1, 2))
    empty = ~np.isfinite(lo_all)
    hi[empty] = 0.0
    linear = ~empty & (lo_all < 0)
    lo = np.where(linear, lo_all, np.where(np.isfinite(lo_pos), lo_pos, 0.0))
    lo[empty] = 0.0
    # the decoder works from the float32 range: quantize against the same numbers
    lo = lo.astype(np.float32).astype(np.float64)
    hi = hi.astype(np.float32).astype(np.float64)
    lo4, hi4, lin4 = lo[:, None, None, :], hi[:, None, None, :], linear[:, None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        span = hi4 - lo4
        lin_codes = np.where(span > 0, (v - lo4) / np.where(span > 0, span, 1.0), 0.0) * Q_MAX
        ratio = np.where((lo4 > 0) & (hi4 > lo4), np.log(hi4 / np.where(lo4 > 0, lo4, 1.0)), 0.0)
        pos = np.log(np.where(v > 0, v, 1.0) / np.where(lo4 > 0, lo4, 1.0))
        log_codes = 1.0 + np.where(ratio > 0, pos / np.where(ratio > 0, ratio, 1.0), 0.0) * (
            Q_LOG_STEPS
        )
        log_codes = np.where(v > 0, np.clip(log_codes, 1.0, Q_MAX), float(Q_ZERO))
    codes = np.where(lin4, np.clip(lin_codes, 0.0, Q_MAX), log_codes)
    codes = np.where(finite, np.rint(codes), Q_NAN).astype(np.uint8)
    return codes, np.stack([lo, hi], axis=-1).astype(np.float32)


def dequantize_rows(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of `quantize_rows` (for tests and the static rendering of decoded data)."""
    lo = ranges[:, None, None, :, 0].astype(np.float64)
    hi = ranges[:, None, None, :, 1].astype(np.float64)
    c = codes.astype(np.float64)
    linear = lo + c / Q_MAX * (hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), 1.0)
        log = np.where(codes == Q_ZERO, 0.0, lo * ratio ** ((c - 1.0) / Q_LOG_STEPS))
    out = np.where(lo > 0, log, linear)
    return np.where(codes == Q_NAN, np.nan, out)


def relative_precision(ranges: np.ndarray) -> np.ndarray:
    """[n, M] worst relative error of a decoded value on the log scale (NaN where linear)."""
    lo = ranges[..., 0].astype(np.float64)
    hi = ranges[..., 1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.expm1(np.log(np.where(lo > 0, hi / lo, np.nan)) / (2 * Q_LOG_STEPS))
    return out


def encode(
    batch: Batch,
    *,
    kind: str,
    seq: int,
    run_key: str,
    live_metric_idx: list[int],
    time_col: int | None = None,
) -> tuple[dict[str, Any], list[bytes]]:
    """A batch as (JSON header, binary buffers); header["buffers"] names each buffer in order.

    `time_col` is the position of `time_ms` among the live metrics: each layer row's hooked time
    (`layer_ms`) is sent exact alongside the codes.
    """
    header: dict[str, Any] = {"type": kind, "seq": seq, "run_key": run_key, "buffers": []}
    buffers: list[bytes] = []

    def put(name: str, arr: np.ndarray) -> None:
        _put(header, buffers, name, arr)

    def put_index(name: str, idx: list[int], part: dict[str, Any]) -> None:
        _put_index(header, buffers, name, idx, part)

    if batch.power:
        put("power", np.asarray(batch.power, dtype=np.float32))
    if batch.tokens:
        toks = batch.tokens
        header["tokens"] = {
            "first": int(toks[0]["index"]),
            "text": [str(t["text"]) for t in toks],
            "phase": [t.get("phase") for t in toks],
            # True: the layer instrumentation ran (a row follows); False: bare, no row ever;
            # None: a token-level run. Absent in older messages: the view reads it as unknown.
            "instrumented": [t.get("instrumented") for t in toks],
        }
        seqs = [int(t.get("sequence") or 0) for t in toks]
        if any(seqs):  # a batch's rows; absent: every token is sequence 0 (one prompt)
            header["tokens"]["sequence"] = seqs
        put("tok_time", np.asarray([[t["start_ms"], t["end_ms"]] for t in toks], np.float32))
        put("tok_id", np.asarray([t["token_id"] for t in toks], dtype=np.int32))
    if batch.token_energy:
        idx = sorted(batch.token_energy)
        header["token_energy"] = {}
        put_index("te_idx", idx, header["token_energy"])
        put("te_j", np.asarray([batch.token_energy[i] for i in idx], dtype=np.float32))
    if batch.layers:
        idx = sorted(batch.layers)
        rows = np.stack([np.asarray(batch.layers[i])[..., live_metric_idx] for i in idx])
        codes, ranges = quantize_rows(rows)
        header["layers"] = {"shape": list(rows.shape[1:]), "codes": LAYER_CODES}
        put_index("layer_idx", idx, header["layers"])
        put("layer_range", ranges)
        put("layer_q", codes)
        if time_col is not None:
            hooked = [layers_time_ms(rows[j, :, :, time_col]) for j in range(len(idx))]
            put("layer_ms", np.asarray(hooked, dtype=np.float32))
    if batch.phases:
        header["phases"] = list(batch.phases.values())
    for key in ("status", "error", "summary", "power_info"):
        value = getattr(batch, key)
        if value is not None:
            header[key] = strict_json(value)
    if batch.first_event_s is not None:
        header["event_ms"] = batch.first_event_s * 1000.0
    header["sent_ms"] = time.time() * 1000.0
    return header, buffers


VIEW_NAMES: dict[str, Any] = {
    "summary": SUMMARY_LABELS,
    "definitions": SUMMARY_DEFINITIONS,
    "metrics": METRIC_LABELS,
    "units": METRIC_UNITS,
    "outside_layers": OUTSIDE_LAYERS,
    "kinds": KIND_DEFINITIONS,
    "origins": FIGURE_ORIGINS,
    "estimate_uncertainty": ESTIMATE_UNCERTAINTY,
}
"""The display names every view uses (`core.schema`), sent once in the meta: the frontend never
spells a figure's name itself."""


def power_meta(info: dict[str, Any]) -> dict[str, Any]:
    """What the views show about the power source; missing keys are None.

    `resolution_ms` is the energy figures' real time resolution (the source's native one when it
    is coarser than the poll interval), falling back to `interval_ms` for sources that do not say.
    """
    resolution = info.get("resolution_ms")
    if not isinstance(resolution, (int, float)) or math.isnan(resolution):
        resolution = info.get("interval_ms")
    return {
        "source": info.get("source"),
        "kind": info.get("kind", "estimated"),
        "scope": info.get("scope"),
        "interval_ms": info.get("interval_ms"),
        "native_interval_ms": info.get("native_interval_ms"),
        "resolution_ms": resolution,
        "power_window_ms": info.get("power_window_ms"),
        "description": info.get("description"),
    }


def run_meta(run: Run, run_key: str) -> dict[str, Any]:
    """What the view needs once per run: names, labels, settings, the power source."""
    live = [m for m in run.metric_names if m not in DERIVED_METRICS]
    return strict_json(
        {
            "run_key": run_key,
            "wire_version": WIRE_VERSION,
            "run_id": run.run_id,
            "model": run.model.get("name"),
            "prompt": run.prompt[:2000],
            "max_new_tokens": run.settings.get("max_new_tokens"),
            "level": run.level,
            "power": power_meta(run.power_info),
            "layer_names": run.layer_names,
            "component_names": run.component_names,
            "metric_names": run.metric_names,
            "live_metrics": live,
            "power_cols": list(POWER_COLS),
            "labels": run.labels(),
            "names": VIEW_NAMES,
        }
    )


def replay_batch(run: Run) -> Batch:
    """Everything the run holds now, as one batch (atomic: taken under the run's lock)."""
    batch = Batch()
    events: list[tuple[str, dict[str, Any]]] = []
    unsub = run.subscribe(lambda e, p: events.append((e, p)), replay=True)
    n_replayed = len(events)
    unsub()
    for event, payload in events[:n_replayed]:
        batch.add(event, payload)
    return batch


SAVED_FULL_ROWS = 0
"""Tokens whose activation statistics a saved view carries (the `snapshot` trait saved with
widget state, a finished run's notebook output): none; their exact means are always there."""
SAVED_TIME_ROWS = 512
"""Tokens whose layer times (8-bit log codes) a saved view carries: all of them up to this many,
then this many spread over the run, the first and last included."""
MEAN_ALWAYS = ("act_mean", "act_std", "act_max", "sparsity")
"""Metrics whose exact means a reduced snapshot always carries: no token's row holds them. The
times' and modeled energies' means are added only when some token's time row is left out."""


def _spread(indices: list[int], n: int | None) -> list[int]:
    """At most `n` of `indices`, the first and the last included, the rest evenly spaced."""
    if n is None or len(indices) <= n:
        return list(indices)
    if n <= 0:
        return []
    if n == 1:
        return [indices[-1]]
    picks = np.unique(np.rint(np.linspace(0, len(indices) - 1, n)).astype(int))
    return [indices[int(i)] for i in picks]


def layer_means(run: Run) -> dict[str, Any] | None:
    """The mean over the decode tokens (the prefill token alone when there is none), exact from
    `run.layers`: every metric per cell, the tokens' layer coverage and what lies outside.

    Computed as the views compute them (`core.attribution`), so a view of a saved snapshot that
    lacks some tokens' rows still shows the run's exact means.
    """
    arr = run.layers
    if arr.size == 0:
        return None
    toks = run.tokens()
    n = min(len(toks), arr.shape[0])
    # bare tokens (sampled instrumentation) have no row: never part of the mean
    rows = [i for i in range(n) if toks[i].get("instrumented") is not False]
    idx = [i for i in rows if toks[i]["phase"] != "prefill"] or rows
    if not idx:
        return None
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell never measured stays NaN
        means = np.nanmean(arr[idx].astype(np.float64), axis=0)  # [L, C, M]
    hooked_sum = share_sum = outside_j = 0.0
    n_cov = n_out = 0
    for i in idx:
        hooked = toks[i].get("layers_ms")
        dur = toks[i].get("duration_ms")
        if hooked is None:
            continue
        share = share_denominator_ms(float("nan") if dur is None else dur, hooked)
        if not share > 0:
            continue
        hooked_sum += hooked
        share_sum += share
        n_cov += 1
        e = toks[i].get("energy_j")
        if e is not None:
            outside_j += e * (1.0 - hooked / share)
            n_out += 1
    return {
        "values": means.astype(np.float32),
        "tokens": len(idx),
        "coverage": hooked_sum / share_sum if share_sum > 0 else None,
        "outside_ms": (share_sum - hooked_sum) / n_cov if n_cov else None,
        "outside_j": outside_j / n_out if n_out else None,
    }


def snapshot_of(
    run: Run,
    run_key: str | None = None,
    seq: int = 0,
    *,
    full_rows: int | None = None,
    time_rows: int | None = None,
    final: bool | None = None,
) -> dict[str, Any]:
    """The run as {"header", "buffers"}: a late view's catch-up, the trait, the saved views' data.

    By default every token's full layer row (the HTML report, a live run's catch-up). With
    `full_rows` / `time_rows` (`saved_snapshot`), a finished run keeps every metric for
    `full_rows` tokens, the layer times of `time_rows` tokens and the exact means over the
    decode tokens (`layer_means`): a 2,000-token 30 x 12 component run is 0.3 MB instead of
    3.8 MB. A live view asks the kernel for a row it lacks when it shows that token.
    `final`: the run has ended (default `run.done`; True from its `done` listener, which runs
    before that flag is set), so its summary is in the snapshot.
    """
    key = run_key or run.run_id
    live_idx = _live_metric_idx(run)
    batch = replay_batch(run)
    final = run.done if final is None else final
    if final and batch.summary is None:
        batch.summary = run.summary()
    if final and batch.summary is not None:
        batch.summary = summary_with_predicted(run, batch.summary)
    time_col = _time_col(run)
    reduce = final and batch.layers and (full_rows is not None or time_rows is not None)
    kept_time: list[int] = []
    rows: list[int] = []
    if reduce:
        rows = sorted(batch.layers)
        full = _spread(rows, full_rows)
        if time_col is not None:
            kept_time = [i for i in _spread(rows, time_rows) if i not in set(full)]
        time_only = {i: batch.layers[i] for i in kept_time}
        batch.layers = {i: batch.layers[i] for i in full}
    header, buffers = encode(
        batch,
        kind="snapshot",
        seq=seq,
        run_key=key,
        live_metric_idx=live_idx,
        time_col=time_col,
    )
    if reduce:
        n_rows = len(batch.layers) + len(kept_time)
        if kept_time and time_col is not None:
            ti = live_idx[time_col]
            rows_t = np.stack([np.asarray(time_only[i])[..., ti : ti + 1] for i in kept_time])
            codes, ranges = quantize_rows(rows_t)
            part: dict[str, Any] = {"shape": list(rows_t.shape[1:3]), "codes": LAYER_CODES}
            _put_index(header, buffers, "lt_idx", kept_time, part)
            _put(header, buffers, "lt_range", ranges[:, 0, :])
            _put(header, buffers, "lt_q", codes[..., 0])
            hooked = [layers_time_ms(rows_t[j, :, :, 0]) for j in range(len(kept_time))]
            _put(header, buffers, "lt_ms", np.asarray(hooked, dtype=np.float32))
            header["layer_time"] = part
        means = layer_means(run)
        if means is not None:
            every_time_row = n_rows >= len(rows)
            names = [
                m
                for m in run.metric_names
                if m in MEAN_ALWAYS or not every_time_row or time_col is None
            ]
            cols = [run.metric_names.index(m) for m in names]
            header["layer_means"] = {
                "metrics": names,
                "tokens": means["tokens"],
                "coverage": strict_json(means["coverage"]),
                "outside_ms": strict_json(means["outside_ms"]),
                "outside_j": strict_json(means["outside_j"]),
                "rows": {"all": len(batch.layers), "time": n_rows, "of": len(rows)},
            }
            _put(header, buffers, "lm", means["values"][..., cols])
    return {"header": header, "buffers": buffers}


def saved_snapshot(run: Run, run_key: str | None = None, seq: int = 0) -> dict[str, Any]:
    """What a saved view of a finished run carries (`SAVED_FULL_ROWS`, `SAVED_TIME_ROWS`)."""
    return snapshot_of(
        run, run_key, seq, full_rows=SAVED_FULL_ROWS, time_rows=SAVED_TIME_ROWS, final=True
    )


def _put(header: dict[str, Any], buffers: list[bytes], name: str, arr: np.ndarray) -> None:
    header["buffers"].append(name)
    buffers.append(np.ascontiguousarray(arr).tobytes())


def _put_index(
    header: dict[str, Any], buffers: list[bytes], name: str, idx: list[int], part: dict[str, Any]
) -> None:
    """Indices in a row go as `first` only, not as a buffer."""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        part["first"] = int(idx[0])
    else:
        _put(header, buffers, name, np.asarray(idx, dtype=np.uint32))


def _live_metric_idx(run: Run) -> list[int]:
    return [i for i, m in enumerate(run.metric_names) if m not in DERIVED_METRICS]


def _time_col(run: Run) -> int | None:
    live = [m for m in run.metric_names if m not in DERIVED_METRICS]
    return live.index("time_ms") if "time_ms" in live else None
