"""Subscribe/emit for a run's events: a broken consumer never breaks the measurement.

Listeners are called on the producer's threads (generation, sampler) under the run's lock, so they
must be quick and must not block on the frontend; the widget and the store writer queue work for
threads of their own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["EventBus", "Listener"]

log = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]
"""`listener(event, payload)`: payload shapes are the TypedDicts of `core.schema`."""


class EventBus:
    """Listeners of one run, and a count of their failures (reported in the run's warnings)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._listeners: list[Listener] = []
        self._failures: dict[str, tuple[int, str]] = {}  # name -> (count, first error)

    def subscribe(
        self, listener: Listener, replay: Callable[[], list[tuple[str, Any]]] | None = None
    ) -> Callable[[], None]:
        """Add `listener`; with `replay`, first send what it returns (under the lock, so nothing
        is missed or doubled between the replay and live events). Returns an unsubscribe."""
        with self._lock:
            if replay is not None:
                for event, payload in replay():
                    listener(event, payload)
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: str, payload: Any) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, payload)
            except Exception as exc:  # a broken consumer must not break the measurement
                self._failed(fn, event, exc)

    def _failed(self, fn: Listener, event: str, exc: Exception) -> None:
        """Log a consumer's first failure with its traceback, then only count (one log line per
        event made 58 tracebacks for 8 tokens); the run's warnings say how often at the end."""
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        n, first = self._failures.get(name, (0, f"{type(exc).__name__}: {exc}"))
        self._failures[name] = (n + 1, first)
        if n == 0:
            log.exception(
                "run listener %s failed on %r (further failures are counted)", name, event
            )

    def failure_warnings(self) -> list[str]:
        return [
            f"a consumer of this run's events ({name}) failed {n} time(s); "
            f"the measurement went on. First failure: {first}"
            for name, (n, first) in self._failures.items()
        ]
