"""`macmon pipe`: sudo-less Apple silicon power (the same private counters powermetrics reads).

Each JSON line holds watts averaged over macmon's last interval (`cpu_power`, `gpu_power`,
`ane_power`, `ram_power`; `all_power` = CPU+GPU+ANE). A line's interval is the gap between its
`timestamp` and the previous one when macmon writes timestamps, else the gap between arrivals
(live) or the nominal interval (a capture without timestamps, which the description then says).

Resolution: one line; native_interval_ms is the median of the intervals seen so far (asked 100 ms,
macmon's lines come later, like powermetrics' samples). Power values are averages over each line's
interval (power_window_ms = the same spacing). Aliasing: none from our sampling; each line's
average covers its interval back to back, so energy = average x interval integrates a periodic
load exactly. Scope: the whole SoC, every process. Needs no root.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil

from ..errors import InvalidInputError, MalformedSampleError
from .base import Availability
from .record import SourceSample
from .streams import IntervalSample, SocStreamSource, warn_skipped

__all__ = ["MacmonSource", "parse_macmon_line"]

_RAIL_KEYS = {"cpu": "cpu_power", "gpu": "gpu_power", "ane": "ane_power", "dram": "ram_power"}


def parse_macmon_line(line: bytes) -> tuple[dict[str, float], float | None]:
    """Watts per rail and the line's timestamp (epoch seconds) if it has one."""
    try:
        d = json.loads(line)
    except ValueError as exc:
        raise MalformedSampleError(f"not JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise MalformedSampleError(f"a JSON {type(d).__name__}, not an object")
    watts: dict[str, float] = {}
    for rail, key in _RAIL_KEYS.items():
        if key in d:
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise MalformedSampleError(f"{key} is {v!r}, not a non-negative number of watts")
            watts[rail] = float(v)
    if not watts:
        if "all_power" not in d:
            raise MalformedSampleError("no cpu_power/gpu_power/ane_power/ram_power/all_power")
        watts["total"] = float(d["all_power"])
    stamp = None
    if isinstance(d.get("timestamp"), str):
        try:
            stamp = _dt.datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise MalformedSampleError(f"timestamp {d['timestamp']!r} is not ISO 8601") from exc
    return watts, stamp


class MacmonSource(SocStreamSource):
    """Apple silicon CPU/GPU/ANE/RAM power from `macmon pipe` (no sudo), or a captured file."""

    name = "macmon"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        follow: bool = False,
        capture_interval_ms: float = 1000.0,
        binary: str = "macmon",
    ) -> None:
        if not capture_interval_ms > 0:
            raise InvalidInputError(f"capture_interval_ms must be > 0, got {capture_interval_ms!r}")
        self.capture_interval_ms = float(capture_interval_ms)
        self.binary = binary
        self._buf = b""
        self._index = 0
        self._interval_ms = self.capture_interval_ms
        self._last_stamp: float | None = None
        self._last_arrival: float | None = None
        self._nominal_lines = 0  # lines with no interval of their own (first line, no timestamps)
        super().__init__(path, follow, "macmon capture")

    @classmethod
    def availability(cls) -> Availability:
        if platform.system() != "Darwin" or platform.machine() != "arm64":
            return Availability(False, "macmon reads Apple silicon counters (this is not one)")
        exe = shutil.which("macmon")
        if exe is None:
            return Availability(False, "macmon is not on PATH (brew install macmon)")
        return Availability(True, f"macmon pipe ({exe}): CPU/GPU/ANE/RAM power, no sudo")

    def describe(self) -> str:
        where = f"capture {self.path}" if self.path is not None else "`macmon pipe`"
        spacing = self._clock.spacing_ms
        every = f", lines every {spacing:.0f} ms (median)" if spacing is not None else ""
        nominal = (
            f"; {self._nominal_lines} line(s) with no interval of their own (the first, or no "
            f"timestamps) counted as the nominal {self._interval_ms:g} ms"
            if self._nominal_lines
            else ""
        )
        return (
            f"macmon ({where}): Apple silicon CPU/GPU/ANE/RAM watts averaged over each "
            f"interval{every}, from the counters powermetrics reads (Apple calls them "
            f"estimates){nominal}"
        )

    def open(self, interval_ms: float) -> None:
        self._open_feed(not self.follow, lambda: self._argv(interval_ms))

    def _argv(self, interval_ms: float) -> list[str]:
        self._interval_ms = float(max(1, round(interval_ms)))
        return [self.binary, "pipe", "-i", str(int(self._interval_ms))]

    def poll(self) -> list[SourceSample]:
        data, arrived, final = self._read_feed()
        self._buf += data
        lines = self._buf.split(b"\n")
        self._buf = lines.pop()
        if final and self._buf.strip():
            lines.append(self._buf)
            self._buf = b""
        out = []
        for line in lines:
            if not line.strip():
                continue
            self._index += 1
            try:
                watts, stamp = parse_macmon_line(line)
            except MalformedSampleError as exc:
                self.skipped_samples += 1
                warn_skipped("macmon", self._index, str(exc))
                continue
            dt_s = self._interval_s(stamp, arrived)
            if dt_s is None:
                continue
            self._anchor(live=self.path is None or self.follow)
            sample = IntervalSample(dt_s, {k: w * dt_s for k, w in watts.items()})
            out.append(self._clock.place(sample, arrived))
        return self._polled(out, final)

    def _interval_s(self, stamp: float | None, arrived: float) -> float | None:
        """This line's interval in s; None (skip quietly) for a repeated timestamp."""
        last_stamp, last_arrival = self._last_stamp, self._last_arrival
        self._last_stamp = stamp if stamp is not None else last_stamp
        self._last_arrival = arrived
        if stamp is not None and last_stamp is not None:
            dt = stamp - last_stamp
            return dt if dt > 0 else None
        live = self.path is None or self.follow
        if stamp is None and live and last_arrival is not None and arrived > last_arrival:
            return arrived - last_arrival
        self._nominal_lines += 1
        return self._interval_ms / 1e3
