"""Where the store lives and whether a run is saved: one place for the profiler and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "ENV_DISABLE",
    "ENV_PATH",
    "default_path",
    "default_store",
    "resolve_store",
    "storing_disabled",
]

ENV_PATH = "LLM_ENERGY_STORE"
ENV_DISABLE = "LLM_ENERGY_NO_STORE"


def default_path() -> Path:
    """`$LLM_ENERGY_STORE`, else `runs.sqlite` in the user data directory."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("llm-energy-widget")) / "runs.sqlite"


def storing_disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no")


def default_store() -> Store:
    from .store import Store

    return Store()


def resolve_store(store: Any) -> Store | None:
    """The profiler's `store=` argument: True -> default Store (unless LLM_ENERGY_NO_STORE=1),
    False/None -> no store, a path -> Store(path), a Store -> itself."""
    from ..errors import InvalidInputError
    from .store import Store

    if isinstance(store, Store):
        return store
    if store is None or store is False:
        return None
    if store is True:
        return None if storing_disabled() else Store()
    if isinstance(store, (str, os.PathLike)):
        return Store(store)
    raise InvalidInputError(
        f"store must be True, False, None, a path or a Store, not {type(store).__name__}"
    )
