"""Power sources for tests with a known energy."""

from __future__ import annotations

import time

from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.record import SourceSample


class ConstantSource(PowerSource):
    """A measured-looking source of exactly `watts`, for tests with a known energy."""

    name = "constant"
    kind = "measured"

    def __init__(self, watts: float = 10.0, fail_after: int | None = None) -> None:
        self.watts = watts
        self.fail_after = fail_after
        self.polls = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "a constant power for tests")

    def poll(self) -> list[SourceSample]:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise OSError("injected sampler failure")
        return [SourceSample(t_s=time.monotonic(), power_w={"cpu": self.watts})]


def t_of(sample: SourceSample) -> float:
    """The sample's time, which a source must have set (None would mean "now")."""
    assert sample.t_s is not None
    return sample.t_s


def energy_of(sample: SourceSample) -> float:
    """The sample's cumulative energy counter, which a counter source must have set."""
    assert sample.energy_j is not None
    return sample.energy_j
