"""The profiler's own threads and the CPU time they used, so a CPU-time estimate can leave it out.

The layer reducer, the power sampler and the store writer run in this process: the estimate's
`time.process_time()` counts their CPU as the model's. Each registers itself when its loop starts
(`register_current("reducer")`) and, if it ever ends, unregisters (`unregister_current()`), which
keeps its final `time.thread_time()`.

Reading a live thread's CPU from another thread needs `time.pthread_getcpuclockid` (Linux and
other POSIX systems; not macOS, not Windows). The clock id is taken by the thread itself when it
registers (calling pthread_getcpuclockid on a thread that has ended is undefined behaviour, so it
is never called from outside). Where that is unavailable a thread's figure is the value it last
published with `publish_current()` (its loop calls it after each job), so it lags by one job; and
a thread that never published counts 0 until it unregisters. `live_clocks()` says which applies.

Counters only grow (finished threads are folded into per-role totals), so a caller subtracts a
snapshot taken at its start from one taken at its end. Reads take a lock and one clock_gettime per
live thread (~1 us each, a handful of threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

__all__ = [
    "ROLES",
    "cpu_s_by_role",
    "live_clocks",
    "lower_priority",
    "own_cpu_s",
    "publish_current",
    "register_current",
    "unregister_current",
]

log = logging.getLogger(__name__)

ROLES = ("reducer", "sampler", "store")
"""The roles the package registers (any string is accepted; these are the ones it uses)."""


@dataclass
class _Entry:
    role: str
    thread: threading.Thread
    clock_id: int | None  # the thread's CPU clock, or None where it cannot be read from outside
    start_cpu_s: float  # its thread_time() when it registered: earlier work is not the profiler's
    cpu_s: float = 0.0  # since registering: the last figure read or published


_lock = threading.Lock()
_live: dict[int, _Entry] = {}  # by threading.get_ident()
_retired: dict[str, float] = {}  # CPU seconds of finished threads, by role


def live_clocks() -> bool:
    """True where a live thread's CPU time can be read from another thread (pthread clocks)."""
    return hasattr(time, "pthread_getcpuclockid") and hasattr(time, "clock_gettime")


def _own_clock_id() -> int | None:
    if not live_clocks():
        return None
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except OSError:
        return None


def _retire(entry: _Entry) -> None:
    _retired[entry.role] = _retired.get(entry.role, 0.0) + entry.cpu_s


def register_current(role: str) -> None:
    """Count the calling thread's CPU from now on as the profiler's own, under `role`.

    Registering again under the same role does nothing; under another role, what it used so far
    stays with the old one.
    """
    ident = threading.get_ident()
    with _lock:
        old = _live.get(ident)
        if old is not None and old.thread is threading.current_thread():
            if old.role == role:
                return
            old.cpu_s = max(old.cpu_s, time.thread_time() - old.start_cpu_s)
        if old is not None:  # another role, or an ended thread whose ident was reused
            _retire(old)
        _live[ident] = _Entry(role, threading.current_thread(), _own_clock_id(), time.thread_time())


def publish_current() -> None:
    """Record the calling thread's CPU so far (the figure used where live clocks are missing)."""
    ident = threading.get_ident()
    with _lock:
        entry = _live.get(ident)
        if entry is not None:
            entry.cpu_s = max(entry.cpu_s, time.thread_time() - entry.start_cpu_s)


def unregister_current() -> None:
    """The calling thread's loop ends: its final CPU time stays in its role's total."""
    ident = threading.get_ident()
    with _lock:
        entry = _live.pop(ident, None)
        if entry is not None:
            entry.cpu_s = max(entry.cpu_s, time.thread_time() - entry.start_cpu_s)
            _retire(entry)


def _read(entry: _Entry) -> float:
    """The entry's CPU since it registered, read live where possible; under the lock."""
    if entry.clock_id is not None and entry.thread.is_alive():
        # it may end between the check and the read (OSError): then the last figure stays
        with contextlib.suppress(OSError):
            entry.cpu_s = max(entry.cpu_s, time.clock_gettime(entry.clock_id) - entry.start_cpu_s)
    return entry.cpu_s


def cpu_s_by_role() -> dict[str, float]:
    """CPU seconds the profiler's threads used since each registered, summed by role.

    Includes threads that have ended (their final figure, or the last one read or published if
    they ended without unregistering). Empty when no thread ever registered.
    """
    with _lock:
        for ident, entry in list(_live.items()):
            if not entry.thread.is_alive():  # ended without unregistering: keep what we knew
                del _live[ident]
                _retire(entry)
        out = dict(_retired)
        for entry in _live.values():
            out[entry.role] = out.get(entry.role, 0.0) + _read(entry)
    return out


def own_cpu_s() -> float:
    """All the profiler's threads together, in CPU seconds (see `cpu_s_by_role`)."""
    return sum(cpu_s_by_role().values())


def lower_priority(nice: int) -> None:
    """Yield the cores to the generating thread when both want them (Linux: nice is per thread).

    The profiler's threads have slack (the reducer is ~1 ms behind a ~50 ms token; the store
    writer commits every FLUSH_MS); the generating thread has none. Measured on the 2-core CPU
    machine, paired in one process: component level 0.938 -> 0.947 and 0.935 -> 0.941 of plain
    decode speed with the reducer reniced. Elsewhere (macOS) setpriority would renice the whole
    process, so it is left alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # not allowed here: run at normal priority
        log.debug("%s keeps its priority: %s", threading.current_thread().name, exc)
