"""A power source that stalls: the gap is reported, and a hung poll never hangs the run."""

from __future__ import annotations

import threading
import time

import pytest

from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.record import SourceSample
from llm_energy_widget.power.sampler import PowerSampler


class StallingSource(PowerSource):
    """10 W counter; poll number `stall_at` sleeps `stall_s` first. Counts concurrent polls."""

    name = "stalling"
    kind = "measured"

    def __init__(self, stall_at: int, stall_s: float) -> None:
        self.stall_at, self.stall_s = stall_at, stall_s
        self.polls = 0
        self.inside = 0
        self.max_inside = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "test source")

    def poll(self) -> list[SourceSample]:
        with self._lock:
            self.polls += 1
            n = self.polls
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        try:
            if n == self.stall_at:
                time.sleep(self.stall_s)
            t = time.monotonic()
            return [SourceSample(t_s=t, power_w={"total": 10.0}, energy_j=10.0 * (t - self._t0))]
        finally:
            with self._lock:
                self.inside -= 1


def test_a_stall_mid_run_is_reported_with_its_length_and_widens_the_resolution() -> None:
    sampler = PowerSampler(StallingSource(stall_at=5, stall_s=0.6), interval_ms=20.0).start()
    time.sleep(1.0)
    sampler.stop()
    # readings every ~20 ms, except one gap of the 600 ms stall (plus at most a poll or two)
    assert 600.0 <= sampler.max_gap_ms < 700.0
    assert sampler.worst_resolution_ms == sampler.max_gap_ms
    (warning,) = sampler.warnings
    assert warning.startswith("power readings stopped for 0.6")
    assert "expected one every 20 ms" in warning


def test_no_warning_when_readings_keep_coming() -> None:
    sampler = PowerSampler(StallingSource(stall_at=-1, stall_s=0.0), interval_ms=20.0).start()
    time.sleep(0.3)
    sampler.stop()
    assert sampler.warnings == []
    assert sampler.max_gap_ms < 60.0


def test_a_poll_hung_at_the_end_is_abandoned_and_never_polled_twice_at_once() -> None:
    source = StallingSource(stall_at=10**9, stall_s=2.0)
    sampler = PowerSampler(source, interval_ms=20.0)
    sampler.join_timeout_s = 0.3
    sampler.start()
    time.sleep(0.2)
    source.stall_at = source.polls + 1  # the next poll hangs for 2 s
    time.sleep(0.05)
    t0 = time.monotonic()
    sampler.stop()
    assert time.monotonic() - t0 < 1.0  # the run does not wait for the hung source
    n = len(sampler)
    assert any("stopped answering" in w and "abandoned after 0.3 s" in w for w in sampler.warnings)
    assert any(w.startswith("power readings stopped for") for w in sampler.warnings)
    time.sleep(2.2)  # the hung poll returns: what it read is dropped, and the thread ends
    assert len(sampler) == n
    assert not sampler.running
    assert source.max_inside == 1


@pytest.mark.parametrize("interval_ms", [50.0, 100.0])
def test_the_stall_threshold_is_three_expected_intervals(interval_ms: float) -> None:
    sampler = PowerSampler(StallingSource(stall_at=-1, stall_s=0.0), interval_ms=interval_ms)
    sampler.max_gap_ms = 3 * interval_ms - 1
    sampler._note_gap(None)
    assert sampler.warnings == []
    sampler.max_gap_ms = 3 * interval_ms + 1
    sampler._note_gap(None)
    assert len(sampler.warnings) == 1
