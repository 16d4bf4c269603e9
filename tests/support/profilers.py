"""A profiler for tests: a constant 10 W source, no store, a fast poll (defaults overridable)."""

from __future__ import annotations

from typing import Any

from llm_energy_widget.profiler import EnergyProfiler
from support.sources import ConstantSource

__all__ = ["quick_profiler"]


def quick_profiler(model: Any, tok: Any, **kw: Any) -> EnergyProfiler:
    kw.setdefault("power", ConstantSource(10.0))
    kw.setdefault("baseline_s", 0.2)
    kw.setdefault("store", False)
    kw.setdefault("interval_ms", 20)
    kw.setdefault("sample", "all")  # every token has its layer row; sampling: its own tests
    return EnergyProfiler(model, tok, **kw)
