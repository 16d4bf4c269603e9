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

The stream plumbing (file tail, subprocess pipe, interval clock, skipped-sample warning) is in
streams.py; this module parses powermetrics' formats.
"""

from __future__ import annotations

import functools
import os
import platform
import plistlib
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MalformedSampleError
from .base import Availability
from .record import RAILS, SourceSample
from .streams import IntervalSample, SocStreamSource, warn_skipped

__all__ = [
    "POWERMETRICS",
    "SAMPLERS",
    "PowermetricsParser",
    "PowermetricsSource",
    "parse_plist_sample",
    "parse_text_sample",
]

POWERMETRICS = "/usr/bin/powermetrics"
SAMPLERS = "cpu_power,gpu_power,ane_power"


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


class PowermetricsSource(SocStreamSource):
    """Apple `powermetrics` (CPU, GPU, ANE, DRAM rails): spawned via `sudo -n`, or a tailed file.

    path=None spawns `sudo -n powermetrics -i <ms> -f plist --samplers cpu_power,gpu_power,
    ane_power` (needs passwordless sudo or root). path=FILE reads what a root terminal writes with
    `sudo powermetrics -i 100 -f plist --samplers cpu_power,gpu_power,ane_power -o FILE`;
    follow=True (the default) tails it from its end and never runs out, follow=False reads a
    complete file from its start to its end.
    """

    name = "powermetrics"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        follow: bool = True,
        from_start: bool | None = None,
        binary: str = POWERMETRICS,
    ) -> None:
        super().__init__(path, follow if path is not None else True, "powermetrics file")
        self.from_start = (not follow) if from_start is None else from_start
        self.binary = binary
        self._parser = PowermetricsParser()

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

    def open(self, interval_ms: float) -> None:
        self._open_feed(self.from_start, lambda: self._argv(interval_ms))

    def _argv(self, interval_ms: float) -> list[str]:
        argv = [self.binary, "-i", str(max(1, round(interval_ms))), "-f", "plist"]
        argv += ["--samplers", SAMPLERS]
        if os.geteuid() != 0:
            argv = ["sudo", "-n", *argv]
        return argv

    def poll(self) -> list[SourceSample]:
        data, arrived, final = self._read_feed()
        out = []
        for index, parsed in self._parser.feed(data, final):
            self._anchor(live=self.path is None or not self.from_start)
            if isinstance(parsed, Exception):
                self.skipped_samples += 1
                gap = self._clock.skip(getattr(parsed, "duration_s", None))
                warn_skipped("powermetrics", index, f"{parsed}{gap}")
                continue
            out.append(self._clock.place(parsed, arrived))
        return self._polled(out, final)


def _sudo_works() -> bool:
    if not shutil.which("sudo"):
        return False
    try:
        r = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0
