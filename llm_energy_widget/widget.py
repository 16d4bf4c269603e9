"""The live notebook widget: run events -> coalesced binary deltas -> the anywidget frontend.

Transport design (why it looks like this):
- Live updates are custom messages with binary buffers holding only what is new since the last
  flush, at most `max_rate_hz` per second, sent from a flusher thread (events arrive on the
  generation and sampler threads and must never wait on the frontend).
- A view that joins late (page reload, a second output) asks for a snapshot; the kernel answers
  with the same encoding built from a replay of the run, so one decoder serves both.
- When the run ends, the full snapshot is written once into the `snapshot` trait, so a notebook
  saved with widget state, or the offline HTML report, holds the whole run with no kernel.
- Layer rows are quantized to uint8 per token and metric (with the [lo, hi] range sent along):
  30 layers x 9 components x 5 metrics = 1.35 KB/token instead of 6.5 KB in float32. The modeled
  `energy_j` metric is not sent: the view derives it exactly as the Run does (time share x the
  token's energy from E(t)). Full-precision values stay in the Python Run.
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

    @property
    def empty(self) -> bool:
        return self.first_event_s is None


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


def quantize_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, L, C, M] float -> (uint8 codes [n, L, C, M], float32 [n, M, 2] lo/hi); NaN -> 255."""
    v = np.asarray(rows, dtype=np.float64)
    finite = np.isfinite(v)
    lo = np.where(finite, v, np.inf).min(axis=(1, 2))
    hi = np.where(finite, v, -np.inf).max(axis=(1, 2))
    empty = ~np.isfinite(lo)
    lo[empty], hi[empty] = 0.0, 0.0
    span = (hi - lo)[:, None, None, :]
    scaled = np.where(span > 0, (v - lo[:, None, None, :]) / np.where(span > 0, span, 1.0), 0.0)
    codes = np.where(finite, np.rint(np.clip(scaled, 0.0, 1.0) * Q_MAX), Q_NAN).astype(np.uint8)
    return codes, np.stack([lo, hi], axis=-1).astype(np.float32)


def dequantize_rows(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of `quantize_rows` (for tests and the static rendering of decoded data)."""
    lo = ranges[:, None, None, :, 0].astype(np.float64)
    hi = ranges[:, None, None, :, 1].astype(np.float64)
    out = lo + codes.astype(np.float64) / Q_MAX * (hi - lo)
    return np.where(codes == Q_NAN, np.nan, out)


def encode(
    batch: Batch, *, kind: str, seq: int, run_key: str, live_metric_idx: list[int]
) -> tuple[dict[str, Any], list[bytes]]:
    """A batch as (JSON header, binary buffers); header["buffers"] names each buffer in order."""
    header: dict[str, Any] = {"type": kind, "seq": seq, "run_key": run_key, "buffers": []}
    buffers: list[bytes] = []

    def put(name: str, arr: np.ndarray) -> None:
        header["buffers"].append(name)
        buffers.append(np.ascontiguousarray(arr).tobytes())

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
        put("te_idx", np.asarray(idx, dtype=np.uint32))
        put("te_j", np.asarray([batch.token_energy[i] for i in idx], dtype=np.float32))
    if batch.layers:
        idx = sorted(batch.layers)
        rows = np.stack([np.asarray(batch.layers[i])[..., live_metric_idx] for i in idx])
        codes, ranges = quantize_rows(rows)
        header["layers"] = {"shape": list(rows.shape[1:])}
        put("layer_idx", np.asarray(idx, dtype=np.uint32))
        put("layer_range", ranges)
        put("layer_q", codes)
    if batch.phases:
        header["phases"] = list(batch.phases.values())
    for key in ("status", "error", "summary"):
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
            "power": {
                "source": run.power_info.get("source"),
                "kind": run.power_info.get("kind", "estimated"),
                "interval_ms": run.power_info.get("interval_ms"),
            },
            "layer_names": run.layer_names,
            "component_names": run.component_names,
            "metric_names": run.metric_names,
            "live_metrics": live,
            "power_cols": list(POWER_COLS),
            "labels": run.labels(),
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
        replay_batch(run), kind="snapshot", seq=seq, run_key=key, live_metric_idx=live_idx
    )
    return {"header": header, "buffers": buffers}


def _live_metric_idx(run: Run) -> list[int]:
    return [i for i, m in enumerate(run.metric_names) if m not in DERIVED_METRICS]


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
