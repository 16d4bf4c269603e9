"""The long-lived generation threads that run profiled `generate` calls, and their exit hook."""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .run_queue import QUEUE

__all__ = ["EXIT_WAIT_S", "WORKERS", "GenerationThreads", "Worker", "end_runs_at_exit", "hook_exit"]

log = logging.getLogger(__name__)


class Worker:
    """One generation thread, its own job queue, and whether a started run holds it."""

    def __init__(self, n: int, work: Callable[[Worker], None]) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self.held = False  # a started run is on it (until it frees its place in the queue)
        self.last_model: weakref.ref[Any] | None = None
        self.thread = threading.Thread(target=work, args=(self,), name=f"lew-generate-{n}")
        self.thread.daemon = True


class GenerationThreads:
    """Long-lived daemon threads that run `generate`, reused from run to run.

    A thread's first `generate` on CUDA pays per-thread set-up on every decode step (measured on an
    H200: 19 tok/s in a fresh thread against 96 on the main thread, 91 on the same thread's second
    run), and this profiler's warm-up is per thread too, so a run goes to the thread that last
    ran its model when that thread is free, else to any free thread; a thread starts only when
    every thread holds a run (runs allowed to overlap, `overlap=True`). A thread is free as soon
    as its run has ended, before its last frame is freed: the next job waits those microseconds
    in its queue. Daemon threads: a stuck `generate` never blocks exit.
    """

    def __init__(self) -> None:
        self._workers: list[Worker] = []
        self._local = threading.local()  # on a worker thread: `worker`
        self._busy = 0  # threads inside a job (its frame and tensors not yet freed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, model: Any, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` for a run on `model` on a free thread, preferring `model`'s last."""
        with self._lock:
            free = [w for w in self._workers if not w.held]
            mine = [w for w in free if w.last_model is not None and w.last_model() is model]
            candidates = mine or free
            worker = candidates[0] if candidates else None
            if worker is None:
                worker = Worker(len(self._workers) + 1, self._work)
                self._workers.append(worker)
                worker.thread.start()
            worker.held = True
            worker.last_model = weakref.ref(model)
        worker.jobs.put((fn, args))

    def free_this_thread(self) -> None:
        """Called by a run as it ends, on its thread: the next run may be given this thread."""
        worker = getattr(self._local, "worker", None)
        if worker is not None:
            with self._lock:
                worker.held = False

    def _work(self, worker: Worker) -> None:
        self._local.worker = worker
        while True:
            fn, args = worker.jobs.get()
            with self._lock:
                self._busy += 1
            try:
                fn(*args)
            except BaseException:  # a Generation handles its own errors; never let a worker die
                log.exception("generation worker: unexpected error")
            finally:
                del fn, args  # the job's tensors go while the interpreter is alive
                with self._lock:
                    worker.held = False  # (already, unless the job failed before its end)
                    self._busy -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no thread is inside a job; False if `timeout_s` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout_s)


WORKERS = GenerationThreads()
EXIT_WAIT_S = 10.0


_EXIT_HOOK: list[bool] = []


def hook_exit() -> None:
    """Register `end_runs_at_exit` once, after the store writer's own exit hook: exit hooks
    run last-registered first, so runs end (cancelled, kept) before the writers flush them."""
    if _EXIT_HOOK:
        return
    from ..store import writer as _writer  # noqa: F401  (registers its exit hook first)

    atexit.register(end_runs_at_exit)
    _EXIT_HOOK.append(True)


def end_runs_at_exit() -> None:
    """At interpreter exit: cancel what is still running or queued, and let the threads finish.

    A daemon thread still freeing tensors when the interpreter finalizes is killed inside
    torch's C++ code and the process aborts ("terminate called without an active exception",
    exit status 134); it happened here after about one in fifteen profiled scripts, a run's
    last frame being freed just after wait() returned. Runs still going are cancelled (they
    keep what they measured) and the threads get up to EXIT_WAIT_S to wind down.
    """
    for run in QUEUE.pending():
        run.cancel()
    if not WORKERS.wait_idle(EXIT_WAIT_S):
        log.warning("profiling threads still busy at exit after %.0f s", EXIT_WAIT_S)
