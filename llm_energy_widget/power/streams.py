"""Stream plumbing shared by the stream sources (powermetrics, macmon, replay) and the CLI.

A byte feed (a file read whole or tailed, or a child process's stdout drained by a thread), the
clock that puts back-to-back interval samples on the monotonic clock, the skipped-sample warning,
and `StreamSource`, the life cycle of a source that parses such a feed (open a file or spawn the
tool, read, count and warn about malformed samples, follow the real sample spacing, close).
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import InvalidInputError, SourceError, SourceUnavailableError
from .base import PowerSource
from .record import RAILS, SourceSample

__all__ = [
    "ByteFeed",
    "FileFeed",
    "IntervalClock",
    "IntervalSample",
    "ProcessFeed",
    "SkippedSampleWarning",
    "SocStreamSource",
    "StreamSource",
    "warn_skipped",
]

log = logging.getLogger(__name__)


class SkippedSampleWarning(UserWarning):
    """A malformed sample in a stream was skipped; the rest of the stream is kept."""


# -- byte feeds ---------------------------------------------------------------------------------
class ByteFeed(Protocol):
    """Bytes from a file or a process, read without blocking the sampler thread."""

    def read(self) -> tuple[bytes, float]:
        """Bytes that arrived since the last call, and the monotonic time the last of them came."""
        ...

    @property
    def ended(self) -> bool:
        """True once no more bytes can ever come (all read bytes already returned)."""
        ...

    def close(self) -> None: ...


class FileFeed:
    """A file, read from the start (a complete capture) or tailed from its end (a live writer).

    With follow=False the feed ends at the end of the file. With follow=True a file that stops
    growing is only quiet: a live writer may add more. A file that shrinks was restarted by its
    writer; we read it again from the start and say so.
    """

    def __init__(self, path: str | os.PathLike[str], follow: bool, from_start: bool) -> None:
        self.path = Path(path)
        self.follow = follow
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if not from_start:
            self._f.seek(0, os.SEEK_END)
        self._ended = False

    def read(self) -> tuple[bytes, float]:
        if self._ended:
            return b"", time.monotonic()
        try:
            size = os.fstat(self._f.fileno()).st_size
            if size < self._f.tell():
                log.warning("%s shrank: its writer restarted; reading it from the start", self.path)
                self._f.seek(0)
            data = self._f.read()
        except OSError as exc:
            raise SourceError(f"reading {self.path} failed: {exc}") from exc
        if not self.follow:
            self._ended = True  # read() went to the end of a complete file
        return data, time.monotonic()

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        self._f.close()


class ProcessFeed:
    """A child process's stdout, drained by a reader thread that stamps when each chunk came."""

    def __init__(self, argv: Sequence[str], what: str) -> None:
        self.what = what
        self.argv = list(argv)
        try:
            self._proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            raise SourceUnavailableError(f"cannot start {what} ({self.argv[0]}): {exc}") from exc
        self._chunks: deque[tuple[bytes, float]] = deque()
        self._stderr: deque[bytes] = deque(maxlen=20)
        self._out = threading.Thread(target=self._pump, name=f"{what}-stdout", daemon=True)
        self._err = threading.Thread(target=self._pump_err, name=f"{what}-stderr", daemon=True)
        self._out.start()
        self._err.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self._chunks.append((chunk, time.monotonic()))

    def _pump_err(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def read(self) -> tuple[bytes, float]:
        parts, last_t = [], time.monotonic()
        while self._chunks:
            chunk, last_t = self._chunks.popleft()
            parts.append(chunk)
        if not parts and not self._out.is_alive():
            self._check_exit()
        return b"".join(parts), last_t

    def _check_exit(self) -> None:
        try:
            code = self._proc.wait(timeout=1.0)  # stdout closed: the process is ending
        except subprocess.TimeoutExpired:
            return
        if code not in (None, 0):
            self._err.join(timeout=1.0)
            err = b"".join(self._stderr).decode(errors="replace").strip().splitlines()
            detail = err[-1] if err else "no message"
            raise SourceError(f"{self.what} exited with status {code}: {detail}")

    @property
    def ended(self) -> bool:
        return not self._out.is_alive() and not self._chunks

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=2.0)
        self._out.join(timeout=2.0)
        self._err.join(timeout=2.0)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


# -- interval samples and their clock ------------------------------------------------------------
@dataclass(frozen=True)
class IntervalSample:
    """One sample that stands for an interval: its real length and the energy of each rail in it."""

    duration_s: float
    energy_j: dict[str, float] = field(default_factory=dict)  # rails and/or "total"

    @property
    def total_j(self) -> float:
        if "total" in self.energy_j:
            return self.energy_j["total"]
        return float(sum(self.energy_j[r] for r in RAILS if r in self.energy_j))


class IntervalClock:
    """Puts back-to-back interval samples on the monotonic clock, with energy since open.

    Sample k ends at anchor + the sum of the first k durations. The anchor is the open time for a
    complete file; for a live stream it is when the first sample came, minus its length (a
    sample can only be read after it ends), which keeps process start-up delay out of the times.
    """

    def __init__(self) -> None:
        self.anchor_s: float | None = None
        self.elapsed_s = 0.0
        self.energy_j = 0.0
        self.durations_s: deque[float] = deque(maxlen=512)  # recent real sample lengths

    @property
    def spacing_ms(self) -> float | None:
        """Median real sample length so far, in ms (None before the first sample)."""
        return statistics.median(self.durations_s) * 1e3 if self.durations_s else None

    def skip(self, duration_s: float | None) -> str:
        """A malformed sample of known length: keep later times true; its energy is unknown."""
        if duration_s is None or self.anchor_s is None:
            return ""
        self.elapsed_s += duration_s
        return f" (its {duration_s * 1e3:.0f} ms are missing from the energy)"

    def place(self, s: IntervalSample, arrived_s: float) -> SourceSample:
        if self.anchor_s is None:
            self.anchor_s = arrived_s - s.duration_s
        self.elapsed_s += s.duration_s
        self.energy_j += s.total_j
        self.durations_s.append(s.duration_s)
        power = {k: v / s.duration_s for k, v in s.energy_j.items()}
        power["total"] = s.total_j / s.duration_s
        return SourceSample(
            t_s=self.anchor_s + self.elapsed_s, power_w=power, energy_j=self.energy_j
        )


def warn_skipped(source: str, index: int, why: str) -> None:
    """Say which sample was skipped and why (one line), and keep going."""
    msg = f"{source}: skipped malformed sample #{index}: {why}"
    log.debug(msg)
    warnings.warn(msg, SkippedSampleWarning, stacklevel=3)


# -- a source that reads a feed ------------------------------------------------------------------
class StreamSource(PowerSource):
    """A source that parses a byte feed: a file (complete, or tailed), or a spawned tool's stdout.

    Subclasses parse the bytes and say whether the stream is live (times anchored on when the
    first sample came) or a complete capture (times anchored on open).
    """

    kind = "measured"

    def __init__(self, path: str | os.PathLike[str] | None, follow: bool, what: str) -> None:
        self.path = Path(path) if path is not None else None
        self.follow = follow
        self.counter_starts_at_open = True
        self.skipped_samples = 0
        self._feed: ByteFeed | None = None
        self._clock = IntervalClock()
        self._open_s = 0.0
        if self.path is not None and not self.path.is_file():
            raise InvalidInputError(f"{what} {self.path} does not exist or is no file")

    def _open_feed(self, from_start: bool, argv: Callable[[], list[str]]) -> None:
        """Open the file (follow as self.follow says), or spawn the tool argv() names."""
        self._open_s = time.monotonic()
        if self.path is not None:
            self._feed = FileFeed(self.path, self.follow, from_start)
            return
        self._feed = ProcessFeed(argv(), self.name)

    def _read_feed(self) -> tuple[bytes, float, bool]:
        """The new bytes, when the last of them came, and whether the feed has ended."""
        if self._feed is None:
            raise SourceError(f"{self.name} source polled before open()")
        data, arrived = self._feed.read()
        return data, arrived, self._feed.ended

    def _anchor(self, live: bool) -> None:
        """A complete capture's times start at open; a live stream's at its first sample."""
        if not live and self._clock.anchor_s is None:
            self._clock.anchor_s = self._open_s

    def _observe_spacing(self) -> None:
        """Resolution and power window follow the real sample spacing, not the asked interval."""
        self.native_interval_ms = self.power_window_ms = self._clock.spacing_ms

    def _polled(self, out: list[SourceSample], final: bool) -> list[SourceSample]:
        """End of a poll: follow the spacing when samples came, mark a finished feed exhausted."""
        if out:
            self._observe_spacing()
        if final:
            self.exhausted = True
        return out

    def close(self) -> None:
        if self._feed is not None:
            with contextlib.suppress(Exception):
                self._feed.close()
            self._feed = None


class SocStreamSource(StreamSource):
    """A stream of Apple silicon's SoC power counters (powermetrics and macmon read the same)."""

    rails = ("cpu", "gpu", "ane", "dram")
    scope = "system (SoC)"
