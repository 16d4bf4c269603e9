"""A stand-in for `pynvml`: the real module's constants and error class shape, and functions
whose signatures are checked against the real ones (autospec-like), over simulated GPUs."""

from __future__ import annotations

import inspect
import types
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
            m.calls.append(fn.__name__)  # type: ignore[attr-defined]
            if fn.__name__ not in ("nvmlInit", "nvmlShutdown") and not m.inited:  # type: ignore[attr-defined]
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
        return handle.energy_mj

    @spec
    def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
        return handle.power_mw

    @spec
    def nvmlDeviceGetFieldValues(handle: FakeGpu, fieldIds: list[int]) -> list[_Field]:
        out = []
        for f in fieldIds:
            if f == real.NVML_FI_DEV_POWER_INSTANT and handle.instant_mw is not None:
                out.append(_Field(f, real.NVML_SUCCESS, handle.instant_mw))
            else:
                out.append(_Field(f, real.NVML_ERROR_NOT_SUPPORTED))
        return out

    return m
