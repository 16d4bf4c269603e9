"""The estimate: labelled estimated, grows with CPU work, configurable per-core watts."""

from __future__ import annotations

import threading
import time

import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.power.estimate import DEFAULT_WATTS_PER_CORE, EstimateSource


def energy_over(seconds: float, burn: bool) -> float:
    src = EstimateSource(watts_per_core=10.0)
    src.open(100.0)
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    t = threading.Thread(target=spin)
    if burn:
        t.start()
    time.sleep(seconds)
    stop.set()
    if burn:
        t.join()
    (s,) = src.poll()
    return float(s.energy_j or 0.0)


def test_grows_with_cpu_work_and_says_it_is_an_estimate() -> None:
    burning = energy_over(0.3, burn=True)
    sleeping = energy_over(0.3, burn=False)
    assert burning > 1.0
    assert sleeping < 0.3 * burning
    assert EstimateSource.kind == "estimated"
    assert "ESTIMATE" in EstimateSource().describe()
    assert "ESTIMATE" in EstimateSource.availability().reason


def test_per_core_watts_from_env_and_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_ENERGY_TDP_W", raising=False)
    monkeypatch.delenv("LLM_ENERGY_TDP_CORES", raising=False)
    assert EstimateSource().watts_per_core == DEFAULT_WATTS_PER_CORE
    monkeypatch.setenv("LLM_ENERGY_TDP_W", "120")
    monkeypatch.setenv("LLM_ENERGY_TDP_CORES", "8")
    assert EstimateSource().watts_per_core == 15.0
    assert EstimateSource(watts_per_core=3.0).watts_per_core == 3.0
    monkeypatch.setenv("LLM_ENERGY_TDP_W", "lots")
    with pytest.raises(InvalidInputError, match="LLM_ENERGY_TDP_W must be a number"):
        EstimateSource()
    assert not EstimateSource.availability().available
    with pytest.raises(InvalidInputError):
        EstimateSource(watts_per_core=-1)
    with pytest.raises(InvalidInputError):
        EstimateSource(watts_per_core=1, scope="gpu")


def test_idle_watts_and_system_scope() -> None:
    src = EstimateSource(watts_per_core=0.001, idle_w=5.0)
    src.open(100.0)
    time.sleep(0.1)
    (s,) = src.poll()
    assert s.energy_j == pytest.approx(0.5, rel=0.3)
    assert s.power_w["total"] > 4.0
    sysw = EstimateSource(scope="system")
    sysw.open(100.0)
    time.sleep(0.05)
    assert len(sysw.poll()) == 1
    assert "/proc/stat" in sysw.describe()
