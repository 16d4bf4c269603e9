"""The live notebook widget: run events -> coalesced binary deltas (`view.wire`) -> the frontend.

Transport design (why it looks like this):
- Live updates are custom messages with binary buffers holding only what is new since the last
  flush, at most `max_rate_hz` per second, sent from a flusher thread (events arrive on the
  generation and sampler threads and must never wait on the frontend).
- A view that joins late (page reload, a second output) asks for a snapshot; the kernel answers
  with the same encoding built from a replay of the run, so one decoder serves both.
- When the run ends, the full snapshot is written once into the `snapshot` trait, so a notebook
  saved with widget state, or the offline HTML report, holds the whole run with no kernel.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from ..core.run import RunData
from ..errors import InvalidInputError
from ..notebook.cells import current_cell
from .bundle import BUNDLE_CSS, BUNDLE_JS
from .predicted import summary_with_predicted
from .wire import (
    Batch,
    _live_metric_idx,
    _time_col,
    encode,
    replay_batch,
    run_meta,
    saved_snapshot,
    snapshot_of,
)

if TYPE_CHECKING:
    from ..run import Run

__all__ = [
    "DEFAULT_MAX_RATE_HZ",
    "MAX_ROWS_PER_REQUEST",
    "WIDGET_VIEW_MIME",
    "EnergyWidget",
    "RunOutputs",
    "display_run",
    "final_bundle",
    "outputs_of",
    "run_mimebundle",
    "widget_for",
]

log = logging.getLogger(__name__)


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


# -- outputs of a run ---------------------------------------------------------------------------


WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def _fallback_bundle(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """Used only if the saved bundle cannot be made: still no widget view in the output."""
    from .static import render_html, render_text

    return {"text/plain": render_text(run), "text/html": render_html(run)}, {}


def final_bundle(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every output of a finished run holds (`view.saved`): image, text, HTML; no widget."""
    try:
        from .saved import saved_bundle

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
    if outputs_of(run).shown_by_auto_display_in(current_cell()):
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
        if not isinstance(run, RunData):
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
        cell = current_cell()
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
            if batch.summary is not None:  # the run ended: what its history predicted, too
                batch.summary = summary_with_predicted(run, batch.summary)
            self._seq += 1
            header, buffers = self._encode(batch, "delta")
            self._last_flush_s = time.monotonic()
            self.send(header, buffers)
            if batch.summary is None:
                return False
        self._write_final_snapshot(run)
        return True

    def _encode(self, batch: Batch, kind: str) -> tuple[dict[str, Any], list[bytes]]:
        """`batch` as one message of this widget's run (its key, the last seq, the live metric
        and time column); the caller holds `_flush_lock`."""
        return encode(
            batch,
            kind=kind,
            seq=self._seq,
            run_key=self._run_key,
            live_metric_idx=self._live_idx,
            time_col=self._time_col,
        )

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
            header, buffers = self._encode(batch, "snapshot")
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
        self._display_live(run, current_cell(), auto=False)

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
