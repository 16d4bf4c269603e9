"""The contract every power backend fulfils, so the sampler never imports a vendor library."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from .record import SourceSample

__all__ = ["Availability", "PowerSource"]


@dataclass(frozen=True)
class Availability:
    """Whether a source can be used here and, either way, a sentence saying why."""

    available: bool
    reason: str


class PowerSource(abc.ABC):
    """A backend that reads power and/or energy.

    Life cycle: `open()` once, `poll()` from the sampler thread every interval, `close()` once
    (idempotent). `poll` returns the samples that became available since the last call: one for a
    counter read on demand (NVML, RAPL, the estimate), zero or more for a stream (powermetrics,
    macmon, replay). A finite stream sets `exhausted` once it has nothing more to give.
    """

    name: str = ""
    kind: str = "measured"
    rails: tuple[str, ...] = ()
    #: What the numbers cover: "process", "system", "GPU 0", "system (SoC)", "trace", ...
    scope: str = ""
    #: How often the source's own readings change, in ms (None: unknown, or as fast as polled).
    #: Set by open() and, for streams, updated as samples arrive: a figure can be no finer.
    native_interval_ms: float | None = None
    #: The window its power values are averaged over, in ms (None: instantaneous power).
    #: Energy from a counter does not depend on it; peaks in an averaged power do.
    power_window_ms: float | None = None

    exhausted: bool = False

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> Availability:
        """Check, without side effects, whether this source works on this machine."""

    @classmethod
    def is_available(cls) -> bool:
        return cls.availability().available

    def open(self, interval_ms: float) -> None:  # noqa: B027 - optional hook
        """Start reading (spawn a process, open files). Raise SourceUnavailableError if it can't."""

    @abc.abstractmethod
    def poll(self) -> list[SourceSample]:
        """Samples since the last call; raise SourceError on a failure that must stop sampling."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; safe to call twice."""

    def describe(self) -> str:
        """What this source reads, for labels and `llm-energy sources`."""
        return self.availability().reason

    def __enter__(self) -> PowerSource:
        self.open(100.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
