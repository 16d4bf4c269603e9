"""How busy the machine was during a run: this process, everything else, and the profiler's share.

An estimate from CPU time cannot tell a busy-waiting thread from work, and another program on the
same cores slows the model (and, for `estimate:system`, is counted as the model's). So a run
records the load around it: the machine's busy CPU seconds from Linux /proc/stat (the same
reading `estimate:system` uses, in 10 ms ticks), this process's CPU seconds
(`time.process_time()`, every thread), and the profiler's own threads' CPU (core.own_threads),
each divided by the wall time into "cores busy on average".

`other_busy_cores` = machine - this process, clipped at 0. Its resolution is a few ticks over the
window (each CPU's counter rounds to a tick): `busy_resolution_cores` says how many cores one tick
per CPU is worth, so a reader can tell a real neighbour from rounding. Where /proc/stat is missing
(macOS) the machine figures are None and `system_busy` says why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..core import own_threads
from ..errors import SourceError
from .estimate import PROC_STAT, clock_tick_ms, system_busy_s

__all__ = ["LoadWindow"]


class LoadWindow:
    """CPU load between `start()` and `stop()`; the clocks can be replaced (known-answer tests)."""

    def __init__(
        self,
        stat: str = PROC_STAT,
        wall_clock: Callable[[], float] = time.monotonic,
        process_clock: Callable[[], float] = time.process_time,
        own_clock: Callable[[], dict[str, float]] = own_threads.cpu_s_by_role,
        cpu_count: int | None = None,
    ) -> None:
        self.stat = stat
        self._wall = wall_clock
        self._process = process_clock
        self._own = own_clock
        self.cpu_count = cpu_count if cpu_count is not None else os.cpu_count()
        self._start: tuple[float, float | None, float, dict[str, float]] | None = None
        self._why_not: str | None = None
        self.result: dict[str, Any] | None = None

    def _system_s(self) -> float | None:
        try:
            return system_busy_s(self.stat)
        except SourceError as exc:
            self._why_not = f"unavailable: {exc}"
            return None

    def start(self) -> LoadWindow:
        self._why_not = None
        self.result = None
        self._start = (self._wall(), self._system_s(), self._process(), self._own())
        return self

    def stop(self) -> dict[str, Any]:
        """The window's load (also kept in `result`); a second call returns the first result."""
        if self.result is not None:
            return self.result
        if self._start is None:
            raise RuntimeError("LoadWindow.stop() before start()")
        wall0, sys0, proc0, own0 = self._start
        wall_s = self._wall() - wall0
        sys1 = self._system_s() if sys0 is not None else None
        proc_s = self._process() - proc0
        own1 = self._own()
        own = {r: max(0.0, v - own0.get(r, 0.0)) for r, v in own1.items()}
        per_s = 1.0 / wall_s if wall_s > 0 else None
        system_cores = (
            (sys1 - sys0) * per_s if sys0 is not None and sys1 is not None and per_s else None
        )
        process_cores = proc_s * per_s if per_s else None
        other = (
            max(0.0, system_cores - process_cores)
            if system_cores is not None and process_cores is not None
            else None
        )
        tick_cores = (
            (self.cpu_count or 1) * clock_tick_ms() / 1000.0 * per_s
            if per_s and system_cores is not None
            else None
        )
        self.result = {
            "wall_s": wall_s,
            "cpu_count": self.cpu_count,
            "system_busy_cores": system_cores,
            "process_busy_cores": process_cores,
            "other_busy_cores": other,
            "busy_resolution_cores": tick_cores,
            "system_busy": self._why_not or f"from {self.stat}",
            "process_cpu_s": proc_s,
            "profiler_cpu_s_by_role": own,
        }
        return self.result
