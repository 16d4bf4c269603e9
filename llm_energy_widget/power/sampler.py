"""Background power sampler: polls one source on its own thread and keeps readings in columns.

Its thread registers as the profiler's own ("sampler", core.own_threads), so a CPU-time estimate
leaves its polling out of the model's energy. It also records the machine's load from start() to
stop() (power.load), which says whether other programs shared the cores during the run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import own_threads
from ..errors import EnergyWidgetError, InvalidInputError, SourceError
from .base import PowerSource
from .energy import EnergyCurve, FloatArray
from .load import LoadWindow
from .record import POWER_COLUMNS, RAIL_COLUMNS, RAILS, PowerReading, SourceSample

__all__ = ["ErrorListener", "PowerSampler", "ReadingListener", "samples_start_at_open"]

log = logging.getLogger(__name__)

ReadingListener = Callable[[PowerReading, "str | None"], None]
ErrorListener = Callable[[BaseException], None]

_COLUMNS = POWER_COLUMNS


class _Columns:
    """Growable float64 columns (amortized O(1) append, no per-reading Python objects kept)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.full((len(_COLUMNS), capacity), np.nan)
        self.n = 0
        self.phases: list[str | None] = []
        self.rails: list[dict[str, float]] = []  # per reading: its per-device rails

    def append(
        self, row: tuple[float, ...], phase: str | None, rails: dict[str, float] | None = None
    ) -> None:
        if self.n == self._data.shape[1]:
            grown = np.full((len(_COLUMNS), self.n * 2), np.nan)
            grown[:, : self.n] = self._data
            self._data = grown
        self._data[:, self.n] = row
        self.n += 1
        self.phases.append(phase)
        self.rails.append(rails or {})

    def column(self, name: str) -> FloatArray:
        return self._data[_COLUMNS.index(name), : self.n].copy()


class PowerSampler:
    """Samples `source` every `interval_ms` on a daemon thread.

    Time is `time.monotonic()` relative to `start()`. Energy comes from the source's counter when it
    has one, otherwise from the trapezoid over total power. Once a source has given a counter value,
    a sample without one is dropped rather than integrated: sampled power aliases periodic loads (a
    70 ms 100/300 W square wave sampled every 100 ms reads +-7 %), a counter does not. Listeners
    run on the sampler thread and must be quick. A source error stops sampling; it is kept in
    `error` and sent to error listeners.
    """

    def __init__(self, source: PowerSource, interval_ms: float = 100.0) -> None:
        if not isinstance(interval_ms, (int, float)) or not interval_ms > 0:
            raise InvalidInputError(f"interval_ms must be a positive number, got {interval_ms!r}")
        self.source = source
        self.interval_ms = float(interval_ms)
        self.phase: str | None = None
        self.error: BaseException | None = None
        self.t0_s: float | None = None
        self._cols = _Columns()
        self._lock = threading.Lock()
        self._listeners: list[ReadingListener] = []
        self._error_listeners: list[ErrorListener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False
        self._last_counter_j: float | None = None
        self._has_counter = False
        self._counter_offset_j: float | None = None
        self._energy_j = 0.0
        self._last_t_ms: float | None = None
        self._last_total_w: float | None = None
        #: the longest time between two readings (and from the last one to stop), in ms
        self.max_gap_ms = 0.0
        #: things the run should say about its power figures (a stall, an abandoned thread)
        self.warnings: list[str] = []
        self.join_timeout_s = max(5.0, 3 * self.interval_ms / 1000)
        self._abandoned = False
        self._load = LoadWindow()

    # -- life cycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PowerSampler:
        """Open the source and start the thread; a second call does nothing."""
        if self._thread is not None:
            return self
        self.t0_s = time.monotonic()
        self._load.start()
        self.source.open(self.interval_ms)
        self._opened = True
        try:
            # A first reading anchors the energy curve before any phase starts. Sources that
            # compute power from counter deltas give none for a few ms, streams not before their
            # first sample: wait for it (bounded), so no early interval is left uncovered.
            self._poll_until(0.0, timeout_s=max(1.0, 3 * self.interval_ms / 1000.0))
        except BaseException:
            # nothing else will close a source whose sampler never started
            self._opened = False
            self.source.close()
            raise
        self._thread = threading.Thread(
            target=self._loop, name=f"llm-energy-sampler[{self.source.name}]", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, final_sample: bool = True) -> None:
        """Stop the thread, take one last reading (so the curve covers 'now'), close the source."""
        self._stop.set()
        stuck = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.join_timeout_s)
            stuck = self._thread.is_alive()
        if stuck:
            # the source hangs inside poll(): leave the thread behind (it drops whatever it
            # reads from now on) rather than hang the run, and never poll it concurrently
            self._abandoned = True
            self.warnings.append(
                f"power source {self.source.name!r} stopped answering: its sampler thread was "
                f"abandoned after {self.join_timeout_s:g} s; the run ends at its last reading"
            )
        if self._opened:
            if final_sample and not stuck and self.error is None and self.t0_s is not None:
                try:
                    # The curve must reach "now", or the last token's energy is unknown. A
                    # counter that updates every native_interval_ms (NVML: up to 100 ms) gives
                    # no reading after "now" before its next update: wait for that, bounded.
                    self._poll_until(self.now_ms(), timeout_s=self._cover_timeout_s())
                except Exception as exc:  # the run keeps what it has; report, don't raise
                    log.warning("final power sample failed: %s", exc)
            try:
                self.source.close()
            finally:
                self._opened = False
                self._note_gap(self.now_ms() if self.t0_s is not None else None)
                self._stop_load()
        else:
            self._note_gap(self.now_ms() if self.t0_s is not None else None)
            self._stop_load()

    def _stop_load(self) -> None:
        if self.t0_s is None:
            return
        try:
            self._load.stop()
        except Exception as exc:  # the load is a note on the run: never fail a stop for it
            log.warning("machine load not recorded: %s", exc)

    def _note_gap(self, now_ms: float | None) -> None:
        """Warn once about a stall: readings more than 3 polls apart (or none since the last)."""
        if now_ms is not None and self._last_t_ms is not None:
            self.max_gap_ms = max(self.max_gap_ms, now_ms - self._last_t_ms)
        expected_ms = max(self.interval_ms, self.source.native_interval_ms or 0.0)
        if self.max_gap_ms > 3 * expected_ms and not any("gap" in w for w in self.warnings):
            self.warnings.append(
                f"power readings stopped for {self.max_gap_ms / 1000:.3g} s (longest gap; "
                f"expected one every {expected_ms:g} ms): energy inside it is interpolated "
                f"linearly, so the figures' resolution is {self.max_gap_ms:.0f} ms"
            )

    @property
    def worst_resolution_ms(self) -> float:
        """The resolution the figures really have: the poll/native one, or the worst gap."""
        return max(self.interval_ms, self.source.native_interval_ms or 0.0, self.max_gap_ms)

    def _cover_timeout_s(self) -> float:
        """How long to wait for a reading after a given time: two polls or two source updates."""
        native_ms = self.source.native_interval_ms or 0.0
        return max(0.5, (2 * max(self.interval_ms, native_ms) + self.interval_ms) / 1000.0)

    def info(self) -> dict[str, Any]:
        """What this run's power figures are and how fine they can be; call after start().

        Taken after the source was opened, so it holds what open() chose and measured (NVML's
        counter period and power field, RAPL's zones, a stream's real sample spacing).
        """
        native = self.source.native_interval_ms
        return {
            "source": self.source.name,
            "kind": self.source.kind,
            "scope": self.source.scope,
            "interval_ms": self.interval_ms,
            "native_interval_ms": None if native is None else float(native),
            "resolution_ms": max(self.interval_ms, native or 0.0),
            "power_window_ms": self.source.power_window_ms,
            "description": self.source.describe(),
            **self._source_info(),
        }

    def _source_info(self) -> dict[str, Any]:
        """What the source says of itself beyond the base fields (the estimate: its uncertainty
        and the profiler CPU it left out); sources without an `info()` add nothing."""
        info = getattr(self.source, "info", None)
        if not callable(info):
            return {}
        try:
            extra = info()
        except Exception as exc:  # a note on the run: never fail a start or a stop for it
            log.warning("power source %r gave no info: %s", self.source.name, exc)
            return {}
        return dict(extra) if isinstance(extra, dict) else {}

    def load_info(self) -> dict[str, Any] | None:
        """The machine's CPU load from start() to stop() (power.load); None before stop()."""
        return self._load.result

    def end_info(self) -> dict[str, Any]:
        """What only the end of the run knows, to merge into the run's power info after stop():
        the source's final info (the estimate's `excluded_cpu_s`) and the machine load."""
        return {**self._source_info(), "load": self.load_info()}

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (a finite source ran out, or stop()); True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- listeners --------------------------------------------------------------------------------
    def add_listener(self, fn: ReadingListener) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def add_error_listener(self, fn: ErrorListener) -> Callable[[], None]:
        self._error_listeners.append(fn)
        return lambda: self._error_listeners.remove(fn) if fn in self._error_listeners else None

    # -- sampling ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        own_threads.register_current("sampler")
        try:
            self._sample()
        finally:
            own_threads.unregister_current()

    def _sample(self) -> None:
        period = self.interval_ms / 1000.0
        next_t = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += period
            if next_t < time.monotonic():  # we fell behind (suspended process): don't burst
                next_t = time.monotonic() + period
            try:
                self._poll_once()
            except Exception as exc:
                self._fail(exc)
                return
            own_threads.publish_current()  # the figure where live thread clocks are missing
            if self.source.exhausted:
                return

    def _fail(self, exc: BaseException) -> None:
        err = (
            exc
            if isinstance(exc, EnergyWidgetError)
            else SourceError(
                f"power source {self.source.name!r} failed: {type(exc).__name__}: {exc}"
            )
        )
        if err is not exc:
            err.__cause__ = exc
        self.error = err
        log.error("%s", err)
        for fn in list(self._error_listeners):
            try:
                fn(err)
            except Exception:  # a broken consumer must not hide the source error
                log.exception("error listener failed")

    def _poll_until(self, after_ms: float, timeout_s: float) -> None:
        """Poll until a reading at or after `after_ms` exists, the source runs out, or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll_once()
            if self._last_t_ms is not None and self._last_t_ms >= after_ms:
                return
            if self.source.exhausted or time.monotonic() >= deadline:
                if self._last_t_ms is None or self._last_t_ms < after_ms:
                    log.debug("no power reading after %.1f ms within %.2f s", after_ms, timeout_s)
                return
            time.sleep(0.002)

    def _poll_once(self) -> None:
        samples = self.source.poll()
        for s in samples:
            reading = self._ingest(s)
            if reading is None:
                continue
            for fn in list(self._listeners):
                try:
                    fn(reading, self.phase)
                except Exception:
                    log.exception("power listener failed")

    def _ingest(self, s: SourceSample) -> PowerReading | None:
        assert self.t0_s is not None
        now = time.monotonic()
        t_ms = ((s.t_s if s.t_s is not None else now) - self.t0_s) * 1000.0
        if self._abandoned:
            return None  # a stalled poll that came back after the run ended
        if self._last_t_ms is not None and t_ms <= self._last_t_ms:
            return None  # not after the previous reading: the curve must stay monotone
        if self._last_t_ms is not None:
            self.max_gap_ms = max(self.max_gap_ms, t_ms - self._last_t_ms)
        total = s.total_w
        if s.energy_j is None and self._has_counter:
            # never splice integrated sampled power into a counter's curve (it would alias and
            # restart from the trapezoid's own total)
            log.debug("dropped a sample without energy from counter source %s", self.source.name)
            return None
        if s.energy_j is not None:
            self._has_counter = True
            if self._counter_offset_j is None:
                self._counter_offset_j = (
                    s.energy_j if not samples_start_at_open(self.source) else 0.0
                )
            energy = s.energy_j - self._counter_offset_j
            if total is None:
                if self._last_t_ms is not None and self._last_counter_j is not None:
                    dt_s = (t_ms - self._last_t_ms) / 1000.0
                    total = (s.energy_j - self._last_counter_j) / dt_s if dt_s > 0 else 0.0
                else:
                    total = 0.0
            self._last_counter_j = s.energy_j
        else:
            if total is None:
                return None  # nothing usable in this sample
            if self._last_t_ms is not None and self._last_total_w is not None:
                self._energy_j += (
                    0.5 * (total + self._last_total_w) * (t_ms - self._last_t_ms) / 1e3
                )
            energy = self._energy_j
        if not (math.isfinite(float(total)) and math.isfinite(float(energy))):
            raise SourceError(
                f"power source {self.source.name!r} gave a reading out of range "
                f"({total} W, {energy} J): sampling stopped"
            )
        reading = PowerReading(
            t_ms=t_ms,
            cpu_w=s.power_w.get("cpu"),
            gpu_w=s.power_w.get("gpu"),
            ane_w=s.power_w.get("ane"),
            dram_w=s.power_w.get("dram"),
            total_w=float(total),
            energy_j=float(energy),
            source=self.source.name,
            kind=self.source.kind,
            rails=dict(s.rails),
        )
        with self._lock:
            self._cols.append(
                (
                    t_ms,
                    *(np.nan if v is None else v for v in (s.power_w.get(r) for r in RAILS)),
                    reading.total_w,
                    reading.energy_j,
                ),
                self.phase,
                reading.rails,
            )
        self._last_t_ms = t_ms
        self._last_total_w = float(total)
        return reading

    # -- results ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._cols.n

    def arrays(self) -> dict[str, FloatArray]:
        """A consistent copy of every column (`t_ms`, `<rail>_w`, `total_w`, `energy_j`)."""
        with self._lock:
            return {name: self._cols.column(name) for name in _COLUMNS}

    def phases(self) -> list[str | None]:
        with self._lock:
            return list(self._cols.phases)

    def device_rails(self) -> list[dict[str, float]]:
        """Each reading's per-device rails (`PowerReading.rails`; {} where it has none)."""
        with self._lock:
            return [dict(r) for r in self._cols.rails]

    def readings(self) -> list[PowerReading]:
        cols = self.arrays()  # phases are a column of their own (`phases()`), not in a reading
        rails = self.device_rails()
        out = []
        for i in range(len(cols["t_ms"])):
            rail = {r: cols[f"{r}_w"][i] for r in RAILS}
            out.append(
                PowerReading(
                    t_ms=float(cols["t_ms"][i]),
                    **{f"{r}_w": (None if np.isnan(v) else float(v)) for r, v in rail.items()},
                    total_w=float(cols["total_w"][i]),
                    energy_j=float(cols["energy_j"][i]),
                    source=self.source.name,
                    kind=self.source.kind,
                    rails=rails[i] if i < len(rails) else {},
                )
            )
        return out

    def curve(self) -> EnergyCurve:
        cols = self.arrays()
        return EnergyCurve(cols["t_ms"], cols["energy_j"])

    def now_ms(self) -> float:
        """The sampler clock now (ms since start)."""
        if self.t0_s is None:
            raise RuntimeError("sampler not started")
        return (time.monotonic() - self.t0_s) * 1000.0

    def peak_w(self) -> dict[str, float | None]:
        cols = self.arrays()
        out: dict[str, float | None] = {}
        for name in (*RAIL_COLUMNS, "total_w"):
            col = cols[name]
            col = col[~np.isnan(col)]
            out[name] = float(col.max()) if col.size else None
        return out

    def measure_baseline(self, seconds: float) -> float:
        """Average power over the next `seconds` of idle, measured from the energy curve (W)."""
        if not self.running:
            raise RuntimeError("start the sampler before measuring a baseline")
        t0 = self.now_ms()
        time.sleep(seconds)
        t1 = self.now_ms()
        deadline = time.monotonic() + self._cover_timeout_s() + 1.0
        while self.curve().covers_until_ms < t1 and time.monotonic() < deadline and self.running:
            time.sleep(self.interval_ms / 4000.0)
        return self.curve().average_power_w(t0, min(t1, self.curve().covers_until_ms))


def samples_start_at_open(source: PowerSource) -> bool:
    """True when the source's counter is already zero at open() (it rebased itself)."""
    return bool(getattr(source, "counter_starts_at_open", False))
