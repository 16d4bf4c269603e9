"""Every power source by name, and `auto`: the best measured source here, else the estimate."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, SourceUnavailableError
from .base import Availability, PowerSource
from .estimate import SCOPES, EstimateSource
from .macmon import MacmonSource
from .nvml import NvmlSource
from .powermetrics import PowermetricsSource
from .rapl import RaplSource
from .replay import ReplaySource

__all__ = [
    "ARG_SOURCES",
    "AUTO_ORDER",
    "FILE_SOURCES",
    "SOURCES",
    "auto_name",
    "explain_auto",
    "get_source",
    "list_sources",
]

SOURCES: dict[str, type[PowerSource]] = {
    "nvml": NvmlSource,
    "rapl": RaplSource,
    "powermetrics": PowermetricsSource,
    "macmon": MacmonSource,
    "estimate": EstimateSource,
    "replay": ReplaySource,
}
"""In order of preference for `auto` (replay is never chosen: it needs a trace)."""

AUTO_ORDER = ("nvml", "rapl", "powermetrics", "macmon")
FILE_SOURCES = {"replay": "path", "powermetrics": "path", "macmon": "path"}
#: NAME:ARG where ARG is not a file: the estimate's scope (estimate:process, estimate:system).
ARG_SOURCES = {"estimate": ("scope", SCOPES)}


def list_sources() -> list[dict[str, Any]]:
    """One dict per source: name, available, kind, reason (why not, or what it reads)."""
    out = []
    for name, cls in SOURCES.items():
        try:
            a = cls.availability()
        except Exception as exc:  # a broken check must not hide the other sources
            a = Availability(False, f"availability check failed: {type(exc).__name__}: {exc}")
        out.append({"name": name, "available": a.available, "kind": cls.kind, "reason": a.reason})
    return out


def _auto() -> tuple[str | None, list[tuple[str, Availability]]]:
    """The best available source (None: not even the estimate), and why each better one isn't."""
    skipped: list[tuple[str, Availability]] = []
    for name in (*AUTO_ORDER, "estimate"):
        a = SOURCES[name].availability()
        if a.available:
            return name, skipped
        skipped.append((name, a))
    return None, skipped


def auto_name() -> str:
    """The name of the source `auto` picks here (SourceUnavailableError when there is none)."""
    name, skipped = _auto()
    if name is None:
        why = "; ".join(f"{n}: {a.reason}" for n, a in skipped)
        raise SourceUnavailableError(f"no power source is available here ({why})")
    return name


def explain_auto() -> str:
    """Which source `auto` picks here, and why each better one is unavailable."""
    name, skipped = _auto()
    head = (
        f"auto -> {name}: {SOURCES[name].availability().reason}"
        if name is not None
        else "auto -> none: no power source is available here, not even the estimate"
    )
    lines = [head]
    lines += [f"  not {n}: {a.reason}" for n, a in skipped]
    if name == "estimate":
        lines.append(
            "  (auto uses estimate:process, this process only; estimate:system counts every "
            "process's CPU time)"
        )
    return "\n".join(lines)


def get_source(spec: str | PowerSource = "auto", **kwargs: Any) -> PowerSource:
    """A ready-to-open source from a name, `auto`, `replay:PATH`, `powermetrics:PATH`,
    `macmon:PATH`, `estimate:process`, `estimate:system`, or a PowerSource (returned as is).
    Keyword arguments go to the constructor."""
    if isinstance(spec, PowerSource):
        if kwargs:
            raise InvalidInputError("keyword arguments apply to a source name, not an instance")
        return spec
    if not isinstance(spec, str):
        raise InvalidInputError(
            f"power source must be a name or a PowerSource, got {type(spec).__name__}"
        )
    name, sep, path = spec.strip().partition(":")
    name = name.lower()
    if name == "auto" and not sep:
        name = auto_name()
    if name not in SOURCES:
        raise InvalidInputError(
            f"unknown power source {spec!r}; valid: auto, {', '.join(SOURCES)} "
            "(and replay:PATH, powermetrics:PATH, macmon:PATH, estimate:process, "
            "estimate:system)"
        )
    cls = SOURCES[name]
    if sep:
        if name in ARG_SOURCES:
            key, allowed = ARG_SOURCES[name]
            if path.strip().lower() not in allowed:
                raise InvalidInputError(
                    f"{spec!r}: {name} takes a {key} ({', '.join(f'{name}:{a}' for a in allowed)}),"
                    f" not {path!r}; only {', '.join(FILE_SOURCES)} take a file (NAME:PATH)"
                )
            if key in kwargs and kwargs[key] != path.strip().lower():
                raise InvalidInputError(f"{spec!r} and {key}={kwargs[key]!r} disagree")
            kwargs[key] = path.strip().lower()
        elif name not in FILE_SOURCES or not path:
            raise InvalidInputError(
                f"{spec!r}: only {', '.join(FILE_SOURCES)} take a file (NAME:PATH)"
            )
        else:
            kwargs[FILE_SOURCES[name]] = path
    if name == "replay" and "path" not in kwargs:
        raise InvalidInputError("replay needs a trace file: 'replay:PATH' or path=...")
    if "path" not in kwargs or kwargs["path"] is None:
        a = cls.availability()
        if not a.available:
            raise SourceUnavailableError(f"power source {name!r} is unavailable: {a.reason}")
    return cls(**kwargs)
