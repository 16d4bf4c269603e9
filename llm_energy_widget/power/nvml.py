"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`).

Energy comes from the total-energy counter (mJ since the driver loaded; Volta and newer), rebased
to 0 at open. Power is the instantaneous field `NVML_FI_DEV_POWER_INSTANT` where the driver has
it; otherwise `nvmlDeviceGetPowerUsage`, which on recent GPUs (Ampere/Hopper) is a 1-second
average (power_window_ms = 1000), so short peaks are smoothed (the energy counter is not). A GPU
without the counter gets its energy from the trapezoid over power, and the description says so.

Resolution: the counter changes only every 10-100 ms, whatever the poll interval. open() measures
that period (reads every ~1 ms for at most PROBE_S, until PROBE_CHANGES changes; the median gap,
the worst GPU's, is native_interval_ms), as Zeus does for its power counter.

Time stamps: a counter value read at a poll was written at the counter's last update, up to one
period earlier. Stamping it at the poll lags the curve and makes a staircase (flat between
updates, a jump inside one poll: a 10 ms token read 0x or 5x its energy). So a reading is made
only when the counter changed, placed at the estimated update time (see UpdateClock), and polls
that saw no change give none.

Which GPUs: one rail per counted GPU (`gpu1_w`, `gpu1_energy_j`, NVML indices), and their
sum as `gpu`/`total` and the energy. By default (`count_gpus("all")`) every visible GPU counts;
the profiler counts only the GPUs its model runs on (`count_gpus("model", cuda_indices)`:
CUDA's ordinals, mapped through CUDA_VISIBLE_DEVICES to NVML's indices), or the ones asked for.
GPUs not counted are not read, and `info()` lists them as excluded, with their indices.

Aliasing: the counter integrates the GPU's power in the driver, so energy over a periodic load
is exact at the counter's updates (between them the curve is linear). Only a GPU without the
counter (pre-Volta) integrates sampled power, which aliases: a 70 ms 100/300 W square wave
sampled every 100 ms reads +-7 %.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import EnergyWidgetError, InvalidInputError, SourceError, SourceUnavailableError
from .base import Availability, PowerSource
from .record import SourceSample, device_rail

__all__ = [
    "AVERAGED_POWER_WINDOW_MS",
    "GPU_CHOICES",
    "JITTER_S",
    "LOCK_MAX_S",
    "NVML_ERRORS",
    "PROBE_CHANGES",
    "PROBE_S",
    "PROBE_SLEEP_S",
    "NvmlSource",
    "UpdateClock",
    "load_nvml",
    "nvml_error",
    "visible_indices",
]

log = logging.getLogger(__name__)

PROBE_S = 0.5  # the longest open() spends measuring the counter's update period
PROBE_CHANGES = 4  # counter changes to see per GPU (3 periods) before the probe stops early
PROBE_SLEEP_S = 0.001  # between probe reads: ~1 ms brackets around each update
AVERAGED_POWER_WINDOW_MS = 1000.0  # nvmlDeviceGetPowerUsage on Ampere/Hopper
GPU_CHOICES = ("model", "all")  # which GPUs count, besides an explicit list of NVML indices

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
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise SourceUnavailableError(
            "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        ) from exc


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


JITTER_S = 0.5e-3  # least allowance for the counter's own update times around its period
LOCK_MAX_S = 2e-3  # more jitter than this (or 1/8 bracket): prediction no better than midpoints


class UpdateClock:
    """Estimates when a periodic counter took each new value, from the polls around it.

    Why not the midpoint: a change seen at a poll happened in the bracket (start of the last read
    that saw the old value, end of the first read that saw the new one], whose midpoint is off by
    up to half a poll (10 ms at 20 ms polls), and by the same amount every time when the poll
    interval divides the update period (the sampler's fixed schedule makes that usual). That
    shifts the whole curve, and averaging midpoints does not remove it.

    What instead: the counter updates periodically, and open() saw a few updates in ~1 ms
    brackets, which gives an anchor update, the period (to a fraction of a ms) and its jitter.
    Update k after the anchor is predicted at anchor + k x period; every bracket bounds the
    period (it lies in [(lo - anchor) / k, (hi - anchor) / k], widened by the jitter), the
    probe's period is kept inside those bounds, and the estimate is clamped into its bracket.
    A bracket that contradicts the bounds means more jitter than allowed: the allowance doubles;
    past LOCK_MAX_S the clock gives midpoints from then on (`locked` False). A bracket finer than
    the prediction becomes the new anchor. Polls further apart than half a period cannot tell
    update k from k+1, so there a miscount would go unnoticed: those brackets get the midpoint of
    (read - period, read], where the last update before the read lies. On a simulated counter
    (tests/power/test_known_answers_power.py) this places updates within 0.5 ms where midpoints
    are 5-9 ms off, and matches midpoints once the updates jitter by 2 ms or more.
    """

    def __init__(
        self,
        period_s: float | None,
        period_err_s: float = 0.0,
        anchor_s: float | None = None,
        anchor_err_s: float = 0.0,
        jitter_s: float = JITTER_S,
    ) -> None:
        self.period_s = period_s
        self.jitter_s = max(JITTER_S, jitter_s)
        self.period_err_s = period_err_s
        self.anchor_s = anchor_s
        self.anchor_err_s = anchor_err_s
        self.locked = (
            period_s is not None and anchor_s is not None and 2 * self.jitter_s <= LOCK_MAX_S
        )
        self._range = self._start_range()
        self._k = 0

    def _start_range(self) -> tuple[float, float]:
        u = self.period_s or 0.0
        return (u - self.period_err_s, u + self.period_err_s)

    def place(self, lo_s: float, hi_s: float) -> float:
        """The estimated time of an update known to lie in (lo_s, hi_s]."""
        if self.period_s is not None:
            # a read sees the last update before it, which lies within a period of the read
            # (polls further apart than the period miss the earlier ones)
            lo_s = max(lo_s, hi_s - 1.02 * self.period_s)
        mid, width = 0.5 * (lo_s + hi_s), hi_s - lo_s
        if not self.locked or self.anchor_s is None or self.period_s is None:
            return mid
        if width > 0.5 * self.period_s:
            return mid  # sparse polls: a miscounted update would go unnoticed
        k = max(self._k + 1, round((mid - self.anchor_s) / self._period(*self._range)))
        while True:
            slack = self.anchor_err_s + 2 * self.jitter_s
            new_lo = max(self._range[0], (lo_s - self.anchor_s - slack) / k)
            new_hi = min(self._range[1], (hi_s - self.anchor_s + slack) / k)
            if new_lo <= new_hi:
                break
            if 0.5 * width <= slack:  # this bracket is finer than the prediction: anchor on it
                self.anchor_s, self.anchor_err_s = mid, 0.5 * width
                self._range, self._k = self._start_range(), 0
                return mid
            self.jitter_s *= 2
            if 2 * self.jitter_s > max(LOCK_MAX_S, width / 8):
                log.info(
                    "NVML counter updates jitter ~%.1f ms: stamping at bracket midpoints",
                    1e3 * self.jitter_s,
                )
                self.locked = False
                return mid
            lo_u, hi_u = self._start_range()
            self._range = (lo_u - self.jitter_s / k, hi_u + self.jitter_s / k)
        self._range, self._k = (new_lo, new_hi), k
        predicted = self.anchor_s + k * self._period(new_lo, new_hi)
        return min(max(predicted, lo_s), hi_s)

    def _period(self, lo: float, hi: float) -> float:
        assert self.period_s is not None
        return min(max(self.period_s, lo), hi)


@dataclass
class _Gpu:
    index: int
    handle: Any
    label: str
    start_mj: int | None  # None: no energy counter on this GPU
    instant: bool  # power from NVML_FI_DEV_POWER_INSTANT (else the 1-s average)
    energy_j: float = 0.0  # no-counter GPUs: the trapezoid so far
    last_w: float | None = None
    last_mj: int | None = None  # the counter value last read
    read_lo_s: float = 0.0  # when the read that saw last_mj began
    period_ms: float | None = None  # the counter's update period measured at open
    clock: UpdateClock | None = None
    knots_t: list[float] = field(default_factory=list)  # times where E is known (monotonic s)
    knots_e: list[float] = field(default_factory=list)  # E there, J since the anchor


class NvmlSource(PowerSource):
    """Power and energy of the chosen NVIDIA GPUs, one rail each and their sum (all visible
    ones by default; `count_gpus` narrows them to a model's)."""

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
        self.choice: str | list[int] = "all" if devices is None else list(self.devices or [])
        self._model_cuda: list[int] | None = None
        self.excluded: list[dict[str, Any]] = []  # visible GPUs not counted: index, name
        self._note: str | None = None
        self._nvml = nvml
        self.counter_starts_at_open = True
        self.gpus: list[_Gpu] = []
        self.scope = "GPUs (all visible)" if devices is None else _gpu_scope(self.devices or [])
        self._inited = False
        self._last_s: float | None = None
        self._emitted_s: float | None = None
        self._interval_ms = 0.0

    @property
    def nvml(self) -> ModuleType:
        if self._nvml is None:
            self._nvml = load_nvml()
        return self._nvml

    def count_gpus(self, choice: str | Sequence[int], cuda_indices: Sequence[int] = ()) -> None:
        """Which GPUs the next open() counts: "all" visible ones, "model" (the CUDA devices
        `cuda_indices` the model runs on; all visible where it runs on none), or a list of NVML
        indices. Devices given to the constructor win over "model" and "all"."""
        if isinstance(choice, str):
            if choice not in GPU_CHOICES:
                raise InvalidInputError(
                    f"power_devices must be one of {', '.join(GPU_CHOICES)} or a list of GPU "
                    f"indices, got {choice!r}"
                )
            if self.devices is None:
                self.choice = choice
                self._model_cuda = list(cuda_indices) if choice == "model" else None
            return
        picked = list(choice)
        bad = [d for d in picked if isinstance(d, bool) or not isinstance(d, int) or d < 0]
        if bad or not picked:
            raise InvalidInputError(
                f"power_devices must be a non-empty list of GPU indices >= 0, got {choice!r}"
            )
        self.devices = picked
        self.choice = picked
        self._model_cuda = None

    def info(self) -> dict[str, Any]:
        """The counted GPUs (index, name, rail) and the excluded ones, for the run's power info."""
        out: dict[str, Any] = {
            "gpus_counted": self.choice if isinstance(self.choice, str) else "listed",
            "gpus": [
                {
                    "index": g.index,
                    "name": g.label.partition(": ")[2],
                    "rail": device_rail("gpu", g.index),
                }
                for g in self.gpus
            ],
            "excluded_gpus": list(self.excluded),
        }
        if self._note:
            out["gpus_note"] = self._note
        return out

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
            return (
                "NVIDIA GPUs via NVML: total-energy counter (updates every 10-100 ms), "
                "instantaneous power where supported, else a 1-second average"
            )
        labels = ", ".join(g.label for g in self.gpus)
        if all(g.start_mj is not None for g in self.gpus):
            periods = [g.period_ms for g in self.gpus if g.period_ms is not None]
            if not periods:
                every = f"no update period seen in the {PROBE_S:g} s probe at open"
            elif self._interval_ms > 0.5 * max(periods):
                every = (
                    f"updates every {max(periods):.0f} ms, measured at open; polled every "
                    f"{self._interval_ms:g} ms, so each update is placed within about half a "
                    f"poll (poll every <= {0.5 * min(periods):.0f} ms to place it within ~1 ms)"
                )
            else:
                every = (
                    f"updates every {max(periods):.0f} ms, measured at open; each update "
                    "placed at its predicted time"
                )
            energy = f"total-energy counter ({every})"
        else:
            energy = (
                "energy integrated from power (sampled) where a GPU has no counter (pre-Volta; "
                "aliases periodic loads)"
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
            self._probe()
        except BaseException:
            self.close()
            raise
        self._last_s = None
        self._emitted_s = None
        self._interval_ms = float(interval_ms)
        self.scope = _gpu_scope([g.index for g in self.gpus])
        periods = [g.period_ms for g in self.gpus if g.period_ms is not None]
        self.native_interval_ms = max(periods) if periods else None  # the worst GPU
        self._update_power_window()

    def _update_power_window(self) -> None:
        averaged = any(not g.instant for g in self.gpus)
        self.power_window_ms = AVERAGED_POWER_WINDOW_MS if averaged else None

    def _choose(self) -> list[int]:
        """The NVML indices to read; the visible ones left out go to `excluded`."""
        nv = self.nvml
        count = int(_call(nv, "device count", nv.nvmlDeviceGetCount))
        if count == 0:
            raise SourceUnavailableError("NVML found no NVIDIA GPU")
        self._note = None
        if self.devices is not None:
            missing = [d for d in self.devices if d >= count]
            if missing:
                raise InvalidInputError(
                    f"no GPU {missing} here: NVML sees {count} GPU(s), indices 0..{count - 1}"
                )
            chosen = list(dict.fromkeys(self.devices))
            self._exclude([i for i in range(count) if i not in chosen])
            return chosen
        visible = self._visible(count)
        chosen = visible
        if self._model_cuda is not None:
            if not self._model_cuda:
                self._note = "the model runs on no CUDA device: every visible GPU is counted"
            else:
                beyond = [c for c in self._model_cuda if c >= len(visible)]
                if beyond:
                    raise SourceUnavailableError(
                        f"the model runs on cuda:{beyond[0]}, but NVML sees {len(visible)} "
                        f"visible GPU(s) (CUDA_VISIBLE_DEVICES="
                        f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
                    )
                chosen = list(dict.fromkeys(visible[c] for c in self._model_cuda))
        self._exclude([i for i in visible if i not in chosen])
        return chosen

    def _exclude(self, indices: Sequence[int]) -> None:
        nv = self.nvml
        self.excluded = []
        for i in indices:
            h = _call(nv, f"GPU {i} handle", nv.nvmlDeviceGetHandleByIndex, i)
            name = _text(_call(nv, "device name", nv.nvmlDeviceGetName, h))
            self.excluded.append({"index": i, "name": name})

    def _visible(self, count: int) -> list[int]:
        """NVML indices of the GPUs CUDA sees here, in CUDA's order (CUDA_VISIBLE_DEVICES)."""
        nv = self.nvml
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

    def _read_mj(self, g: _Gpu) -> tuple[int, float, float]:
        """The counter, and when the read began and ended (monotonic s)."""
        nv = self.nvml
        t0 = time.monotonic()
        mj = int(_call(nv, "energy counter", nv.nvmlDeviceGetTotalEnergyConsumption, g.handle))
        t1 = time.monotonic()
        if g.last_mj is not None and mj < g.last_mj:
            raise SourceError(f"GPU {g.label}: the energy counter went backwards (GPU reset?)")
        return mj, t0, t1

    def _probe(self) -> None:
        """Measure each counter's update period and phase: read every ~1 ms until each GPU
        showed PROBE_CHANGES changes or PROBE_S passed; anchor the energy at the last change."""
        counters = [g for g in self.gpus if g.start_mj is not None]
        if not counters:
            return
        t_start = time.monotonic()
        changes: dict[int, list[tuple[float, float]]] = {id(g): [] for g in counters}
        for g in counters:
            g.last_mj, g.read_lo_s, _ = self._read_mj(g)
        deadline = t_start + PROBE_S
        pending = list(counters)
        while pending and time.monotonic() < deadline:
            time.sleep(PROBE_SLEEP_S)
            for g in pending:
                mj, t0, t1 = self._read_mj(g)
                if mj != g.last_mj:
                    changes[id(g)].append((g.read_lo_s, t1))
                    g.last_mj = mj
                g.read_lo_s = t0
            pending = [g for g in pending if len(changes[id(g)]) < PROBE_CHANGES]
        for g in counters:
            assert g.last_mj is not None
            seen = changes[id(g)]
            g.start_mj = g.last_mj  # energy 0 at the anchor below
            if not seen:
                # no update in PROBE_S: the value was current when the probe began
                log.info("GPU %s: energy counter did not change in %g s", g.label, PROBE_S)
                g.clock = UpdateClock(None)
                g.knots_t.append(t_start)
                g.knots_e.append(0.0)
                continue
            lo_n, hi_n = seen[-1]
            anchor = 0.5 * (lo_n + hi_n)
            if len(seen) >= 2:
                mids = [0.5 * (a + b) for a, b in seen]
                g.period_ms = statistics.median(np.diff(mids).tolist()) * 1e3  # as reported
                n = len(seen) - 1
                span_period_s = (mids[-1] - mids[0]) / n  # for prediction: finer than a median
                # the gaps' spread beyond the read brackets is the counter's own jitter
                gaps = np.diff(mids)
                widths = [b - a for a, b in seen]
                jitter_s = max(0.0, 0.5 * (float(gaps.max() - gaps.min()) - 2 * max(widths)))
                jitter_s = max(JITTER_S, jitter_s)
                # half-width of the period's range: both end brackets (and jitter) over n periods
                period_err_s = (0.5 * (widths[0] + widths[-1]) + 2 * jitter_s) / n
                anchor_err_s = 0.5 * widths[-1] + jitter_s
                g.clock = UpdateClock(span_period_s, period_err_s, anchor, anchor_err_s, jitter_s)
            else:
                g.clock = UpdateClock(None)
            g.knots_t.append(anchor)
            g.knots_e.append(0.0)

    def _instant_w(self, handle: Any) -> float | None:
        """NVML_FI_DEV_POWER_INSTANT in W, or None where this driver/GPU lacks the field."""
        nv = self.nvml
        field_id = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
        if field_id is None or not hasattr(nv, "nvmlDeviceGetFieldValues"):
            return None
        try:
            (v,) = nv.nvmlDeviceGetFieldValues(handle, [field_id])
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
            self._update_power_window()
            log.info(
                "GPU %s: instantaneous power stopped answering; using the 1-s average", g.label
            )
        return float(_call(nv, f"GPU {g.label} power", nv.nvmlDeviceGetPowerUsage, g.handle)) / 1e3

    def poll(self) -> list[SourceSample]:
        if not self.gpus:
            raise SourceError("nvml source polled before open()")
        t_s = time.monotonic()
        for g in self.gpus:
            w = self._power_w(g)
            if g.start_mj is not None:
                mj, t0, t1 = self._read_mj(g)
                if mj != g.last_mj:
                    # a new value: written at an update inside (last read's start, this read's end]
                    assert g.clock is not None
                    t_update = g.clock.place(g.read_lo_s, t1)
                    if g.knots_t and t_update <= g.knots_t[-1]:
                        t_update = g.knots_t[-1] + 1e-6  # keep the curve strictly in time order
                    g.knots_t.append(t_update)
                    g.knots_e.append((mj - g.start_mj) / 1e3)
                    g.last_mj = mj
                g.read_lo_s = t0
            else:
                if g.last_w is not None and self._last_s is not None:
                    g.energy_j += 0.5 * (w + g.last_w) * (t_s - self._last_s)
                g.knots_t.append(t_s)
                g.knots_e.append(g.energy_j)
            g.last_w = w
        self._last_s = t_s
        return self._emit()

    def _emit(self) -> list[SourceSample]:
        """Summed samples at every GPU's knot times that all GPUs' curves already cover.

        Each GPU's E(t) is linear between its own knots, so the sum is known up to the earliest
        latest knot; GPUs update at their own phases, so the sum gets a sample at each GPU's."""
        knots = [(g.knots_t, g.knots_e) for g in self.gpus]
        if any(not ts for ts, _ in knots):
            return []
        start = max(ts[0] for ts, _ in knots)
        horizon = min(ts[-1] for ts, _ in knots)
        after = self._emitted_s
        times = sorted(
            {
                t
                for ts, _ in knots
                for t in ts
                if start <= t <= horizon and (after is None or t > after)
            }
        )
        if not times:
            return []
        power = sum(g.last_w or 0.0 for g in self.gpus)
        per_gpu = [np.interp(times, ts, es) for ts, es in knots]
        energy = np.sum(per_gpu, axis=0)
        self._emitted_s = times[-1]
        for ts, es in knots:  # keep the last knot at or before the emitted time, and later ones
            keep = max(0, bisect.bisect_right(ts, times[-1]) - 1)
            del ts[:keep], es[:keep]
        names = [device_rail("gpu", g.index) for g in self.gpus]
        watts = {f"{n}_w": g.last_w or 0.0 for n, g in zip(names, self.gpus, strict=True)}
        return [
            SourceSample(
                t_s=t,
                power_w={"gpu": power, "total": power},
                energy_j=float(energy[k]),
                rails={
                    **watts,
                    **{f"{n}_energy_j": float(e[k]) for n, e in zip(names, per_gpu, strict=True)},
                },
            )
            for k, t in enumerate(times)
        ]

    def close(self) -> None:
        if self._inited:
            self._inited = False
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


def _gpu_scope(indices: Sequence[int]) -> str:
    """'GPU 0' or 'GPUs 0,1'."""
    if len(indices) == 1:
        return f"GPU {indices[0]}"
    return "GPUs " + ",".join(str(i) for i in indices)


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
