"""A live progress line on stderr while `llm-energy profile` / `demo` generate.

It is one more consumer of the run's events (`core.events`): it subscribes, keeps a few counters
and rewrites one terminal line - phase, tokens so far, tokens/s, energy so far with its kind
(measured/estimated, the source's, never upgraded). The phases before the run exists (loading)
and after it ends (saving) are set by the command. Only on a terminal: piped or `--quiet`, it
writes nothing at all, so a pipe gets the same bytes as before.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["CLEAR_LINE", "MIN_REDRAW_S", "RunProgress", "no_hf_progress_bar", "progress_line"]

CLEAR_LINE = "\r\x1b[K"
"""Carriage return, then erase to the end of the line (the sweep's progress uses the same)."""
MIN_REDRAW_S = 0.1
"""At most ten redraws a second from token events (a phase change redraws at once): events come
on the generation thread under the run's lock, so a redraw must stay rare and short."""


def progress_line(
    phase: str,
    n_tokens: int,
    tokens_per_s: float | None,
    energy_j: float | None,
    kind: str | None,
) -> str:
    """The line's text: `decode · 12 tokens · 14.2 tokens/s · 3.41 J so far (estimated)`."""
    parts = [phase, f"{n_tokens} token" + ("" if n_tokens == 1 else "s")]
    parts.append(f"{tokens_per_s:.1f} tokens/s" if tokens_per_s is not None else "– tokens/s")
    k = kind or "kind unknown"
    parts.append(f"{energy_j:.3g} J so far ({k})" if energy_j is not None else f"– J ({k})")
    return " · ".join(parts)


class RunProgress:
    """The progress line of one command; `enabled` False (pipe or quiet) makes every call a no-op.

    `phase(name)` sets a phase of the command's own (loading, saving); `follow(run)` subscribes to
    a run's events (replayed first, so nothing before the subscription is missed); `close()`
    unsubscribes and ends the line with a newline.
    """

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(not quiet and callable(isatty) and isatty())
        self._stream = stream
        self._lock = threading.Lock()
        self._phase = ""
        self._n_tokens = 0
        self._decode_ends_ms: list[float] = []  # first and last decode token end, for the rate
        self._n_decode = 0
        self._first_j: float | None = None
        self._last_j: float | None = None
        self._kind: str | None = None
        self._drawn_at = 0.0
        self._shown = False  # a line is on screen, not yet ended with a newline
        self._unsubscribe: Callable[[], None] | None = None

    # -- the command's side ----------------------------------------------------------------------
    def phase(self, name: str) -> None:
        with self._lock:
            self._phase = name
        self._draw(force=True)

    def note(self, text: str) -> None:
        """Print a whole line (e.g. `loaded X in 2.0 s`) above the progress line."""
        if not self.enabled:
            print(text, file=self._stream, flush=True)
            return
        with self._lock:
            self._stream.write(CLEAR_LINE + text + "\n")
            self._shown = False
        self._draw(force=True)

    def follow(self, run: Any) -> None:
        if not self.enabled:
            return
        self._kind = (getattr(run, "power_info", None) or {}).get("kind")
        self._unsubscribe = run.subscribe(self._on_event, replay=True)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if not self.enabled:
            return
        self._draw(force=True)
        with self._lock:
            if self._shown:
                self._stream.write("\n")
                self._stream.flush()
                self._shown = False

    # -- the run's events (producer threads: quick) ----------------------------------------------
    def _on_event(self, event: str, payload: Any) -> None:
        force = False
        with self._lock:
            if event == "phase" and payload.get("state") == "start":
                self._phase = str(payload.get("name"))
                force = True
            elif event == "status":
                reason = payload.get("reason") or ""
                if payload.get("status") == "running" and reason.startswith("warm-up"):
                    self._phase, force = "warm-up", True
                elif payload.get("status") in ("completed", "cancelled", "failed", "incomplete"):
                    self._phase, force = str(payload.get("status")), True
            elif event == "token":
                self._n_tokens = int(payload["index"]) + 1
                if payload.get("phase") == "decode":
                    end = float(payload["end_ms"])
                    self._n_decode += 1
                    if not self._decode_ends_ms:
                        self._decode_ends_ms = [end, end]
                    self._decode_ends_ms[1] = end
            elif event == "power":
                e = payload.get("energy_j")
                if e is not None:
                    if self._first_j is None:
                        self._first_j = float(e)
                    self._last_j = float(e)
                self._kind = payload.get("kind") or self._kind
            elif event == "power_info":
                self._kind = payload.get("kind") or self._kind
            else:
                return
        self._draw(force=force)

    # -- drawing ---------------------------------------------------------------------------------
    def text(self) -> str:
        with self._lock:
            return self._text()

    def _text(self) -> str:
        rate = None
        if self._n_decode >= 2:
            span_ms = self._decode_ends_ms[1] - self._decode_ends_ms[0]
            if span_ms > 0:  # n decode ends bound n - 1 decode steps
                rate = (self._n_decode - 1) / (span_ms / 1000.0)
        energy = None
        if self._first_j is not None and self._last_j is not None:
            energy = self._last_j - self._first_j
        return progress_line(self._phase or "starting", self._n_tokens, rate, energy, self._kind)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._drawn_at < MIN_REDRAW_S:
                return
            self._drawn_at = now
            # a line longer than the terminal wraps, and \r would then rewrite only its tail
            width = shutil.get_terminal_size().columns - 1
            self._stream.write(CLEAR_LINE + self._text()[: max(width, 20)])
            self._stream.flush()
            self._shown = True


@contextlib.contextmanager
def no_hf_progress_bar() -> Iterator[None]:
    """transformers' "Loading weights" bars off while the CLI loads models: on a terminal the
    progress line says `loading` (or the sweep's line counts points), and on a pipe their
    carriage returns would be noise in a log."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
