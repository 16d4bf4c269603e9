"""The live notebook widget: run events -> coalesced binary deltas -> the anywidget frontend.

Transport design (why it looks like this):
- Live updates are custom messages with binary buffers holding only what is new since the last
  flush, at most `max_rate_hz` per second, sent from a flusher thread (events arrive on the
  generation and sampler threads and must never wait on the frontend).
- A view that joins late (page reload, a second output) asks for a snapshot; the kernel answers
  with the same encoding built from a replay of the run, so one decoder serves both.
- When the run ends, the full snapshot is written once into the `snapshot` trait, so a notebook
  saved with widget state, or the offline HTML report, holds the whole run with no kernel.
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

import hashlib
import logging
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from .core.attribution import OUTSIDE_LAYERS, layers_time_ms, share_denominator_ms
from .core.schema import (
    ESTIMATE_UNCERTAINTY,
    FIGURE_ORIGINS,
    KIND_DEFINITIONS,
    METRIC_LABELS,
    METRIC_UNITS,
    SUMMARY_DEFINITIONS,
    SUMMARY_LABELS,
)
from .errors import InvalidInputError
from .power.record import RAILS

if TYPE_CHECKING:
    from .run import Run

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
BUNDLE_JS = STATIC_DIR / "widget.js"
BUNDLE_CSS = STATIC_DIR / "widget.css"

POWER_COLS: tuple[str, ...] = ("t_ms", *(f"{r}_w" for r in RAILS), "total_w", "energy_j")
DERIVED_METRICS: tuple[str, ...] = ("energy_j",)
"""Metrics the view recomputes from others, so they are never sent."""
Q_NAN = 255
Q_MAX = 254.0
Q_ZERO = 0
"""On the log scale: code 0 is exactly 0, codes 1..254 are log-spaced from lo to hi, 255 is NaN."""
Q_LOG_STEPS = 253.0
LAYER_CODES = "log8"
"""The header's name for the layer codes' scale (`quantize_rows`); a header without it is linear."""
DEFAULT_MAX_RATE_HZ = 20.0

_MISSING_BUNDLE_ESM = """
export default { render({ el }) {
  el.textContent = "llm-energy-widget: the frontend bundle is not built " +
    "(run `npm install && npm run build` in the source tree).";
} };
"""


def _bundle_or_placeholder() -> Path | str:
    return BUNDLE_JS if BUNDLE_JS.is_file() else _MISSING_BUNDLE_ESM


def _css_or_empty() -> Path | str:
    return BUNDLE_CSS if BUNDLE_CSS.is_file() else ""


# -- encoding --------------------------------------------------------------------------------------


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
            self.power.append(tuple(_f(payload.get(k)) for k in POWER_COLS))
        elif event == "token":
            self.tokens.append(payload)
        elif event == "token_energy":
            self.token_energy[int(payload["index"])] = float(payload["energy_j"])
        elif event == "layers":
            self.layers[int(payload["index"])] = payload["values"]
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


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


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
        }
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
            header[key] = _jsonable(value)
    if batch.first_event_s is not None:
        header["event_ms"] = batch.first_event_s * 1000.0
    header["sent_ms"] = time.time() * 1000.0
    return header, buffers


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if f != f or f in (float("inf"), float("-inf")) else f
    if isinstance(x, np.integer):
        return int(x)
    return x


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
    if not isinstance(resolution, (int, float)) or resolution != resolution:
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
    return _jsonable(
        {
            "run_key": run_key,
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
    idx = [i for i in range(n) if toks[i]["phase"] != "prefill"] or list(range(n))
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
                "coverage": _jsonable(means["coverage"]),
                "outside_ms": _jsonable(means["outside_ms"]),
                "outside_j": _jsonable(means["outside_j"]),
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


# -- outputs of a run ---------------------------------------------------------------------------


WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def _current_cell() -> str | None:
    """The msg_id of the cell execution running now (None outside a kernel, or off its thread).

    Outputs made by one execution (a loop of runs in one cell) are re-used by its next run;
    outputs of other cells keep the run they showed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except Exception:
        return None
    header = parent.get("header") if isinstance(parent, dict) else None
    if not isinstance(header, dict) or header.get("msg_type") != "execute_request":
        return None
    msg_id = header.get("msg_id")
    return msg_id if isinstance(msg_id, str) else None


def _fallback_bundle(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """Used only if the saved bundle cannot be made: still no widget view in the output."""
    from .static_render import render_html, render_text

    return {"text/plain": render_text(run), "text/html": render_html(run)}, {}


def final_bundle(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every output of a finished run holds (`view.saved`): image, text, HTML; no widget."""
    try:
        from .view.saved import saved_bundle

        return saved_bundle(run)
    except Exception:
        log.exception("energy widget: the saved view of run %s failed", run.run_id)
        return _fallback_bundle(run)


class RunOutputs:
    """The notebook outputs (display handles) showing one run live.

    When the run ends each is replaced by the run's final bundle, from the `done` listener: that
    runs on the generation thread before the run's `done` flag is set, so the update reaches the
    kernel's iopub before `run.wait()` returns, and a notebook executed headless (nbclient,
    papermill, `make demo`) saves it. An output added after the run ended is replaced at once.
    """

    def __init__(self, run: Run) -> None:
        self._run = weakref.ref(run)
        self._lock = threading.Lock()
        self._live: list[Any] = []
        self._auto_cells: set[str] = set()
        self._final = False
        self._unsubscribe: Any = run.subscribe(self._on_event)
        self._on_final: list[Any] = []
        if run.done:
            self.finalize()

    def _on_event(self, event: str, _payload: dict[str, Any]) -> None:
        if event == "done":
            self.finalize()

    @property
    def final(self) -> bool:
        return self._final

    def add(self, handle: Any, cell: str | None = None, auto: bool = False) -> None:
        with self._lock:
            if not self._final:
                self._live.append(handle)
                if auto and cell is not None:
                    self._auto_cells.add(cell)
                return
        run = self._run()
        if run is not None:
            self._replace([handle], run)

    def shown_by_auto_display_in(self, cell: str | None) -> bool:
        """An output made by a widget following runs already shows this run in `cell`."""
        with self._lock:
            return cell is not None and cell in self._auto_cells and not self._final

    def when_final(self, fn: Any) -> None:
        """Call `fn()` once the outputs hold the final bundle (now, if they already do)."""
        with self._lock:
            if not self._final:
                self._on_final.append(fn)
                return
        fn()

    def finalize(self) -> None:
        """Replace every live output by the final bundle (idempotent)."""
        run = self._run()
        with self._lock:
            if self._final or run is None:
                return
            self._final = True
            handles, self._live = self._live, []
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            callbacks, self._on_final = self._on_final, []
        if unsubscribe is not None:
            unsubscribe()
        self._replace(handles, run)
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("energy widget: an end-of-run callback failed")

    @staticmethod
    def _replace(handles: list[Any], run: Run) -> None:
        if not handles:
            return
        data, metadata = final_bundle(run)
        for handle in handles:
            _update_output(handle, (data, metadata), run)


_OUTPUTS: weakref.WeakKeyDictionary[Run, RunOutputs] = weakref.WeakKeyDictionary()
_OUTPUTS_LOCK = threading.Lock()


def outputs_of(run: Run) -> RunOutputs:
    with _OUTPUTS_LOCK:
        outs = _OUTPUTS.get(run)
        if outs is None:
            outs = _OUTPUTS[run] = RunOutputs(run)
        return outs


def _display_raw(data: dict[str, Any], metadata: dict[str, Any]) -> Any:
    from IPython.display import display

    return display(data, metadata=metadata, raw=True, display_id=True)


def display_run(run: Run) -> None:
    """Show `run` in the current output: its final bundle if it ended, else a live view that is
    replaced by the final bundle when it ends. Once per cell: a widget following its profiler's
    runs that already shows this run in this cell is not doubled."""
    if run.done or outputs_of(run).final:
        _display_raw(*final_bundle(run))
        return
    if outputs_of(run).shown_by_auto_display_in(_current_cell()):
        return
    _display_widget(run)._ipython_display_()


def run_mimebundle(run: Run) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The bundle a Run shows as (`Run._repr_mimebundle_`)."""
    if run.done:
        return final_bundle(run)
    return _display_widget(run)._repr_mimebundle_()


# -- the widget ------------------------------------------------------------------------------------


@dataclass
class _Output:
    """One output this widget made, and the run it shows (None: waiting for a first run)."""

    handle: Any
    run: Run | None
    cell: str | None


class EnergyWidget(anywidget.AnyWidget):
    """Live view of a Run; follows the next run when `attach` is called again.

    Its outputs in the notebook: an output shows one run. While it runs the output holds the
    widget view; when it ends the output is replaced by the run's final bundle (image, text,
    HTML: `view.saved`), which needs no widget state to reopen. When the widget follows a next
    run (`attach`, the profiler's next `generate`), an output that showed no run yet takes it, an
    output of a run still going keeps showing that run, and an output of a finished run stays
    with it unless the same cell execution starts the next run (a loop in one cell re-uses its
    output). If none is left following, the new run gets a new output in the cell that starts it.
    """

    _esm = _bundle_or_placeholder()
    _css = _css_or_empty()

    meta = traitlets.Dict().tag(sync=True)
    snapshot = traitlets.Dict().tag(sync=True)

    def __init__(self, run: Run | None = None, *, max_rate_hz: float = DEFAULT_MAX_RATE_HZ) -> None:
        super().__init__()
        if not max_rate_hz > 0:
            raise InvalidInputError(f"max_rate_hz must be > 0, got {max_rate_hz!r}")
        self.min_interval_s = 1.0 / float(max_rate_hz)
        self.run: Run | None = None
        self._run_key = ""
        self._seq = 0
        self._pending = Batch()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()  # one flush at a time (flusher vs snapshot requests)
        self._unsubscribe: Any = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._layer_fp: dict[int, bytes] = {}
        self._live_idx: list[int] = []
        self._time_col: int | None = None
        self._last_flush_s = 0.0
        self._outputs: list[_Output] = []
        self._outputs_lock = threading.Lock()  # never held while calling into a Run
        self._displayed = False
        self._close_when_final = False  # an internal widget made only to display one run
        self.on_msg(self._on_frontend_msg)
        if run is not None:
            self.attach(run)

    # -- run lifecycle ----------------------------------------------------------------------------
    def attach(self, run: Run) -> EnergyWidget:
        """Show `run` (live or finished), replacing the run shown so far.

        Outputs that showed an earlier run keep it (see the class docstring); a run still going
        keeps a live view of its own.
        """
        from .run import Run

        if not isinstance(run, Run):
            raise InvalidInputError(f"EnergyWidget.attach expects a Run, got {type(run).__name__}")
        previous = self.run
        self.detach()
        with self._flush_lock, self._lock:
            self.run = run
            self._run_key = f"{run.run_id}:{time.monotonic_ns()}"
            self._seq = 0
            self._pending = Batch()
            self._layer_fp = {}
            self._live_idx = _live_metric_idx(run)
            self._time_col = _time_col(run)
            self._stop = threading.Event()
        self.snapshot = {}
        self.meta = run_meta(run, self._run_key)
        if not run.done:
            # subscribed before the run's outputs are: the live view gets the `done` summary
            # before those outputs are replaced (which renders the image, ~0.5 s)
            self._unsubscribe = run.subscribe(self._on_event, replay=True)
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"energy-widget-{run.run_id}", daemon=True
            )
            self._flusher.start()
        if run is not previous:
            self._move_outputs(run)
        if run.done:
            self._write_final_snapshot(run)
        return self

    def _move_outputs(self, run: Run) -> None:
        """Decide what each output shows now that this widget follows `run`."""
        cell = _current_cell()
        adopt: list[_Output] = []
        hand_over: list[_Output] = []
        with self._outputs_lock:
            keep: list[_Output] = []
            for out in self._outputs:
                if out.run is None:
                    adopt.append(out)
                elif not (out.run.done or outputs_of(out.run).final):
                    hand_over.append(out)  # its run goes on: it keeps a live view of that run
                    continue
                elif cell is not None and out.cell == cell:
                    adopt.append(out)  # the same cell execution started this run: re-use it
                else:
                    continue  # a finished run in another cell: that output stays with it
                keep.append(out)
            self._outputs = keep
        for out in hand_over:
            assert out.run is not None
            other = _display_widget(out.run)
            _update_output(out.handle, other._live_bundle(), out.run)
            with other._outputs_lock:
                other._outputs.append(out)
                other._displayed = True
        fresh = run.done or outputs_of(run).final
        for out in adopt:
            reused = out.run is not None
            out.run = run
            if fresh:
                outputs_of(run).add(out.handle)  # replaced by the run's final bundle at once
            else:
                if reused:
                    _update_output(out.handle, self._live_bundle(), run)
                outputs_of(run).add(out.handle, out.cell)
        if self._displayed and not adopt and cell is not None:
            self._display_live(run, cell, auto=True)

    def detach(self) -> None:
        """Stop following the current run (its data stays in the widget)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=5.0)

    def close(self) -> None:
        self.detach()
        super().close()

    def cancel(self) -> None:
        """What the Stop button does: ask the run to stop; it keeps what it measured."""
        if self.run is not None and not self.run.done:
            self.run.cancel()

    # -- producer side ----------------------------------------------------------------------------
    def _on_event(self, event: str, payload: dict[str, Any]) -> None:
        """Runs on the generation/sampler threads: append and wake the flusher, nothing more."""
        with self._lock:
            self._pending.add(event, payload)
            self._wake.notify()

    def _flush_loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            with self._lock:
                while self._pending.empty and not stop.is_set():
                    self._wake.wait(timeout=1.0)
            if stop.is_set():
                break
            delay = self._last_flush_s + self.min_interval_s - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            try:
                finished = self.flush()
            except Exception:
                log.exception("energy widget: flush failed")
                finished = False
            if finished:
                break

    def flush(self) -> bool:
        """Send what is pending now (normally the flusher does this); True once the run ended."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, Batch()
                run = self.run
            if batch.empty or run is None:
                return False
            self._drop_unchanged_layers(batch)
            self._seq += 1
            header, buffers = encode(
                batch,
                kind="delta",
                seq=self._seq,
                run_key=self._run_key,
                live_metric_idx=self._live_idx,
                time_col=self._time_col,
            )
            self._last_flush_s = time.monotonic()
            self.send(header, buffers)
            if batch.summary is None:
                return False
        self._write_final_snapshot(run)
        return True

    def _drop_unchanged_layers(self, batch: Batch) -> None:
        """The Run re-emits a row when its modeled energy_j is filled; the view derives that."""
        for i in list(batch.layers):
            row = np.asarray(batch.layers[i])[..., self._live_idx]
            fp = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
            if self._layer_fp.get(i) == fp:
                del batch.layers[i]
            else:
                self._layer_fp[i] = fp

    def _write_final_snapshot(self, run: Run) -> None:
        """The finished run into the `snapshot` trait, as saved views hold it (`saved_snapshot`):
        what a view restored from saved widget state, or inside a container, shows."""
        if self._close_when_final:
            return  # closed once the run's outputs hold its final bundle (`_display_widget`)
        with self._flush_lock:
            if run is not self.run:
                return
            self.snapshot = saved_snapshot(run, self._run_key, self._seq)

    # -- frontend -> kernel -----------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "stop":
            self.cancel()
        elif kind == "snapshot":
            self._send_snapshot()
        elif kind == "rows":
            self._send_rows(content.get("index"))

    def _send_snapshot(self) -> None:
        """A late view's catch-up: everything so far, tagged with the last delta's seq; a
        finished run's is the saved snapshot (its view asks for a row it lacks: `_send_rows`)."""
        run = self.run
        if run is None:
            return
        with self._flush_lock:
            seq = self._seq  # deltas after this one may repeat snapshot data: the view dedupes
            done = run.done
            snap = (saved_snapshot if done else snapshot_of)(run, self._run_key, seq)
        self.send(snap["header"], snap["buffers"])

    def _send_rows(self, index: Any) -> None:
        """Full layer rows (every metric) of the tokens a view asked for: a view of a saved
        snapshot holds only the layer times, and asks when it shows a token."""
        run = self.run
        if run is None or not isinstance(index, list):
            return
        wanted = [i for i in index[:MAX_ROWS_PER_REQUEST] if isinstance(i, int) and i >= 0]
        batch = Batch()
        replayed = replay_batch(run)
        batch.layers = {i: replayed.layers[i] for i in wanted if i in replayed.layers}
        if not batch.layers:
            return
        batch.first_event_s = time.time()
        with self._flush_lock:
            header, buffers = encode(
                batch,
                kind="snapshot",
                seq=self._seq,
                run_key=self._run_key,
                live_metric_idx=self._live_idx,
                time_col=self._time_col,
            )
        self.send(header, buffers)

    # -- display ----------------------------------------------------------------------------------
    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The widget view, and a line of text for renderers without widgets."""
        run = self.run
        if run is None:
            text = "EnergyWidget: waiting for a run (it shows the profiler's next run)"
        else:
            text = (
                f"EnergyWidget: run {run.run_id} ({run.model.get('name', '–')}), live; "
                "its figures replace this output when the run ends"
            )
        data = {
            WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.model_id},
            "text/plain": text,
        }
        return data, {}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """A finished run's final bundle (no widget view); else the live widget view."""
        run = self.run
        if run is not None and (run.done or outputs_of(run).final):
            return final_bundle(run)
        return self._live_bundle()

    def _ipython_display_(self) -> None:
        """An output that follows the run live, replaced by its final bundle when it ends."""
        run = self.run
        self._displayed = True
        if run is not None and (run.done or outputs_of(run).final):
            _display_raw(*final_bundle(run))
            return
        self._display_live(run, _current_cell(), auto=False)

    def _display_live(self, run: Run | None, cell: str | None, auto: bool) -> None:
        if self.comm is None:
            return
        _warm_up_image_renderer()
        data, metadata = self._live_bundle()
        handle = _display_raw(data, metadata)
        if handle is None:
            return
        with self._outputs_lock:
            self._outputs.append(_Output(handle, run, cell))
        if run is not None:
            outputs_of(run).add(handle, cell, auto=auto)


MAX_ROWS_PER_REQUEST = 16

_WARMED = threading.Event()


def _warm_up_image_renderer() -> None:
    """Import matplotlib and PIL (~0.7 s) while the run generates, not when it ends (its final
    image is drawn before `run.wait()` returns)."""
    if _WARMED.is_set():
        return
    _WARMED.set()

    def load() -> None:
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import PIL.Image  # noqa: F401
        except Exception:  # the saved view says why when it is made
            pass

    threading.Thread(target=load, name="energy-widget-warm-up", daemon=True).start()


def _update_output(handle: Any, bundle: tuple[dict[str, Any], dict[str, Any]], run: Run) -> None:
    """Replace an output's content; log, never raise (the notebook may be gone)."""
    try:
        handle.update(bundle[0], metadata=bundle[1], raw=True)
    except Exception:
        log.exception("energy widget: could not update an output of run %s", run.run_id)


_WIDGETS: weakref.WeakKeyDictionary[Run, EnergyWidget] = weakref.WeakKeyDictionary()
_DISPLAY_WIDGETS: weakref.WeakKeyDictionary[Run, EnergyWidget] = weakref.WeakKeyDictionary()


def widget_for(run: Run) -> EnergyWidget:
    """The widget showing `run` (`run.widget()`: one per run, so it is one model)."""
    w = _WIDGETS.get(run)
    if w is None or w.run is not run or w.comm is None:
        w = EnergyWidget(run)
        _WIDGETS[run] = w
    return w


def _display_widget(run: Run) -> EnergyWidget:
    """The widget behind displays of a live Run (`display_run`, an output handed over): closed
    once the run's outputs hold its final bundle, so no widget model outlives them."""
    w = _DISPLAY_WIDGETS.get(run)
    if w is None or w.run is not run or w.comm is None:
        w = EnergyWidget(run)
        w._close_when_final = True
        _DISPLAY_WIDGETS[run] = w
        # on a thread of its own: the run's `done` listener holds the run's lock, and closing
        # joins the widget's flusher, which may be waiting for that lock
        closer = threading.Thread(target=w.close, name="energy-widget-close", daemon=True)
        outputs_of(run).when_final(closer.start)
    return w
