"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`).

Energy comes from the total-energy counter (mJ since the driver loaded; Volta and newer), rebased
to 0 at open. Power is the instantaneous field `NVML_FI_DEV_POWER_INSTANT` where the driver has
it; otherwise `nvmlDeviceGetPowerUsage`, which on recent GPUs (Ampere/Hopper) is a 1-second
average, so short peaks are smoothed (the energy counter is not). A GPU without the counter gets
its energy from the trapezoid over power, and the description says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import EnergyWidgetError, InvalidInputError, SourceError, SourceUnavailableError
from .base import Availability, PowerSource
from .record import SourceSample

log = logging.getLogger(__name__)

# NVML error code name -> (our exception, what it means for the user).
NVML_ERRORS: dict[str, tuple[type[EnergyWidgetError], str]] = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": (
        SourceUnavailableError,
        "libnvidia-ml.so was not found: install the NVIDIA driver",
    ),
    "NVML_ERROR_DRIVER_NOT_LOADED": (
        SourceUnavailableError,
        "the NVIDIA kernel driver is not loaded (does `nvidia-smi` work?)",
    ),
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
        SourceUnavailableError,
        "the NVML library and the kernel driver differ in version (reboot after a driver update)",
    ),
    "NVML_ERROR_NO_PERMISSION": (
        SourceUnavailableError,
        "no permission to query the GPU (check /dev/nvidia* permissions or the container)",
    ),
    "NVML_ERROR_NOT_SUPPORTED": (
        SourceUnavailableError,
        "not supported on this GPU (the energy counter needs Volta or newer)",
    ),
    "NVML_ERROR_FUNCTION_NOT_FOUND": (
        SourceUnavailableError,
        "the installed driver is too old for this NVML call",
    ),
    "NVML_ERROR_NOT_FOUND": (SourceUnavailableError, "no such GPU"),
    "NVML_ERROR_GPU_NOT_FOUND": (SourceUnavailableError, "no such GPU"),
    "NVML_ERROR_INSUFFICIENT_POWER": (
        SourceUnavailableError,
        "a GPU's external power cables are not connected properly",
    ),
    "NVML_ERROR_UNINITIALIZED": (SourceError, "NVML was not initialized (or was shut down)"),
    "NVML_ERROR_INVALID_ARGUMENT": (SourceError, "invalid argument (a bad device index?)"),
    "NVML_ERROR_GPU_IS_LOST": (SourceError, "the GPU fell off the bus or became inaccessible"),
    "NVML_ERROR_RESET_REQUIRED": (SourceError, "the GPU needs a reset"),
    "NVML_ERROR_TIMEOUT": (SourceError, "the driver timed out"),
    "NVML_ERROR_IRQ_ISSUE": (SourceError, "the driver hit an interrupt problem"),
    "NVML_ERROR_CORRUPTED_INFOROM": (SourceError, "the GPU's infoROM is corrupted"),
    "NVML_ERROR_OPERATING_SYSTEM": (SourceError, "the operating system blocked the request"),
    "NVML_ERROR_MEMORY": (SourceError, "the driver ran out of memory"),
    "NVML_ERROR_NOT_READY": (SourceError, "the GPU is not ready yet"),
    "NVML_ERROR_UNKNOWN": (SourceError, "an unknown NVML error"),
}


def nvml_error(nvml: ModuleType, exc: BaseException, during: str) -> EnergyWidgetError:
    """Our exception for an NVMLError, with a message that says what to do."""
    code = getattr(exc, "value", None)
    for name, (cls, meaning) in NVML_ERRORS.items():
        if code is not None and getattr(nvml, name, object()) == code:
            err = cls(f"NVML {during}: {meaning} ({name})")
            break
    else:
        err = SourceError(f"NVML {during} failed: {exc} (code {code})")
    err.__cause__ = exc
    return err


def load_nvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:
        raise SourceUnavailableError(
            "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        ) from exc
    return pynvml


def _call(nvml: ModuleType, during: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except nvml.NVMLError as exc:
        raise nvml_error(nvml, exc, during) from exc


def visible_indices(spec: str, count: int, uuids: Sequence[str]) -> list[int]:
    """NVML indices named by CUDA_VISIBLE_DEVICES (indices or GPU-UUID prefixes), CUDA's way:
    the list ends at the first entry that names no GPU. Indices follow CUDA only with
    CUDA_DEVICE_ORDER=PCI_BUS_ID (NVML enumerates in PCI order)."""
    out: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        if token.lstrip("-").isdigit():
            i = int(token)
            if not 0 <= i < count:
                break
        elif token.startswith("GPU-"):
            hits = [k for k, u in enumerate(uuids) if u.startswith(token)]
            if len(hits) != 1:
                break
            i = hits[0]
        else:  # MIG-..., empty: CUDA sees no (more) whole GPUs
            break
        if i not in out:
            out.append(i)
    return out


@dataclass
class _Gpu:
    index: int
    handle: Any
    label: str
    start_mj: int | None  # None: no energy counter on this GPU
    instant: bool  # power from NVML_FI_DEV_POWER_INSTANT (else the 1-s average)
    energy_j: float = 0.0
    last_w: float | None = None


class NvmlSource(PowerSource):
    """Summed power and energy of the chosen NVIDIA GPUs (all visible ones by default)."""

    name = "nvml"
    kind = "measured"
    rails = ("gpu",)

    def __init__(
        self, devices: Sequence[int] | None = None, nvml: ModuleType | None = None
    ) -> None:
        if devices is not None:
            bad = [d for d in devices if isinstance(d, bool) or not isinstance(d, int) or d < 0]
            if bad or not devices:
                raise InvalidInputError(
                    f"devices must be a non-empty list of GPU indices >= 0, got {devices!r}"
                )
        self.devices = list(devices) if devices is not None else None
        self._nvml = nvml
        self.counter_starts_at_open = True
        self.gpus: list[_Gpu] = []
        self._inited = False
        self._last_s: float | None = None

    @property
    def nvml(self) -> ModuleType:
        if self._nvml is None:
            self._nvml = load_nvml()
        return self._nvml

    @classmethod
    def availability(cls, nvml: ModuleType | None = None) -> Availability:
        try:
            nv = nvml or load_nvml()
            _call(nv, "init", nv.nvmlInit)
        except EnergyWidgetError as exc:
            return Availability(False, str(exc))
        try:
            count = _call(nv, "device count", nv.nvmlDeviceGetCount)
            if count == 0:
                return Availability(False, "NVML found no NVIDIA GPU")
            h = _call(nv, "device 0", nv.nvmlDeviceGetHandleByIndex, 0)
            name = _text(_call(nv, "device name", nv.nvmlDeviceGetName, h))
            try:
                _call(nv, "energy counter", nv.nvmlDeviceGetTotalEnergyConsumption, h)
                how = "energy counter"
            except SourceUnavailableError:
                how = "power only (no energy counter: pre-Volta)"
            return Availability(True, f"NVIDIA NVML: {count} GPU(s), {name}: {how}")
        except EnergyWidgetError as exc:
            return Availability(False, str(exc))
        finally:
            with contextlib.suppress(Exception):
                nv.nvmlShutdown()

    def describe(self) -> str:
        if not self.gpus:
            return "NVIDIA GPUs via NVML: total-energy counter, instantaneous power where supported"
        labels = ", ".join(g.label for g in self.gpus)
        energy = (
            "total-energy counter (updates every 10-100 ms)"
            if all(g.start_mj is not None for g in self.gpus)
            else "energy integrated from power where a GPU has no counter (pre-Volta)"
        )
        power = (
            "instantaneous power (NVML_FI_DEV_POWER_INSTANT)"
            if all(g.instant for g in self.gpus)
            else "nvmlDeviceGetPowerUsage power, a 1-second average on recent GPUs"
        )
        return f"NVIDIA NVML [{labels}]: {energy}; {power}"

    def open(self, interval_ms: float) -> None:
        nv = self.nvml
        _call(nv, "init", nv.nvmlInit)
        self._inited = True
        try:
            self.gpus = [self._open_gpu(i) for i in self._choose()]
        except BaseException:
            self.close()
            raise
        self._last_s = None

    def _choose(self) -> list[int]:
        nv = self.nvml
        count = int(_call(nv, "device count", nv.nvmlDeviceGetCount))
        if count == 0:
            raise SourceUnavailableError("NVML found no NVIDIA GPU")
        if self.devices is not None:
            missing = [d for d in self.devices if d >= count]
            if missing:
                raise InvalidInputError(
                    f"no GPU {missing} here: NVML sees {count} GPU(s), indices 0..{count - 1}"
                )
            return list(dict.fromkeys(self.devices))
        spec = os.environ.get("CUDA_VISIBLE_DEVICES")
        if spec is None:
            return list(range(count))
        uuids = []
        if "GPU-" in spec:
            for i in range(count):
                h = _call(nv, "device handle", nv.nvmlDeviceGetHandleByIndex, i)
                uuids.append(_text(_call(nv, "device uuid", nv.nvmlDeviceGetUUID, h)))
        chosen = visible_indices(spec, count, uuids)
        if not chosen:
            raise SourceUnavailableError(
                f"CUDA_VISIBLE_DEVICES={spec!r} names no whole GPU NVML can see "
                "(pass devices=[...] to choose GPUs explicitly)"
            )
        return chosen

    def _open_gpu(self, index: int) -> _Gpu:
        nv = self.nvml
        h = _call(nv, f"GPU {index} handle", nv.nvmlDeviceGetHandleByIndex, index)
        label = f"{index}: {_text(_call(nv, 'device name', nv.nvmlDeviceGetName, h))}"
        try:
            start_mj: int | None = int(
                _call(nv, "energy counter", nv.nvmlDeviceGetTotalEnergyConsumption, h)
            )
        except SourceUnavailableError:
            start_mj = None
            log.info("GPU %s has no energy counter: integrating its power", label)
        instant = self._instant_w(h) is not None
        if not instant:
            _call(nv, f"GPU {index} power", nv.nvmlDeviceGetPowerUsage, h)  # raises if none
        return _Gpu(index, h, label, start_mj, instant)

    def _instant_w(self, handle: Any) -> float | None:
        """NVML_FI_DEV_POWER_INSTANT in W, or None where this driver/GPU lacks the field."""
        nv = self.nvml
        field = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is None or not hasattr(nv, "nvmlDeviceGetFieldValues"):
            return None
        try:
            (v,) = nv.nvmlDeviceGetFieldValues(handle, [field])
        except nv.NVMLError:
            return None
        if v.nvmlReturn != getattr(nv, "NVML_SUCCESS", 0):
            return None
        return float(_field_value(nv, v)) / 1000.0

    def _power_w(self, g: _Gpu) -> float:
        nv = self.nvml
        if g.instant:
            w = self._instant_w(g.handle)
            if w is not None:
                return w
            g.instant = False  # the field stopped answering: fall back, the description follows
        return float(_call(nv, f"GPU {g.label} power", nv.nvmlDeviceGetPowerUsage, g.handle)) / 1e3

    def poll(self) -> list[SourceSample]:
        if not self.gpus:
            raise SourceError("nvml source polled before open()")
        nv = self.nvml
        t_s = time.monotonic()
        total_w = 0.0
        for g in self.gpus:
            w = self._power_w(g)
            if g.start_mj is not None:
                now_mj = int(
                    _call(nv, "energy counter", nv.nvmlDeviceGetTotalEnergyConsumption, g.handle)
                )
                energy = (now_mj - g.start_mj) / 1e3
                if energy < g.energy_j:
                    raise SourceError(
                        f"GPU {g.label}: the energy counter went backwards (GPU reset?)"
                    )
                g.energy_j = energy
            elif g.last_w is not None and self._last_s is not None:
                g.energy_j += 0.5 * (w + g.last_w) * (t_s - self._last_s)
            g.last_w = w
            total_w += w
        self._last_s = t_s
        energy_j = sum(g.energy_j for g in self.gpus)
        return [
            SourceSample(t_s=t_s, power_w={"gpu": total_w, "total": total_w}, energy_j=energy_j)
        ]

    def close(self) -> None:
        if self._inited:
            self._inited = False
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


_VALUE_ATTRS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


def _field_value(nv: ModuleType, v: Any) -> float:
    for type_name, attr in _VALUE_ATTRS.items():
        if getattr(nv, type_name, None) == v.valueType:
            return float(getattr(v.value, attr))
    return float(v.value.uiVal)
