"""The queue of this process's profiled runs: a run starts once the runs it may not overlap with
have ended (see `Ticket.conflicts`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.recorder import Recorder
from .features import model_name

if TYPE_CHECKING:
    from ..power.base import PowerSource
    from ..run import Run

__all__ = ["QUEUE", "RunQueue", "Ticket", "cancel_queued", "flag_overlap"]


class Ticket:
    """A run's place in the queue: what it may not overlap with, and how to start it."""

    def __init__(
        self,
        run: Run,
        model: Any,
        source: PowerSource,
        overlap: bool,
        start: Callable[[], None],
    ) -> None:
        self.run = run
        self.model = model
        self.source = source
        self.overlap = overlap
        self.start = start
        self.started = False
        self.ahead = -1  # runs ahead of it when its status was last set

    def conflicts(self, other: Ticket) -> bool:
        """Two runs may not overlap on one model or one source object, or when either forbids it."""
        return (
            self.model is other.model
            or self.source is other.source
            or not (self.overlap and other.overlap)
        )


class RunQueue:
    """The profiled runs of this process, in the order they were submitted.

    A run starts once no earlier run it conflicts with (`Ticket.conflicts`) is running or
    queued, so conflicting runs start in submission order; a waiting run's status is `queued` with
    reason "queued, N ahead", updated as the runs ahead end. A re-entrant lock: status listeners
    run under it (so statuses arrive in order) and may start or cancel runs themselves.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tickets: list[Ticket] = []

    def submit(self, ticket: Ticket) -> None:
        with self._lock:
            self._tickets.append(ticket)
            self._advance()

    def release(self, ticket: Ticket) -> None:
        """A started run has ended: the next ones may start."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
            self._advance()

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a run that has not started out of the queue; False once it has started."""
        with self._lock:
            if ticket.started or ticket not in self._tickets:
                return False
            self._tickets.remove(ticket)
            self._advance()
            return True

    def pending(self) -> list[Run]:
        """Runs started and not yet ended, then the queued ones."""
        with self._lock:
            return [t.run for t in self._tickets]

    def _advance(self) -> None:
        for i, ticket in enumerate(self._tickets):
            if ticket.started:
                continue
            ahead = [t for t in self._tickets[:i] if t.conflicts(ticket)]
            if not ahead:
                ticket.started = True
                flag_overlap(ticket, [t for t in self._tickets if t.started and t is not ticket])
                ticket.start()
            elif len(ahead) != ticket.ahead:
                ticket.ahead = len(ahead)
                Recorder(ticket.run).status("queued", f"queued, {len(ahead)} ahead")


def flag_overlap(ticket: Ticket, running: list[Ticket]) -> None:
    """Runs allowed to overlap (`overlap=True`) that do overlap: say so on both."""
    for other in running:
        for a, b in ((ticket, other), (other, ticket)):
            a.run.warnings.append(
                f"ran at the same time as run {b.run.run_id} ({model_name(b.model)}): its energy "
                "figures include that run's work too, unless each run's power source covers only "
                "its own model's device (different GPUs, each with NVML restricted to its own)"
            )


QUEUE = RunQueue()


def cancel_queued(ticket: Ticket) -> None:
    """`run.cancel()` on a queued run: out of the queue, cancelled at once, nothing opened.

    A run that has started stops at its next token instead (its cancel flag is set).
    """
    if ticket.started or not QUEUE.withdraw(ticket):
        return
    run = ticket.run
    run.settings["warmup"] = {"tokens": 0, "why_not": "the run never started"}
    Recorder(run).finish(
        "cancelled", "cancelled while queued: it never started, nothing was measured"
    )
