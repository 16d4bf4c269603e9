"""macOS `powermetrics`: spawned through `sudo -n`, or a file a root terminal writes that we tail.

Apple's tool reports, per sample, energy in mJ and power in mW over `elapsed_ns`, the real length
of the sample (asked 100 ms, seen 116-129 ms): energy is summed from the energy keys, or power x
real elapsed when a sample has only power keys, never divided by the nominal interval. Times are
the accumulated `elapsed_ns`, so a complete file read at once still gets true, increasing times.

Resolution: one sample, whose real length is reported as native_interval_ms (the median of the
elapsed times seen so far). Power values are averages over each sample (power_window_ms = the same
spacing), so peaks shorter than a sample are smoothed. Aliasing: none from our sampling; each
sample's energy covers its whole interval back to back, so a periodic load integrates exactly
(within what Apple's power model reports). Scope: the whole SoC, every process. Needs root
(`sudo -n`), or a file written by a root terminal.

This module also holds the stream plumbing the other stream sources share (a file tail, a
subprocess pipe, the interval clock and the skipped-sample warning).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import plistlib
import re
import shutil
import statistics
import subprocess
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import InvalidInputError, MalformedSampleError, SourceError, SourceUnavailableError
from .base import Availability, PowerSource
from .record import RAILS, SourceSample

log = logging.getLogger(__name__)

POWERMETRICS = "/usr/bin/powermetrics"
SAMPLERS = "cpu_power,gpu_power,ane_power"


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


# -- powermetrics formats -----------------------------------------------------------------------
_ENERGY_KEYS = {r: f"{r}_energy" for r in RAILS}  # mJ
_POWER_KEYS = {r: f"{r}_power" for r in RAILS}  # mW
_HEADER = re.compile(
    rb"\*\*\* Sampled system activity[^\n]*?\(([0-9.]+)\s*ms elapsed\)[^\n]*\*\*\*"
)
_TEXT_POWER = re.compile(
    r"^\s*(CPU|GPU|ANE|DRAM|Combined) Power(?: \([^)]*\))?:\s*([0-9.]+)\s*(mW|W)\s*$", re.M
)
_TEXT_INTEL = re.compile(
    r"^\s*Intel energy model derived package power[^:]*:\s*([0-9.]+)\s*(mW|W)", re.M
)


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MalformedSampleError(f"{key} is {v!r}, not a number")
    if not v >= 0 or v == float("inf"):
        raise MalformedSampleError(f"{key} is {v!r}, not a finite non-negative number")
    return float(v)


def parse_plist_sample(doc: bytes) -> IntervalSample:
    """One `-f plist` document -> energy per rail over its real elapsed time."""
    try:
        d = plistlib.loads(doc.strip(b"\x00\r\n\t "))
    except Exception as exc:
        raise MalformedSampleError(f"not a plist ({type(exc).__name__}: {exc})") from exc
    if not isinstance(d, dict):
        raise MalformedSampleError(f"plist root is a {type(d).__name__}, not a dict")
    if "elapsed_ns" not in d:
        raise MalformedSampleError("no elapsed_ns")
    duration_s = _number(d["elapsed_ns"], "elapsed_ns") / 1e9
    if duration_s <= 0:
        raise MalformedSampleError("elapsed_ns is 0")
    scopes = [x for x in (d.get("processor"), d.get("gpu"), d) if isinstance(x, dict)]

    def find(key: str) -> float | None:
        for scope in scopes:
            if key in scope:
                return _number(scope[key], key)
        return None

    energy: dict[str, float] = {}
    for rail in RAILS:
        mj = find(_ENERGY_KEYS[rail])
        mw = find(_POWER_KEYS[rail])
        if rail == "cpu" and mw is None and isinstance(d.get("processor"), dict):
            clusters = [c for c in d["processor"].get("clusters", []) if isinstance(c, dict)]
            watts = [_number(c["power"], "clusters[].power") for c in clusters if "power" in c]
            mw = sum(watts) if watts else None
        if mj is not None:
            energy[rail] = mj / 1e3
        elif mw is not None:
            energy[rail] = mw / 1e3 * duration_s
    if not energy:
        combined = find("combined_power")
        if combined is None:
            raise MalformedSampleError("no energy or power keys (cpu/gpu/ane/dram, combined)")
        energy["total"] = combined / 1e3 * duration_s
    return IntervalSample(duration_s, energy)


def parse_text_sample(elapsed_ms: float, body: str) -> IntervalSample:
    """One text sample (the lines after a `*** Sampled system activity` header)."""
    duration_s = elapsed_ms / 1e3
    if not duration_s > 0:
        raise MalformedSampleError(f"elapsed time is {elapsed_ms} ms")
    try:
        return _text_sample(duration_s, body)
    except MalformedSampleError as exc:
        exc.duration_s = duration_s  # type: ignore[attr-defined]
        raise


def _text_sample(duration_s: float, body: str) -> IntervalSample:
    watts: dict[str, float] = {}
    for name, value, unit in _TEXT_POWER.findall(body):
        w = float(value) / (1e3 if unit == "mW" else 1.0)
        watts["total" if name == "Combined" else name.lower()] = w
    intel = _TEXT_INTEL.search(body)
    if intel and "total" not in watts:
        watts["total"] = float(intel.group(1)) / (1e3 if intel.group(2) == "mW" else 1.0)
    if not watts:
        raise MalformedSampleError("no 'CPU/GPU/ANE/Combined Power: N mW' lines")
    rails = {r: w * duration_s for r, w in watts.items() if r in RAILS}
    if rails:  # the rails are what we report; Combined is their sum (CPU + GPU + ANE)
        return IntervalSample(duration_s, rails)
    return IntervalSample(duration_s, {"total": watts["total"] * duration_s})


class PowermetricsParser:
    """Splits a byte stream into samples (plist: NUL-separated; text: header-separated)."""

    def __init__(self) -> None:
        self._buf = b""
        self._format: str | None = None
        self.index = 0  # samples seen, the malformed ones included

    def feed(self, data: bytes, final: bool) -> list[tuple[int, IntervalSample | Exception]]:
        """Complete samples in the stream so far, or the error that made one malformed."""
        self._buf += data
        if self._format is None:
            head = self._buf.lstrip(b"\x00\r\n\t ")
            if head.startswith((b"<?xml", b"<plist", b"<!DOCTYPE")):
                self._format = "plist"
            elif _HEADER.search(head) or (final and head):
                self._format = "text"
            else:
                return []
        docs = self._split_plist(final) if self._format == "plist" else self._split_text(final)
        out: list[tuple[int, IntervalSample | Exception]] = []
        for parse in docs:
            self.index += 1
            try:
                out.append((self.index, parse()))
            except MalformedSampleError as exc:
                out.append((self.index, exc))
        return out

    def _split_plist(self, final: bool) -> list[Callable[[], IntervalSample]]:
        parts = self._buf.split(b"\x00")
        self._buf = parts.pop()  # the unfinished document (b"" after a trailing NUL)
        if final and self._buf.strip():
            parts.append(self._buf)
            self._buf = b""
        return [functools.partial(parse_plist_sample, p) for p in parts if p.strip(b"\r\n\t ")]

    def _split_text(self, final: bool) -> list[Callable[[], IntervalSample]]:
        heads = list(_HEADER.finditer(self._buf))
        out: list[Callable[[], IntervalSample]] = []
        if not heads:
            if final and self._buf.strip():
                junk, self._buf = self._buf, b""
                out.append(functools.partial(_raise, f"no sample header in {junk[:40]!r}"))
            return out
        n_done = len(heads) if final else len(heads) - 1
        for i in range(n_done):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(self._buf)
            body = self._buf[heads[i].end() : end].decode(errors="replace")
            ms = float(heads[i].group(1))
            out.append(functools.partial(parse_text_sample, ms, body))
        self._buf = b"" if final else self._buf[heads[-1].start() :]
        return out


def _raise(msg: str) -> IntervalSample:
    raise MalformedSampleError(msg)


class PowermetricsSource(PowerSource):
    """Apple `powermetrics` (CPU, GPU, ANE, DRAM rails): spawned via `sudo -n`, or a tailed file.

    path=None spawns `sudo -n powermetrics -i <ms> -f plist --samplers cpu_power,gpu_power,
    ane_power` (needs passwordless sudo or root). path=FILE reads what a root terminal writes with
    `sudo powermetrics -i 100 -f plist --samplers cpu_power,gpu_power,ane_power -o FILE`;
    follow=True (the default) tails it from its end and never runs out, follow=False reads a
    complete file from its start to its end.
    """

    name = "powermetrics"
    kind = "measured"
    rails = ("cpu", "gpu", "ane", "dram")
    scope = "system (SoC)"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        follow: bool = True,
        from_start: bool | None = None,
        binary: str = POWERMETRICS,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.follow = follow if path is not None else True
        self.from_start = (not follow) if from_start is None else from_start
        self.binary = binary
        self.counter_starts_at_open = True
        self.skipped_samples = 0
        self._feed: ByteFeed | None = None
        self._parser = PowermetricsParser()
        self._clock = IntervalClock()
        self._open_s = 0.0
        if self.path is not None and not self.path.is_file():
            raise InvalidInputError(f"powermetrics file {self.path} does not exist or is no file")

    @classmethod
    def availability(cls) -> Availability:
        if platform.system() != "Darwin":
            return Availability(False, "powermetrics is a macOS tool (this is not macOS)")
        if not Path(POWERMETRICS).exists() and not shutil.which("powermetrics"):
            return Availability(False, f"{POWERMETRICS} not found")
        if os.geteuid() != 0 and not _sudo_works():
            return Availability(
                False,
                "powermetrics needs root: `sudo -n true` fails here. Allow it in sudoers, or "
                "write samples from a root terminal and pass the file (powermetrics:FILE); "
                "or use macmon (no sudo)",
            )
        return Availability(True, "Apple powermetrics CPU/GPU/ANE energy via sudo -n")

    def describe(self) -> str:
        if self.path is None:
            where = "spawned via sudo -n"
        else:
            where = f"{'tailing' if self.follow else 'reading'} {self.path}"
        spacing = self._clock.spacing_ms
        every = (
            f"samples every {spacing:.0f} ms (median real elapsed), power averaged over each"
            if spacing is not None
            else "power averaged over each sample"
        )
        return (
            f"Apple powermetrics ({where}): CPU/GPU/ANE/DRAM energy over each sample's real "
            f"elapsed time; {every}; Apple documents these values as estimates of its power model"
        )

    def _observe_spacing(self) -> None:
        """Resolution and power window follow the real sample spacing, not the asked interval."""
        spacing = self._clock.spacing_ms
        self.native_interval_ms = spacing
        self.power_window_ms = spacing

    def open(self, interval_ms: float) -> None:
        self._open_s = time.monotonic()
        if self.path is not None:
            self._feed = FileFeed(self.path, self.follow, self.from_start)
            return
        argv = [self.binary, "-i", str(max(1, round(interval_ms))), "-f", "plist"]
        argv += ["--samplers", SAMPLERS]
        if os.geteuid() != 0:
            argv = ["sudo", "-n", *argv]
        self._feed = ProcessFeed(argv, "powermetrics")

    def poll(self) -> list[SourceSample]:
        if self._feed is None:
            raise SourceError("powermetrics source polled before open()")
        data, arrived = self._feed.read()
        final = self._feed.ended
        out = []
        for index, parsed in self._parser.feed(data, final):
            live = self.path is None or not self.from_start
            if not live and self._clock.anchor_s is None:
                self._clock.anchor_s = self._open_s
            if isinstance(parsed, Exception):
                self.skipped_samples += 1
                gap = self._clock.skip(getattr(parsed, "duration_s", None))
                warn_skipped("powermetrics", index, f"{parsed}{gap}")
                continue
            out.append(self._clock.place(parsed, arrived))
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


def _sudo_works() -> bool:
    if not shutil.which("sudo"):
        return False
    try:
        r = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0
