"""Threads a test leaves behind (the autouse `no_thread_leak` fixture in tests/conftest.py)."""

from __future__ import annotations

import threading
import time

# Threads kept alive on purpose, by name prefix, so a test may leave them running:
# - `lew-generate-*`: the per-model generate workers persist across runs (CUDA's first generate
#   in a fresh thread is ~5x slower);
# - `lew-reducer`: the one reducer thread serves every profiler for the process's life
#   (profiling/reducer.py); that there is only one is checked instead;
# - `IPythonHistorySavingThread`, `tqdm_monitor`: other libraries' process-wide singletons,
#   started by the first IPython shell / progress bar (model saving and loading) and never ended;
# - `asyncio_N`: idle workers of an event loop's default executor, which the Jupyter clients of
#   the browser tests (jupyter_client / nbclient) keep for the process (the package runs nothing
#   in an asyncio executor).
LONG_LIVED_THREADS = (
    "lew-generate-",
    "lew-reducer",
    "IPythonHistorySavingThread",
    "tqdm_monitor",
    "asyncio_",
)
THREAD_GRACE_S = 5.0


def leftover_threads(before: set[threading.Thread], grace_s: float = THREAD_GRACE_S) -> list[str]:
    """Threads started since `before` that are still alive after `grace_s` (long-lived
    generate workers excepted), as `name (daemon)` strings; [] when every one has ended."""
    deadline = time.monotonic() + grace_s
    while True:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(LONG_LIVED_THREADS)
        ]
        if not extra or time.monotonic() >= deadline:
            return [f"{t.name}{' (daemon)' if t.daemon else ''}" for t in extra]
        time.sleep(0.05)
