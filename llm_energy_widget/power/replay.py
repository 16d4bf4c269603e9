"""Play back a recorded power trace on the sampler's clock (demos, tests, offline analysis).

Formats: CSV with a header `t_ms,total_w[,cpu_w,gpu_w,ane_w,dram_w][,energy_j]`, or JSON lines of
the power record (`llm-energy power --json` output). The sample at trace time t_ms is released once
(now - open) x speed >= t_ms and stamped open + t_ms/1000, so energy integrals keep the trace's
own timing whatever the speed (speed=0: everything at the first poll).

Energy: from the trace's energy_j column when it has one (a recorded counter: exact, no
aliasing); rows without a value between two that have one get it interpolated in time, rows
before the first or after the last are dropped, so sampled power is never spliced into a
counter's curve. Without the column, the sampler integrates total_w with the trapezoid rule,
which aliases periodic loads (a 70 ms square wave sampled every 100 ms: up to +-7 % for a
100/300 W wave). Resolution: the trace's median sample spacing. Scope: whatever the trace
recorded ("trace").
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MalformedSampleError, SourceError
from .base import Availability, PowerSource
from .record import KINDS, RAIL_COLUMNS, RAILS, SourceSample
from .streams import warn_skipped

__all__ = ["MAX_POWER_W", "TEXT_COLUMNS", "VALUE_COLUMNS", "ReplaySource", "TraceRow"]

MAX_POWER_W = 1e7
"""No reading of one machine is above 10 MW: a larger one is a broken trace, not a measurement
(1e308 W made the integral overflow to infinity, and `power --json` printed invalid JSON)."""
VALUE_COLUMNS = ("t_ms", "total_w", *RAIL_COLUMNS, "energy_j")
TEXT_COLUMNS = ("source", "kind", "phase")


@dataclass(frozen=True)
class TraceRow:
    t_ms: float
    power_w: dict[str, float]
    energy_j: float | None


def _value(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise MalformedSampleError(f"{key} is {v!r}, not a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise MalformedSampleError(f"{key} is {v!r}, not a number") from None
    if not math.isfinite(x) or x < 0:
        raise MalformedSampleError(f"{key} is {v!r}, not a finite non-negative number")
    return x


def _row(d: dict[str, Any]) -> TraceRow:
    t = _value(d, "t_ms")
    if t is None:
        raise MalformedSampleError("no t_ms")
    power = {r: w for r in RAILS if (w := _value(d, f"{r}_w")) is not None}
    total = _value(d, "total_w")
    if total is not None:
        power["total"] = total
    elif not power:
        raise MalformedSampleError("no total_w and no rail power")
    return TraceRow(t, power, _value(d, "energy_j"))


def _records(text: str, where: str) -> list[tuple[int, dict[str, Any] | Exception]]:
    """(line number, record or parse error) for each data line of a CSV or JSON-lines trace."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    out: list[tuple[int, dict[str, Any] | Exception]] = []
    if first.startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError(f"a JSON {type(d).__name__}, not an object")
                out.append((n, d))
            except ValueError as exc:
                out.append((n, MalformedSampleError(f"line {n} is not a JSON record ({exc})")))
        return out
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in VALUE_COLUMNS + TEXT_COLUMNS]
    if "t_ms" not in header or unknown:
        raise InvalidInputError(
            f"{where}: a trace needs a CSV header with t_ms and total_w (optional "
            f"{', '.join(VALUE_COLUMNS[2:])}) or JSON lines; "
            + (f"unknown column(s) {unknown}" if unknown else f"header is {header}")
        )
    reader.fieldnames = header
    for d in reader:
        n = reader.line_num
        if None in d:
            out.append((n, MalformedSampleError(f"line {n} has more fields than the header")))
        else:
            out.append((n, d))
    return out


def _fill_energy(rows: list[TraceRow]) -> tuple[list[TraceRow], int]:
    """Rows with an energy value each: gaps between counter rows interpolated in time, rows
    before the first or after the last counter row dropped (their energy is unknown)."""
    known = [i for i, r in enumerate(rows) if r.energy_j is not None]
    first, last = known[0], known[-1]
    out: list[TraceRow] = []
    prev = first
    for i in range(first, last + 1):
        r = rows[i]
        if r.energy_j is not None:
            prev = i
            out.append(r)
            continue
        nxt = known[bisect.bisect_right(known, i)]
        a, b = rows[prev], rows[nxt]
        assert a.energy_j is not None
        assert b.energy_j is not None
        frac = (r.t_ms - a.t_ms) / (b.t_ms - a.t_ms)
        out.append(TraceRow(r.t_ms, r.power_w, a.energy_j + frac * (b.energy_j - a.energy_j)))
    return out, len(rows) - len(out)


class ReplaySource(PowerSource):
    """A recorded trace, released on the sampler's clock at `speed` x real time."""

    name = "replay"
    scope = "trace"

    def __init__(
        self, path: str | os.PathLike[str], speed: float = 1.0, kind: str | None = None
    ) -> None:
        self.path = Path(path)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)):
            raise InvalidInputError(f"speed must be a number >= 0, got {speed!r}")
        if not (math.isfinite(speed) and speed >= 0):
            raise InvalidInputError(f"speed must be a finite number >= 0, got {speed!r}")
        if kind is not None and kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.speed = float(speed)
        self.counter_starts_at_open = True
        self.skipped_samples = 0
        self.rows, trace_kind, self.recorded_by = self._load()
        if kind is not None and trace_kind is not None and kind != trace_kind:
            raise InvalidInputError(
                f"{self.path} says its readings are {trace_kind}; kind={kind!r} would relabel them"
            )
        self.kind = kind or trace_kind or "measured"
        self.use_energy = any(r.energy_j is not None for r in self.rows)
        self.dropped_rows = 0
        if self.use_energy:
            self.rows, self.dropped_rows = _fill_energy(self.rows)
        steps = [b.t_ms - a.t_ms for a, b in zip(self.rows, self.rows[1:], strict=False)]
        self.native_interval_ms = statistics.median(steps) if steps else None
        self.rails = tuple(r for r in RAILS if any(r in row.power_w for row in self.rows))
        self._open_s: float | None = None
        self._next = 0

    def _load(self) -> tuple[list[TraceRow], str | None, str | None]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InvalidInputError(f"cannot read trace {self.path}: {why}") from exc
        rows: list[TraceRow] = []
        kinds: set[str] = set()
        sources: set[str] = set()
        last_e: float | None = None  # the last kept row's counter (kept as we go: linear)
        for n, rec in _records(text, str(self.path)):
            try:
                if isinstance(rec, Exception):
                    raise rec
                row = _row(rec)
                if rows and row.t_ms <= rows[-1].t_ms:
                    raise MalformedSampleError(
                        f"t_ms {row.t_ms:g} is not after the previous {rows[-1].t_ms:g}"
                    )
                high = [w for w in row.power_w.values() if w > MAX_POWER_W]
                if high:
                    raise MalformedSampleError(
                        f"{max(high):g} W is beyond any machine (> {MAX_POWER_W:g} W)"
                    )
                if row.energy_j is not None and last_e is not None and row.energy_j < last_e:
                    raise InvalidInputError(
                        f"trace {self.path}: line {n}: the energy counter goes backwards "
                        f"({last_e:g} J, then {row.energy_j:g} J); a cumulative energy_j "
                        "column never decreases"
                    )
                if rec.get("kind") not in (None, ""):
                    if rec["kind"] not in KINDS:
                        raise MalformedSampleError(f"kind {rec['kind']!r} is not one of {KINDS}")
                    kinds.add(rec["kind"])
            except MalformedSampleError as exc:
                self.skipped_samples += 1
                warn_skipped(f"replay {self.path.name}", n, f"line {n}: {exc}")
                continue
            rows.append(row)
            if row.energy_j is not None:
                last_e = row.energy_j
            if rec.get("source"):
                sources.add(str(rec["source"]))
        if not rows:
            raise InvalidInputError(f"trace {self.path} holds no readable sample")
        if len(kinds) > 1:
            raise InvalidInputError(f"trace {self.path} mixes kinds {sorted(kinds)}")
        return rows, next(iter(kinds), None), ", ".join(sorted(sources)) or None

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "plays back a recorded trace: replay:PATH (CSV or JSON lines)")

    def describe(self) -> str:
        by = f", recorded by {self.recorded_by}" if self.recorded_by else ""
        if self.use_energy:
            energy = "energy from its energy_j column"
            if self.dropped_rows:
                energy += f" ({self.dropped_rows} rows outside it dropped)"
        else:
            energy = "no energy column: energy integrated from total_w (aliases periodic loads)"
        every = (
            f", samples every {self.native_interval_ms:g} ms (median)"
            if self.native_interval_ms is not None
            else ""
        )
        return (
            f"replay of {self.path} ({len(self.rows)} samples{by}, {self.kind}{every}) at "
            f"{self.speed:g}x; {energy}"
        )

    def open(self, interval_ms: float) -> None:
        self._open_s = time.monotonic()
        self._next = 0
        self.exhausted = False

    def poll(self) -> list[SourceSample]:
        if self._open_s is None:
            raise SourceError("replay source polled before open()")
        elapsed_ms = (time.monotonic() - self._open_s) * 1000.0
        horizon = math.inf if self.speed == 0 else elapsed_ms * self.speed
        out = []
        while self._next < len(self.rows) and self.rows[self._next].t_ms <= horizon:
            row = self.rows[self._next]
            self._next += 1
            out.append(
                SourceSample(
                    t_s=self._open_s + row.t_ms / 1000.0,
                    power_w=dict(row.power_w),
                    energy_j=row.energy_j if self.use_energy else None,
                )
            )
        self.exhausted = self._next >= len(self.rows)
        return out
