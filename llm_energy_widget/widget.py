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
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from .core.attribution import OUTSIDE_LAYERS, layers_time_ms
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
        header["buffers"].append(name)
        buffers.append(np.ascontiguousarray(arr).tobytes())

    def put_index(name: str, idx: list[int], part: dict[str, Any]) -> None:
        """Indices in a row (a snapshot, most deltas) go as `first` only, not as a buffer."""
        if idx == list(range(idx[0], idx[0] + len(idx))):
            part["first"] = int(idx[0])
        else:
            put(name, np.asarray(idx, dtype=np.uint32))

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


def snapshot_of(run: Run, run_key: str | None = None, seq: int = 0) -> dict[str, Any]:
    """The whole run as {"header", "buffers"}: the `snapshot` trait and the report's data."""
    key = run_key or run.run_id
    live_idx = _live_metric_idx(run)
    header, buffers = encode(
        replay_batch(run),
        kind="snapshot",
        seq=seq,
        run_key=key,
        live_metric_idx=live_idx,
        time_col=_time_col(run),
    )
    return {"header": header, "buffers": buffers}


def _live_metric_idx(run: Run) -> list[int]:
    return [i for i, m in enumerate(run.metric_names) if m not in DERIVED_METRICS]


def _time_col(run: Run) -> int | None:
    live = [m for m in run.metric_names if m not in DERIVED_METRICS]
    return live.index("time_ms") if "time_ms" in live else None


# -- the widget ------------------------------------------------------------------------------------


class EnergyWidget(anywidget.AnyWidget):
    """Live view of a Run; follows the next run when `attach` is called again."""

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
        self._displays: list[Any] = []
        self.on_msg(self._on_frontend_msg)
        if run is not None:
            self.attach(run)

    # -- run lifecycle ----------------------------------------------------------------------------
    def attach(self, run: Run) -> EnergyWidget:
        """Show `run` (live or finished), replacing the run shown so far."""
        from .run import Run

        if not isinstance(run, Run):
            raise InvalidInputError(f"EnergyWidget.attach expects a Run, got {type(run).__name__}")
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
        if run.done:
            self._write_final_snapshot(run)
            return self
        self._unsubscribe = run.subscribe(self._on_event, replay=True)
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"energy-widget-{run.run_id}", daemon=True
        )
        self._flusher.start()
        return self

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
        with self._flush_lock:
            if run is not self.run:
                return
            self.snapshot = snapshot_of(run, self._run_key, self._seq)
        self._update_displays()

    # -- frontend -> kernel -----------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "stop":
            self.cancel()
        elif kind == "snapshot":
            self._send_snapshot()

    def _send_snapshot(self) -> None:
        """A late view's catch-up: everything so far, tagged with the last delta's seq."""
        run = self.run
        if run is None:
            return
        with self._flush_lock:
            seq = self._seq  # deltas after this one may repeat snapshot data: the view dedupes
            snap = snapshot_of(run, self._run_key, seq)
        self.send(snap["header"], snap["buffers"])

    # -- display ----------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus a static rendering for renderers without widgets."""
        out = super()._repr_mimebundle_(**kwargs)
        if out is None:
            return None
        data, metadata = out
        if self.run is not None:
            from .static_render import render_html, render_text

            data = {**data, "text/html": render_html(self.run), "text/plain": render_text(self.run)}
        return data, metadata

    def _ipython_display_(self) -> None:
        """Display with a display_id, so the static fallback is refreshed when the run ends."""
        from IPython.display import display

        out = self._repr_mimebundle_()
        if out is None:
            return
        data, metadata = out
        handle = display(data, metadata=metadata, raw=True, display_id=True)
        if handle is not None:
            self._displays.append(handle)

    def _update_displays(self) -> None:
        if not self._displays:
            return
        out = self._repr_mimebundle_()
        if out is None:
            return
        data, metadata = out
        for handle in self._displays:
            try:
                handle.update(data, metadata=metadata, raw=True)
            except Exception:
                log.exception("energy widget: could not refresh the static fallback")


_WIDGETS: weakref.WeakKeyDictionary[Run, EnergyWidget] = weakref.WeakKeyDictionary()


def widget_for(run: Run) -> EnergyWidget:
    """The widget showing `run` (one per run, so displaying a Run twice shares one model)."""
    w = _WIDGETS.get(run)
    if w is None or w.run is not run or w.comm is None:
        w = EnergyWidget(run)
        _WIDGETS[run] = w
    return w
