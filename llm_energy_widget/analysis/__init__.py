"""Comparing runs, sweeping settings, and plotly figures of one run."""

from __future__ import annotations

from .compare import Comparison, compare
from .sweep import sweep

__all__ = ["Comparison", "compare", "sweep"]
