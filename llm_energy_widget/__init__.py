"""llm-energy-widget: where the energy of LLM text generation goes, live in a notebook."""

from __future__ import annotations

from typing import Any

from .errors import EnergyWidgetError
from .run import Run

__version__ = "0.1.0"

# Heavy parts (torch, transformers, the widget) load on first use, so `import llm_energy_widget`
# and the CLI stay fast.
_LAZY = {
    "EnergyProfiler": ".profiler",
    "profile": ".profiler",
    "live": ".profiler",
    "load_default_model": ".models",
    "load_model": ".models",
    "EnergyWidget": ".widget",
    "Store": ".store",
    "compare": ".analysis",
    "sweep": ".analysis",
    "get_source": ".power",
    "list_sources": ".power",
    "PowerSampler": ".power",
}

__all__ = ["EnergyWidgetError", "Run", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'llm_energy_widget' has no attribute {name!r}")
