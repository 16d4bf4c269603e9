"""A background thread that finishes each token's layer measurements off the generating thread.

Reducing ~270 held outputs to statistics (and, on CUDA/MPS, reading ~600 timing events) takes
~1 ms a token on CPU. Done on the generating thread it adds to every token's latency; handed to
this thread it overlaps the next token's forward (benchmarks/overhead.py on the 2-core CPU
machine: component level 0.92 -> 0.94 of plain decode speed). The torch ops release the GIL, so
the overlap is real even in CPython.

One thread serves every profiler: jobs run in submission order, so a profiler's tokens arrive in
order. A profiler waits (back-pressure) when it is more than `MAX_PENDING` tokens ahead, so held
outputs never pile up when the reducer is slower than generation.

The thread registers as the profiler's own ("reducer", core.own_threads), so a CPU-time estimate
leaves its work out of the model's energy; each pipeline also counts the thread CPU its own jobs
took (`Pipeline.cpu_s`), which says what one run's layer profiling cost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import torch

from ..core import own_threads
from ..core.own_threads import lower_priority

__all__ = ["MAX_PENDING", "NICE", "REDUCER", "Pipeline"]

log = logging.getLogger(__name__)
MAX_PENDING = 8
NICE = 10  # added to the reducer thread's nice value (Linux)


class _Reducer:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        self._ensure_thread()
        self._jobs.put(job)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="lew-reducer", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        lower_priority(NICE)
        own_threads.register_current("reducer")
        with torch.inference_mode():
            while True:
                job = self._jobs.get()
                try:
                    job()
                except BaseException:  # a job reports its own errors; never let the thread die
                    log.exception("layer reducer job failed")
                own_threads.publish_current()  # the figure where live thread clocks are missing


REDUCER = _Reducer()


class Pipeline:
    """One profiler's jobs on the shared reducer: bounded, ordered, and drainable."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._slots = threading.BoundedSemaphore(max_pending)
        self._idle = threading.Condition()
        self._pending = 0
        self._cpu_s = 0.0

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; blocks while `max_pending` of this pipeline's jobs are unfinished."""
        self._slots.acquire()
        with self._idle:
            self._pending += 1

        def run() -> None:
            t0 = time.thread_time()  # runs on the reducer thread: its CPU, not the process's
            try:
                job()
            finally:
                self._slots.release()
                with self._idle:
                    self._cpu_s += time.thread_time() - t0
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

        try:
            REDUCER.submit(run)
        except BaseException:
            self._slots.release()
            with self._idle:
                self._pending -= 1
            raise

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if `timeout_s` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def cpu_s(self) -> float:
        """Reducer-thread CPU seconds this pipeline's finished jobs took (drain() first for all).

        Thread CPU, not wall time: a job that waits (a CUDA event, the GIL) adds little. The
        torch ops a job runs may use intra-op threads too; those are not counted here.
        """
        with self._idle:
            return self._cpu_s
