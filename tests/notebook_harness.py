"""Old import path (was tests/widget/notebook_harness.py), kept for benchmarks/notebook_sizes.py
until it imports `support.notebook` (it puts tests/ on sys.path)."""

from support.notebook import FakeNotebook

__all__ = ["FakeNotebook"]
