"""Run history in SQLite: written incrementally while a run goes, read back as `Run` objects."""

from __future__ import annotations

from .paths import default_path, default_store, resolve_store, storing_disabled
from .store import Store
from .writer import RunWriter

__all__ = [
    "RunWriter",
    "Store",
    "default_path",
    "default_store",
    "resolve_store",
    "storing_disabled",
]
