"""llm-energy-widget: where the energy of LLM text generation goes, live in a notebook.

The public API. Every name loads on first use (torch, transformers, anywidget and plotly are
heavy), so `import llm_energy_widget` and the CLI stay fast; `tests/test_public_api.py` checks
that this list is what the package exports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import EnergyWidgetError

if TYPE_CHECKING:
    from .analysis import compare, sweep
    from .analysis.predict import predict
    from .models import load_default_model, load_model
    from .power import PowerSampler, get_source, list_sources
    from .profiler import EnergyProfiler, live, profile
    from .run import Run
    from .store import Store
    from .view.widget import EnergyWidget

_LAZY = {
    "EnergyProfiler": ".profiler",
    "profile": ".profiler",
    "live": ".profiler",
    "Run": ".run",
    "load_default_model": ".models",
    "load_model": ".models",
    "EnergyWidget": ".view.widget",
    "Store": ".store",
    "compare": ".analysis",
    "sweep": ".analysis",
    "predict": ".analysis.predict",
    "get_source": ".power",
    "list_sources": ".power",
    "PowerSampler": ".power",
}

__all__ = [
    "EnergyProfiler",
    "EnergyWidget",
    "EnergyWidgetError",
    "PowerSampler",
    "Run",
    "Store",
    "__version__",
    "compare",
    "get_source",
    "list_sources",
    "live",
    "load_default_model",
    "load_model",
    "predict",
    "profile",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'llm_energy_widget' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
