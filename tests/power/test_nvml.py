"""NVML against a fake pynvml: counters, instant vs averaged power, device choice, errors."""

from __future__ import annotations

import sys
import time

import pytest

from llm_energy_widget.errors import InvalidInputError, SourceError, SourceUnavailableError
from llm_energy_widget.power.nvml import NVML_ERRORS, NvmlSource, nvml_error
from llm_energy_widget.power.registry import get_source

from .fake_nvml import FakeClock, FakeGpu, make_fake_nvml, real


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """open() probes the counter for up to 0.5 s: on a fake clock that costs no real time, and
    every GPU read in one poll shares one time, so their counter changes share one stamp."""
    clock = FakeClock()
    monkeypatch.setattr(time, "monotonic", clock)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(energy_mj=1_000_000, instant_mw=100_000, uuid="GPU-aaaa"),
        FakeGpu(energy_mj=7_000_000, instant_mw=250_000, uuid="GPU-bbbb"),
    ]


def test_sums_all_gpus_rebased_energy_and_instant_power() -> None:
    gpus = two_gpus()
    nv = make_fake_nvml(gpus)
    src = NvmlSource(nvml=nv)
    src.open(100.0)
    (s0,) = src.poll()
    assert s0.energy_j == 0.0
    assert s0.power_w == {"gpu": 350.0, "total": 350.0}
    gpus[0].energy_mj += 12_345
    gpus[1].energy_mj += 5_000
    (s1,) = src.poll()
    assert s1.energy_j == pytest.approx(17.345)
    assert "NVML_FI_DEV_POWER_INSTANT" in src.describe()
    src.close()
    assert nv.inited == 0


def test_chosen_devices_and_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = make_fake_nvml(two_gpus())
    src = NvmlSource(devices=[1], nvml=nv)
    src.open(100.0)
    assert src.poll()[0].power_w["gpu"] == 250.0
    src.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    src = NvmlSource(nvml=nv)
    src.open(100.0)
    assert [g.index for g in src.gpus] == [1]
    src.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,7,0")  # CUDA stops at the bad entry
    src = NvmlSource(nvml=nv)
    src.open(100.0)
    assert [g.index for g in src.gpus] == [0]
    src.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SourceUnavailableError, match="names no whole GPU"):
        NvmlSource(nvml=nv).open(100.0)
    assert nv.inited == 0  # a failed open shuts NVML down


def test_bad_device_lists() -> None:
    nv = make_fake_nvml(two_gpus())
    with pytest.raises(InvalidInputError, match="no GPU \\[5\\]"):
        NvmlSource(devices=[0, 5], nvml=nv).open(100.0)
    for bad in ([], [-1], ["0"]):
        with pytest.raises(InvalidInputError):
            NvmlSource(devices=bad, nvml=nv)  # type: ignore[arg-type]


def test_averaged_power_fallback_is_described() -> None:
    gpu = FakeGpu(instant_mw=None, power_mw=90_000)
    src = NvmlSource(nvml=make_fake_nvml([gpu]))
    src.open(100.0)
    assert src.poll()[0].power_w["gpu"] == 90.0
    assert "1-second average" in src.describe()
    src.close()


def test_gpu_without_counter_integrates_power(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(counter=False, instant_mw=200_000)
    src = NvmlSource(nvml=make_fake_nvml([gpu]))
    src.open(100.0)
    clock = iter([100.0, 100.5, 101.0])
    monkeypatch.setattr("llm_energy_widget.power.nvml.time.monotonic", lambda: next(clock))
    src.poll()
    gpu.instant_mw = 400_000
    s = src.poll()[0]
    assert s.energy_j == pytest.approx(0.5 * (200 + 400) * 0.5)
    assert "integrated from power" in src.describe()
    monkeypatch.undo()
    src.close()


def test_errors_map_to_our_exceptions() -> None:
    nv = make_fake_nvml([], init_error=real.NVML_ERROR_DRIVER_NOT_LOADED)
    a = NvmlSource.availability(nvml=nv)
    assert not a.available
    assert "driver is not loaded" in a.reason
    with pytest.raises(SourceUnavailableError, match="NVML_ERROR_DRIVER_NOT_LOADED"):
        NvmlSource(nvml=nv).open(100.0)
    assert not NvmlSource.availability(nvml=make_fake_nvml([])).available  # no GPU

    gpu = FakeGpu()
    src = NvmlSource(nvml=make_fake_nvml([gpu]))
    src.open(100.0)
    gpu.errors["nvmlDeviceGetTotalEnergyConsumption"] = real.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(SourceError, match="fell off the bus"):
        src.poll()
    gpu.errors.clear()
    gpu.energy_mj -= 1000
    with pytest.raises(SourceError, match="went backwards"):
        src.poll()
    src.close()
    for name, (cls, _) in NVML_ERRORS.items():
        if hasattr(real, name):
            assert isinstance(nvml_error(real, real.NVMLError(getattr(real, name)), "x"), cls)


def test_registry_uses_pynvml_from_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(two_gpus()))
    a = NvmlSource.availability()
    assert a.available
    assert "2 GPU(s)" in a.reason
    assert "energy counter" in a.reason
    src = get_source("auto")
    assert isinstance(src, NvmlSource)
