"""PowerSampler: life cycle, listeners, phases, baseline, peak, errors, short intervals."""

from __future__ import annotations

import threading
import time

import pytest

from llm_energy_widget.errors import SourceError
from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.record import PowerReading, SourceSample
from llm_energy_widget.power.sampler import PowerSampler


class Steady(PowerSource):
    name = "steady"
    kind = "measured"

    def __init__(self, watts: float = 10.0, fail_after: int | None = None) -> None:
        self.watts, self.fail_after, self.polls, self.closed = watts, fail_after, 0, 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "test")

    def poll(self) -> list[SourceSample]:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise OSError("sensor unplugged")
        return [SourceSample(t_s=None, power_w={"cpu": self.watts, "gpu": 1.0})]

    def close(self) -> None:
        self.closed += 1


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("llm-energy-sampler")]


def test_start_stop_idempotent_and_no_thread_left() -> None:
    src = Steady()
    s = PowerSampler(src, interval_ms=20)
    assert s.start() is s.start()
    time.sleep(0.15)
    s.stop()
    s.stop()
    assert not s.running
    assert sampler_threads() == []
    assert src.closed == 1
    r = s.readings()
    assert len(r) >= 4
    assert all(x.total_w == 11.0 for x in r)
    assert r[-1].energy_j == pytest.approx(11.0 * (r[-1].t_ms - r[0].t_ms) / 1e3)


def test_listeners_phases_peak_and_baseline() -> None:
    src = Steady(watts=5.0)
    s = PowerSampler(src, interval_ms=20)
    seen: list[tuple[float, str | None]] = []
    remove = s.add_listener(lambda r, phase: seen.append((r.total_w, phase)))

    def broken(r: PowerReading, phase: str | None) -> None:
        _ = 1 / 0

    s.add_listener(broken)  # a broken consumer does not stop sampling
    with s:
        time.sleep(0.06)
        s.phase = "decode"
        src.watts = 20.0
        assert s.measure_baseline(0.1) == pytest.approx(21.0, rel=0.25)
        remove()
        n = len(seen)
        time.sleep(0.05)
    assert len(seen) == n
    assert "decode" in s.phases()
    assert any(p == "decode" for _, p in seen)
    assert seen[0][1] is None
    assert s.peak_w()["total_w"] == 21.0
    assert s.peak_w()["ane_w"] is None


def test_source_error_stops_cleanly_and_is_reported() -> None:
    src = Steady(fail_after=3)
    s = PowerSampler(src, interval_ms=10)
    errors: list[BaseException] = []
    s.add_error_listener(errors.append)
    s.start()
    assert s.wait(2.0)
    assert isinstance(s.error, SourceError)
    assert "sensor unplugged" in str(s.error)
    assert errors == [s.error]
    assert len(s) == 3
    s.stop()
    assert src.closed == 1
    assert sampler_threads() == []


def test_start_failure_closes_the_source() -> None:
    src = Steady(fail_after=0)
    s = PowerSampler(src, interval_ms=10)
    with pytest.raises(OSError, match="sensor unplugged"):
        s.start()
    assert src.closed == 1
    assert not s.running


def test_energy_between_inside_one_interval() -> None:
    src = Steady(watts=9.0)
    s = PowerSampler(src, interval_ms=100)
    with s:
        time.sleep(0.25)
    c = s.curve()
    t = s.readings()[1].t_ms
    assert float(c.energy_between(t + 10, t + 40)) == pytest.approx(10.0 * 0.03)
    assert float(c.energy_between(-50, 0)) != float(c.energy_between(-50, 0))  # NaN, not a guess
