"""One rail per GPU, and only the GPUs the model runs on counted (issue 13, item 2).

Four fake GPUs draw a constant 100, 200, 300 and 400 W (their energy counters integrate exactly
that). A model on cuda:1 and cuda:3 is charged (200 + 400) W = 600 W x its duration, the other
two are listed as excluded; with "all" it is 1000 W. Worked out by hand, not with the code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from llm_energy_widget.errors import InvalidInputError, SourceUnavailableError
from llm_energy_widget.power.nvml import NvmlSource
from llm_energy_widget.power.sampler import PowerSampler

from .fake_nvml import FakeClock, FakeGpu, make_fake_nvml

WATTS = (100.0, 200.0, 300.0, 400.0)


def _constant(w: float) -> Callable[[float], float]:
    return lambda t: w * t


def four_gpus(clock: Callable[[], float] = time.monotonic, update_ms: float = 100.0) -> list[Any]:
    """GPU i draws WATTS[i] constantly: counter E(t) = W x t, instant power W."""
    return [
        FakeGpu(
            name=f"NVIDIA H200 #{i}",
            uuid=f"GPU-{i:04d}",
            energy_mj=1_000_000 * (i + 1),
            instant_mw=int(w * 1000),
            energy_fn=_constant(w),
            update_ms=update_ms,
            clock=clock,
        )
        for i, w in enumerate(WATTS)
    ]


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(time, "monotonic", clock)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


def _polls(src: NvmlSource, clock: FakeClock, n: int) -> list[Any]:
    """n polls 10 ms apart (each 100 ms counter update is then placed within ~1 ms)."""
    out = []
    for _ in range(n):
        clock.advance(0.01)
        out.extend(src.poll())
    return out


def test_model_gpus_counted_others_excluded(fake_clock: FakeClock) -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [1, 3])
    src.open(100.0)
    samples = _polls(src, fake_clock, 200)
    first, last = samples[0], samples[-1]
    assert [g.index for g in src.gpus] == [1, 3]
    assert last.power_w == {"gpu": 600.0, "total": 600.0}
    assert last.rails["gpu1_w"] == 200.0
    assert last.rails["gpu3_w"] == 400.0
    assert "gpu0_w" not in last.rails
    assert "gpu2_w" not in last.rails
    # energy: (200 + 400) W x the time between the two readings
    dt_s = last.t_s - first.t_s
    assert last.energy_j - first.energy_j == pytest.approx(600.0 * dt_s, rel=1e-3)
    assert last.rails["gpu1_energy_j"] - first.rails["gpu1_energy_j"] == pytest.approx(
        200.0 * dt_s, rel=1e-3
    )
    assert last.rails["gpu3_energy_j"] - first.rails["gpu3_energy_j"] == pytest.approx(
        400.0 * dt_s, rel=1e-3
    )
    info = src.info()
    assert info["gpus_counted"] == "model"
    assert [g["index"] for g in info["gpus"]] == [1, 3]
    assert [g["rail"] for g in info["gpus"]] == ["gpu1", "gpu3"]
    assert info["excluded_gpus"] == [
        {"index": 0, "name": "NVIDIA H200 #0"},
        {"index": 2, "name": "NVIDIA H200 #2"},
    ]
    src.close()


def test_all_counts_the_four(fake_clock: FakeClock) -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("all", [1, 3])
    src.open(100.0)
    samples = _polls(src, fake_clock, 200)
    first, last = samples[0], samples[-1]
    assert last.power_w["gpu"] == 1000.0
    assert last.energy_j - first.energy_j == pytest.approx(
        1000.0 * (last.t_s - first.t_s), rel=1e-3
    )
    assert sorted(k for k in last.rails if k.endswith("_w")) == [
        "gpu0_w",
        "gpu1_w",
        "gpu2_w",
        "gpu3_w",
    ]
    assert src.info()["excluded_gpus"] == []
    src.close()


def test_listed_gpus_and_constructor_devices_win(fake_clock: FakeClock) -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus([0, 2])
    src.open(100.0)
    assert _polls(src, fake_clock, 20)[-1].power_w["gpu"] == 400.0  # 100 + 300
    assert [g["index"] for g in src.info()["excluded_gpus"]] == [1, 3]
    src.close()
    src = NvmlSource(devices=[2], nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [1, 3])  # the constructor's explicit choice stays
    src.open(100.0)
    assert _polls(src, fake_clock, 20)[-1].power_w["gpu"] == 300.0
    src.close()


def test_model_gpus_follow_cuda_visible_devices(
    fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA_VISIBLE_DEVICES=3,2,1,0: the model's cuda:0 and cuda:2 are NVML GPUs 3 and 1."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2,1,0")
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [0, 2])
    src.open(100.0)
    assert [g.index for g in src.gpus] == [3, 1]
    assert _polls(src, fake_clock, 20)[-1].power_w["gpu"] == 600.0
    src.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [1])
    with pytest.raises(SourceUnavailableError, match="runs on cuda:1, but NVML sees 1 visible"):
        src.open(100.0)


def test_model_on_no_gpu_counts_every_visible_one(fake_clock: FakeClock) -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [])
    src.open(100.0)
    assert len(src.gpus) == 4
    assert "runs on no CUDA device" in src.info()["gpus_note"]
    src.close()


def test_bad_choices() -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus()))
    with pytest.raises(InvalidInputError, match="power_devices must be one of model, all"):
        src.count_gpus("some")
    with pytest.raises(InvalidInputError, match="non-empty list of GPU indices"):
        src.count_gpus([])
    with pytest.raises(InvalidInputError, match="non-empty list of GPU indices"):
        src.count_gpus([-1])


def test_sampler_readings_carry_the_rails(fake_clock: FakeClock) -> None:
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(fake_clock)))
    src.count_gpus("model", [1, 3])
    sampler = PowerSampler(src, 100.0)
    sampler.t0_s = fake_clock()
    src.open(100.0)
    sampler._opened = True
    for _ in range(5):
        fake_clock.advance(0.1)
        sampler._poll_once()
    readings = sampler.readings()
    assert readings
    last = readings[-1].to_dict()
    assert last["gpu_w"] == 600.0
    assert last["rails"]["gpu1_w"] == 200.0
    assert last["rails"]["gpu3_w"] == 400.0
    src.close()


# -- the profiler: a model placed on cuda:1 and cuda:3 -------------------------------------------


def _place_on(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    """Layer 0 (and the embedding) on cuda:1, the rest on cuda:3 (nothing runs there: the
    lookup alone is replaced, and the token-end syncs)."""
    from llm_energy_widget.profiling import devices
    from llm_energy_widget.profiling.architectures import discover

    at: dict[int, torch.device] = {}
    layers = discover(model).layers
    for m in model.modules():
        at[id(m)] = torch.device("cuda", 3)
    for m in layers[0].modules():
        at[id(m)] = torch.device("cuda", 1)
    for m in (model, model.get_submodule("model"), model.get_input_embeddings()):
        at[id(m)] = torch.device("cuda", 1)  # their first parameter: the embedding's
    monkeypatch.setattr(devices, "module_device", lambda mod: at.get(id(mod)))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)


@pytest.mark.parametrize(
    ("choice", "watts", "excluded"), [("model", 600.0, [0, 2]), ("all", 1000.0, [])]
)
def test_profiler_charges_the_model_gpus(
    monkeypatch: pytest.MonkeyPatch, choice: str, watts: float, excluded: list[int]
) -> None:
    from support.models import tiny_llama

    from llm_energy_widget.profiler import EnergyProfiler

    model = tiny_llama()
    _place_on(monkeypatch, model)
    src = NvmlSource(nvml=make_fake_nvml(four_gpus(update_ms=10.0)))
    prof = EnergyProfiler(
        model,
        None,
        power=src,
        level="token",
        baseline_s=0.4,
        interval_ms=10,
        store=False,
        warmup=False,
        power_devices=choice,
    )
    ids = torch.tensor([[5, 6, 7, 8]])
    run = prof.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    assert run.settings["devices"] == ["cuda:1", "cuda:3"]
    info = run.power_info
    assert [g["index"] for g in info["excluded_gpus"]] == excluded
    # 0.4 s of idle on constant-power GPUs: the counted GPUs' sum (10 ms counter updates)
    assert run.baseline_w == pytest.approx(watts, rel=0.03)
    records = run.power_records()
    assert all(r["gpu_w"] == watts for r in records)
    rails = run.rail_arrays()
    assert set(rails) == (
        {"gpu1_w", "gpu1_energy_j", "gpu3_w", "gpu3_energy_j"}
        if choice == "model"
        else {f"gpu{i}_{x}" for i in range(4) for x in ("w", "energy_j")}
    )
    assert (rails["gpu3_w"] == 400.0).all()
    arrays = run.power_arrays()
    per_gpu = sum(rails[k] for k in rails if k.endswith("_energy_j"))
    assert per_gpu == pytest.approx(arrays["energy_j"], abs=1e-9)  # the total is their sum


def test_power_devices_list_needs_a_per_gpu_source() -> None:
    from support.models import tiny_llama
    from support.sources import ConstantSource

    from llm_energy_widget.profiler import EnergyProfiler

    with pytest.raises(InvalidInputError, match='power_devices must be "model", "all"'):
        EnergyProfiler(tiny_llama(), None, power=ConstantSource(1.0), power_devices="gpu0")
    prof = EnergyProfiler(
        tiny_llama(), None, power=ConstantSource(1.0), power_devices=[0], store=False
    )
    with pytest.raises(InvalidInputError, match="measures no GPUs one by one"):
        prof.generate(torch.tensor([[5, 6]]), max_new_tokens=1)


def test_cli_power_devices_prints_each_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    import sys

    from llm_energy_widget.cli import main

    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(four_gpus(update_ms=10.0)))
    assert main(["power", "--seconds", "0.6", "--source", "nvml", "--devices", "1,3"]) == 0
    out = capsys.readouterr().out
    avg = {
        m[1]: float(m[2]) for m in re.finditer(r"^(gpu\d) energy\s+[\d.]+ J, ([\d.]+) W", out, re.M)
    }
    assert set(avg) == {"gpu1", "gpu3"}
    assert avg["gpu1"] == pytest.approx(200.0, rel=0.05)
    assert avg["gpu3"] == pytest.approx(400.0, rel=0.05)
