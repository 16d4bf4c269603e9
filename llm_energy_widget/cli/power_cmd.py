"""`llm-energy sources` and `llm-energy power`: which power sources work here, and live readings."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..analysis.names import window_note
from ..errors import InvalidInputError, SourceError
from ..power.base import PowerSource
from ..power.record import PowerReading
from ..power.registry import (
    FILE_SOURCES,
    SOURCES,
    auto_name,
    explain_auto,
    get_source,
    list_sources,
)
from ..power.sampler import PowerSampler
from ..power.streams import SkippedSampleWarning

__all__ = ["EXIT_SKIPPED", "cmd_power", "cmd_sources", "register", "sniff_file"]

EXIT_SKIPPED = 1  # readings printed, but some malformed samples were skipped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sources",
        help="List the power sources, whether each works here, and why.",
        description="List the power sources, whether each works here, and why (or what it reads).",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser(
        "power",
        help="Print power readings for a while (JSON lines with --json).",
        description=(
            "Sample a power source and print each reading as it comes (--json: one JSON record "
            "per line), or a summary. With --file, a complete file is read to its end and the "
            "command stops there. Exit status: 0 ok, 1 some malformed samples were skipped "
            "(each named on stderr), 2 error."
        ),
    )
    p.add_argument("--seconds", type=float, default=5.0, help="how long to sample (default 5)")
    p.add_argument(
        "--source",
        default="auto",
        help=f"auto (default) or one of {', '.join(SOURCES)}; also NAME:PATH",
    )
    p.add_argument(
        "--file",
        metavar="PATH",
        help="a trace to replay, a powermetrics output file, or a macmon capture "
        "(with --source auto the format is recognized; default: none, sample live)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="tail --file as a live writer appends to it (default: read a complete file)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed: 1 real time (default), 0 as fast as possible",
    )
    p.add_argument(
        "--devices", metavar="LIST", help="nvml: GPU indices to sum, e.g. 0,2 (default: all)"
    )
    p.add_argument(
        "--scope",
        choices=("process", "system"),
        help="estimate: CPU time of this process (default) or of the whole system (Linux)",
    )
    p.add_argument(
        "--interval-ms", type=float, default=100.0, help="sampling interval in ms (default 100)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON record per reading")
    p.set_defaults(func=cmd_power)


# -- sources ------------------------------------------------------------------------------------
def cmd_sources(args: argparse.Namespace) -> int:
    rows = list_sources()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'SOURCE':<{width}}  {'AVAILABLE':<9}  {'KIND':<9}  REASON")
    for r in rows:
        yes = "yes" if r["available"] else "no"
        print(f"{r['name']:<{width}}  {yes:<9}  {r['kind']:<9}  {r['reason']}")
    print("\n" + explain_auto().splitlines()[0].split(":")[0])  # "auto -> NAME" or "-> none"
    return 0


# -- power --------------------------------------------------------------------------------------
def sniff_file(path: Path) -> str:
    """Which source reads this file: powermetrics output, a macmon capture, or a trace."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    text = head.lstrip(b"\x00\r\n\t ")
    if text.startswith((b"<?xml", b"<plist", b"<!DOCTYPE")) or b"*** Sampled system" in text:
        return "powermetrics"
    first = text.split(b"\n", 1)[0]
    if first.startswith(b"{") and b'"t_ms"' not in first and b'_power"' in first:
        return "macmon"
    return "replay"


def _source_from_args(args: argparse.Namespace) -> PowerSource:
    spec: str = args.source
    name = spec.partition(":")[0].lower()
    kw: dict[str, Any] = {}
    if args.file is not None:
        if ":" in spec:
            raise InvalidInputError("give the file either as --file or as NAME:PATH, not both")
        path = Path(args.file)
        if not path.is_file():
            raise InvalidInputError(f"--file {args.file}: no such file")
        if name == "auto":
            name = sniff_file(path)
        if name not in FILE_SOURCES:
            raise InvalidInputError(
                f"--file works with {', '.join(FILE_SOURCES)}, not with source {name!r}"
            )
        spec, kw["path"] = name, path
    if name in ("powermetrics", "macmon") and (args.file is not None or ":" in spec):
        kw["follow"] = args.follow
    if name == "replay":
        kw["speed"] = args.speed
    if args.scope is not None:
        if name != "estimate" and not (name == "auto" and auto_name() == "estimate"):
            raise InvalidInputError("--scope applies to the estimate source only")
        spec, kw["scope"] = "estimate", args.scope
    if args.devices is not None:
        if name != "nvml":
            raise InvalidInputError("--devices applies to --source nvml only")
        try:
            kw["devices"] = [int(d) for d in args.devices.split(",")]
        except ValueError:
            raise InvalidInputError(
                f"--devices must be GPU indices like 0,2, got {args.devices!r}"
            ) from None
    return get_source(spec, **kw)


def _check_numbers(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise InvalidInputError(f"--seconds must be a positive number, got {args.seconds:g}")
    if not (math.isfinite(args.interval_ms) and args.interval_ms > 0):
        raise InvalidInputError(
            f"--interval-ms must be a positive number, got {args.interval_ms:g}"
        )
    if not (math.isfinite(args.speed) and args.speed >= 0):
        raise InvalidInputError(f"--speed must be >= 0, got {args.speed:g}")


def _warn_line(stream: TextIO) -> Any:
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"llm-energy: warning: {message}", file=stream, flush=True)

    return show


def cmd_power(args: argparse.Namespace) -> int:
    _check_numbers(args)
    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedSampleWarning)
        warnings.showwarning = _warn_line(sys.stderr)
        source = _source_from_args(args)
        readings = _sample(source, args)
    skipped = int(getattr(source, "skipped_samples", 0))
    if not args.json:
        _print_summary(source, readings, args.interval_ms, skipped)
    return EXIT_SKIPPED if skipped else 0


def _sample(source: PowerSource, args: argparse.Namespace) -> list[PowerReading]:
    sampler = PowerSampler(source, args.interval_ms)
    readings: list[PowerReading] = []
    pipe_closed = threading.Event()

    def on_reading(r: PowerReading, _phase: str | None) -> None:
        readings.append(r)
        if args.json and not pipe_closed.is_set():
            try:
                print(json.dumps(r.to_dict()), flush=True)
            except BrokenPipeError:
                pipe_closed.set()

    sampler.add_listener(on_reading)
    deadline = time.monotonic() + args.seconds
    sampler.start()
    try:
        while time.monotonic() < deadline and not pipe_closed.is_set():
            if sampler.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                break  # a complete file ran out, or the source failed
    finally:
        sampler.stop(final_sample=not source.exhausted)
    if sampler.error is not None:
        raise sampler.error
    if not readings:
        raise SourceError(f"power source {source.name!r} gave no reading in {args.seconds:g} s")
    return readings


def _print_summary(
    source: PowerSource, readings: list[PowerReading], interval_ms: float, skipped: int
) -> None:
    first, last = readings[0], readings[-1]
    span_s = (last.t_ms - first.t_ms) / 1000.0
    steps = [b.t_ms - a.t_ms for a, b in itertools.pairwise(readings)]
    resolution_ms = statistics.median(steps) if steps else interval_ms
    energy_j = last.energy_j - first.energy_j
    avg = f"{energy_j / span_s:.2f} W" if span_s > 0 else "n/a (one reading)"
    peak = max(r.total_w for r in readings)
    # a source that averages power over a window (NVML: 1 s) or resolves coarser than it is
    # polled says so; read with getattr: not every source has these attributes
    win = window_note(getattr(source, "power_window_ms", None))
    resolution = f"{resolution_ms:.0f} ms between readings (asked {interval_ms:g} ms)"
    native = source.native_interval_ms
    if isinstance(native, (int, float)) and native > resolution_ms:
        resolution = f"{native:g} ms (the source's own; {resolution})"
    rows = [
        ("source", f"{source.name} ({source.describe()})"),
        (
            "kind",
            source.kind
            + ("  <- an ESTIMATE, not a measurement" if source.kind != "measured" else ""),
        ),
        ("scope", source.scope),
        (
            "readings",
            f"{len(readings)}" + (f" ({skipped} malformed samples skipped)" if skipped else ""),
        ),
        ("duration", f"{span_s:.2f} s (first to last reading)"),
        (
            "energy",
            f"{energy_j:.3f} J over that span ({last.energy_j:.3f} J since the source opened)",
        ),
        ("average power", avg),
        ("peak power", f"{peak:.2f} W" + (f" (readings are {win}s)" if win else "")),
        ("resolution", resolution),
    ]
    for key in (k for k in last.rails if k.endswith("_energy_j")):  # NVML: one row per GPU
        rail = key.removesuffix("_energy_j")
        e_j = last.rails[key] - first.rails.get(key, 0.0)
        rail_avg = f", {e_j / span_s:.2f} W average" if span_s > 0 else ""
        rows.append((f"{rail} energy", f"{e_j:.3f} J{rail_avg}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
