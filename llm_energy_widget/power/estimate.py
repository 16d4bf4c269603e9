"""An ESTIMATE of CPU power from CPU time, for machines with no power counter.

Model: energy = (CPU seconds used since open) x watts per busy core (+ optional idle watts x wall
seconds). Two scopes, chosen by name (`estimate:process`, `estimate:system`):
- "process" (the default) counts this process only, through `time.process_time()` minus the CPU
  of the profiler's own threads (the layer reducer, the power sampler, the store writer: they
  register in core.own_threads): torch's intra-op threads are included, other programs are not.
  What was left out is kept (`excluded_cpu_s`, in `info()`), so the run can say what the
  profiling itself cost. Where a live thread's CPU cannot be read (macOS) the figure lags by one
  reducer job or sampler poll.
- "system" counts the busy time of all CPUs from Linux /proc/stat, every process included, in
  ticks of 1/SC_CLK_TCK s (10 ms).
It is not a measurement: it ignores frequency, SIMD width, memory traffic and the platform; treat
its joules as +-50 % or worse (UNCERTAINTY_FRACTION, carried in the run's power info as
`uncertainty`), good for comparing runs on one machine, not for absolute claims.

Aliasing: none from sampling. CPU time is a counter (like RAPL's), so the energy between two
polls is exact for the model whatever the load's rhythm; its power is the delta over each poll.

Default 10 W per busy core: the rated power per core of current desktop CPUs, e.g. AMD Ryzen 7
5800X 105 W TDP / 8 cores = 13 W, Intel Core i7-12700K 125 W base power / 12 cores = 10.4 W.
Servers run lower (AMD EPYC 7763: 280 W / 64 cores = 4.4 W), laptops lower still. Set your CPU's
figures with LLM_ENERGY_TDP_W and LLM_ENERGY_TDP_CORES (W per core = TDP / cores), or
`EstimateSource(watts_per_core=..., idle_w=...)`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from ..core import own_threads
from ..errors import InvalidInputError, SourceError
from .base import Availability, PowerSource
from .record import SourceSample

__all__ = [
    "DEFAULT_WATTS_PER_CORE",
    "MIN_INTERVAL_S",
    "PROC_STAT",
    "SCOPES",
    "UNCERTAINTY_FRACTION",
    "EstimateSource",
    "clock_tick_ms",
    "system_busy_s",
    "watts_per_core_from_env",
]

DEFAULT_WATTS_PER_CORE = 10.0
SCOPES = ("process", "system")
PROC_STAT = "/proc/stat"
MIN_INTERVAL_S = 0.005  # process_time ticks coarsely on some kernels: no power from shorter gaps
UNCERTAINTY_FRACTION = 0.5
"""The estimate's stated relative uncertainty (+-50 %): the per-core watts alone span 4-13 W across
current CPUs (the figures below), and frequency, SIMD width and memory traffic are ignored. A
reasoned bound, not a measured one: ranges built from it say "or worse"."""


def clock_tick_ms() -> float:
    """The /proc/stat tick in ms (1000 / SC_CLK_TCK; 10 ms on Linux)."""
    return 1000.0 / os.sysconf("SC_CLK_TCK")


def _positive(value: object, what: str, allow_zero: bool = False) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise InvalidInputError(f"{what} must be a finite number > 0, got {value!r}")
    return x


def watts_per_core_from_env() -> tuple[float, str]:
    """W per busy core and where the figure came from (env vars or the default)."""
    tdp = os.environ.get("LLM_ENERGY_TDP_W")
    cores = os.environ.get("LLM_ENERGY_TDP_CORES")
    if tdp is None:
        if cores is not None:
            raise InvalidInputError("LLM_ENERGY_TDP_CORES is set but LLM_ENERGY_TDP_W is not")
        return DEFAULT_WATTS_PER_CORE, "the default; set LLM_ENERGY_TDP_W and LLM_ENERGY_TDP_CORES"
    tdp_w = _positive(tdp, "LLM_ENERGY_TDP_W")
    n = (
        _positive(cores, "LLM_ENERGY_TDP_CORES")
        if cores is not None
        else float(os.cpu_count() or 1)
    )
    origin = "LLM_ENERGY_TDP_CORES" if cores is not None else "os.cpu_count()"
    return tdp_w / n, f"LLM_ENERGY_TDP_W={tdp_w:g} W / {n:g} cores ({origin})"


class EstimateSource(PowerSource):
    """CPU-time x W-per-core model; kind "estimated", cpu rail only."""

    name = "estimate"
    kind = "estimated"
    rails = ("cpu",)

    def __init__(
        self, watts_per_core: float | None = None, idle_w: float = 0.0, scope: str = "process"
    ) -> None:
        if scope not in SCOPES:
            raise InvalidInputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "system" and not Path(PROC_STAT).exists():
            raise InvalidInputError(f"scope='system' needs {PROC_STAT} (Linux)")
        self.scope = scope
        # process_time is fine-grained, but polls closer than MIN_INTERVAL_S give no reading
        self.native_interval_ms = MIN_INTERVAL_S * 1e3 if scope == "process" else clock_tick_ms()
        if watts_per_core is None:
            self.watts_per_core, self.origin = watts_per_core_from_env()
        else:
            self.watts_per_core = _positive(watts_per_core, "watts_per_core")
            self.origin = f"watts_per_core={self.watts_per_core:g}"
        self.idle_w = _positive(idle_w, "idle_w", allow_zero=True)
        self.counter_starts_at_open = True
        self._open_cpu_s = 0.0
        #: profiler-thread CPU seconds left out of the energy, as of the last reading
        self.excluded_cpu_s = 0.0
        self.excluded_cpu_s_by_role: dict[str, float] = {}
        self._open_own_by_role: dict[str, float] = {}
        self._open_s: float | None = None
        self._last_s = 0.0
        self._last_j = 0.0

    @classmethod
    def availability(cls) -> Availability:
        try:
            w, origin = watts_per_core_from_env()
        except InvalidInputError as exc:
            return Availability(False, str(exc))
        return Availability(
            True,
            f"ESTIMATE, not a measurement: this process's CPU time x {w:.3g} W per busy core "
            f"({origin}); estimate:system counts every process's CPU time instead",
        )

    def describe(self) -> str:
        idle = f" + {self.idle_w:g} W idle" if self.idle_w else ""
        if self.scope == "process":
            whose = (
                "this process's CPU time only (process CPU time minus the profiler's own "
                "threads: reducer, sampler, store writer; not other programs)"
            )
        else:
            whose = (
                f"all CPUs' busy time from /proc/stat, every process counted "
                f"({self.native_interval_ms:g} ms ticks)"
            )
        return (
            f"ESTIMATE, not a measurement: {whose} x {self.watts_per_core:.3g} W per busy core"
            f"{idle} ({self.origin}); ignores frequency and memory traffic"
        )

    def open(self, interval_ms: float) -> None:
        # power is the CPU-time delta over each poll interval
        self.power_window_ms = float(interval_ms)
        self._open_own_by_role = self._own_by_role()
        self._open_cpu_s = self._cpu_s()
        self.excluded_cpu_s, self.excluded_cpu_s_by_role = 0.0, {}
        self._open_s = self._last_s = time.monotonic()
        self._last_j = 0.0

    def _own_by_role(self) -> dict[str, float]:
        return own_threads.cpu_s_by_role() if self.scope == "process" else {}

    def _cpu_s(self) -> float:
        if self.scope == "process":
            return time.process_time()
        return system_busy_s()

    def energy_j(self, t_s: float) -> float:
        """Joules since open() at `t_s`, the profiler's own threads left out (scope "process").

        Own-thread CPU is read before the process's, so a thread burning between the two reads
        counts as the model's (over-, never under-estimating the model by that sliver).
        """
        assert self._open_s is not None
        own = self._own_by_role()
        cpu_s = self._cpu_s() - self._open_cpu_s
        if self.scope == "process":
            by_role = {r: max(0.0, v - self._open_own_by_role.get(r, 0.0)) for r, v in own.items()}
            excluded = min(max(0.0, sum(by_role.values())), max(0.0, cpu_s))
            self.excluded_cpu_s, self.excluded_cpu_s_by_role = excluded, by_role
            cpu_s -= excluded
        return cpu_s * self.watts_per_core + self.idle_w * (t_s - self._open_s)

    def info(self) -> dict[str, Any]:
        """Fields for the run's power info (PowerSampler.info merges them): the stated
        uncertainty and, as of the last reading, the profiler CPU left out of the energy."""
        excluded = self.scope == "process"
        return {
            "uncertainty": UNCERTAINTY_FRACTION,
            "watts_per_core": self.watts_per_core,
            "idle_w": self.idle_w,
            "excludes_profiler_threads": excluded,
            "excluded_cpu_s": self.excluded_cpu_s if excluded else None,
            "excluded_cpu_s_by_role": dict(self.excluded_cpu_s_by_role) if excluded else None,
            "excluded_energy_j": self.excluded_cpu_s * self.watts_per_core if excluded else None,
            "live_thread_clocks": own_threads.live_clocks(),
        }

    def poll(self) -> list[SourceSample]:
        if self._open_s is None:
            raise SourceError("estimate source polled before open()")
        t_s = time.monotonic()
        dt_s = t_s - self._last_s
        if dt_s < MIN_INTERVAL_S:
            return []
        energy = max(self.energy_j(t_s), self._last_j)
        power = (energy - self._last_j) / dt_s
        self._last_s, self._last_j = t_s, energy
        return [SourceSample(t_s=t_s, power_w={"cpu": power, "total": power}, energy_j=energy)]


def system_busy_s(stat: str = PROC_STAT) -> float:
    """Busy CPU seconds of all CPUs since boot (user+nice+system+irq+softirq+steal)."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError as exc:
        raise SourceError(f"cannot read {stat}: {exc}") from exc
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        raise SourceError(f"{stat} has no aggregate 'cpu' line")
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    ticks = user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")
