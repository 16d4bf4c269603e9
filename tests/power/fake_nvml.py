"""A stand-in for `pynvml`: the real module's constants and error class shape, and functions
whose signatures are checked against the real ones (autospec-like), over simulated GPUs.

A FakeGpu with `energy_fn` behaves like a real total-energy counter: it holds the exact energy
E(t) of its load, but takes a new value only every `update_ms` (at phase_ms + k x update_ms on its
clock), so a read between updates returns the value of the last update. Pair it with FakeClock
(patched into time.monotonic/time.sleep) for runs whose every poll time is known.
"""

from __future__ import annotations

import inspect
import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml as real


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    energy_mj: int = 5_000_000  # since the driver loaded
    power_mw: int = 100_000  # 1-s average (nvmlDeviceGetPowerUsage)
    instant_mw: int | None = 120_000  # NVML_FI_DEV_POWER_INSTANT; None: unsupported
    counter: bool = True  # pre-Volta GPUs have no total-energy counter
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code
    # A counter that updates periodically: energy_mj + E(last update) in mJ, E in J of clock s.
    energy_fn: Callable[[float], float] | None = None
    update_ms: float = 100.0
    phase_ms: float = 0.0
    # Instantaneous power in W at clock time t (drives instant_mw and power_mw when set).
    power_fn: Callable[[float], float] | None = None
    clock: Callable[[], float] = time.monotonic

    jitter_ms: float = 0.0  # update k lands at phase + k x update_ms + up to +-jitter_ms

    def update_s(self, k: int) -> float:
        """When update k happens (s): periodic, plus a fixed pseudo-random jitter per update."""
        h = math.sin(k * 12.9898) * 43758.5453
        jitter = self.jitter_ms * (2 * (h - math.floor(h)) - 1) if self.jitter_ms else 0.0
        return (self.phase_ms + k * self.update_ms + jitter) / 1e3

    def last_update_s(self, t_s: float | None = None) -> float:
        """When the counter last took a new value, at or before t_s (default: now)."""
        t_ms = (self.clock() if t_s is None else t_s) * 1e3
        k = math.floor((t_ms - self.phase_ms) / self.update_ms)
        return max(self.update_s(j) for j in range(k - 1, k + 3) if self.update_s(j) <= t_ms / 1e3)

    def counter_mj(self) -> int:
        if self.energy_fn is None:
            return self.energy_mj
        return self.energy_mj + round(1e3 * self.energy_fn(self.last_update_s()))

    def instant(self) -> int | None:
        if self.power_fn is not None and self.instant_mw is not None:
            return round(1e3 * self.power_fn(self.clock()))
        return self.instant_mw

    def average(self) -> int:
        if self.power_fn is not None:
            return round(1e3 * self.power_fn(self.clock()))
        return self.power_mw


class FakeClock:
    """Monotonic seconds that move only when slept on or advanced: every poll time is known."""

    def __init__(self, t_s: float = 1000.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s

    def sleep(self, dt_s: float) -> None:
        self.t_s += max(0.0, dt_s)

    advance = sleep


class _Value:
    def __init__(self, mw: int) -> None:
        self.uiVal = mw


class _Field:
    def __init__(self, field_id: int, ret: int, mw: int = 0) -> None:
        self.fieldId = field_id
        self.nvmlReturn = ret
        self.valueType = real.NVML_VALUE_TYPE_UNSIGNED_INT
        self.value = _Value(mw)


def make_fake_nvml(gpus: list[FakeGpu], init_error: int | None = None) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    for k in dir(real):
        if k.startswith(("NVML_ERROR_", "NVML_FI_", "NVML_VALUE_TYPE_", "NVML_SUCCESS")):
            setattr(m, k, getattr(real, k))

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(f"NVML error {value}")
            self.value = value

    m.NVMLError = NVMLError  # type: ignore[attr-defined]
    m.inited = 0  # type: ignore[attr-defined]
    m.calls = []  # type: ignore[attr-defined]

    def spec(fn: Any) -> Any:
        sig = inspect.signature(getattr(real, fn.__name__))

        def wrapped(*args: Any) -> Any:
            sig.bind(*args)  # fails like the real binding would on a wrong call
            m.calls.append(fn.__name__)
            if fn.__name__ not in ("nvmlInit", "nvmlShutdown") and not m.inited:
                raise NVMLError(real.NVML_ERROR_UNINITIALIZED)
            if args and isinstance(args[0], FakeGpu) and fn.__name__ in args[0].errors:
                raise NVMLError(args[0].errors[fn.__name__])
            return fn(*args)

        wrapped.__name__ = fn.__name__
        setattr(m, fn.__name__, wrapped)
        return wrapped

    @spec
    def nvmlInit() -> None:
        if init_error is not None:
            raise NVMLError(init_error)
        m.inited += 1  # type: ignore[attr-defined]

    @spec
    def nvmlShutdown() -> None:
        m.inited -= 1  # type: ignore[attr-defined]

    @spec
    def nvmlDeviceGetCount() -> int:
        return len(gpus)

    @spec
    def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
        if not 0 <= index < len(gpus):
            raise NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return gpus[index]

    @spec
    def nvmlDeviceGetName(handle: FakeGpu) -> str:
        return handle.name

    @spec
    def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
        return handle.uuid

    @spec
    def nvmlDeviceGetTotalEnergyConsumption(handle: FakeGpu) -> int:
        if not handle.counter:
            raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return handle.counter_mj()

    @spec
    def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
        return handle.average()

    @spec
    def nvmlDeviceGetFieldValues(handle: FakeGpu, fieldIds: list[int]) -> list[_Field]:
        out = []
        for f in fieldIds:
            instant = handle.instant()
            if f == real.NVML_FI_DEV_POWER_INSTANT and instant is not None:
                out.append(_Field(f, real.NVML_SUCCESS, instant))
            else:
                out.append(_Field(f, real.NVML_ERROR_NOT_SUPPORTED))
        return out

    return m
