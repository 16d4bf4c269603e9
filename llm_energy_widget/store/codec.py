"""Row <-> Run conversions shared by the writer and the reader."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..core.jsonsafe import none_if_nan, strict_json
from ..core.schema import POWER_COLUMNS  # the columns of the `power` table (store/schema.py)

__all__ = ["POWER_COLUMNS", "dumps", "layer_blob", "layer_row", "loads", "num"]


def _default(x: Any) -> Any:
    # strict_json already made arrays, numpy scalars and tuples plain; what is left is sets
    # (their items made plain the same way) and objects JSON has no form for (their repr)
    if isinstance(x, set):
        return strict_json(list(x))
    return repr(x)


def dumps(x: Any) -> str:
    return json.dumps(strict_json(x), default=_default, allow_nan=False)


def loads(s: str | None, default: Any = None) -> Any:
    return default if s is None else json.loads(s)


def num(x: Any) -> float | None:
    """A store column's REAL: `float(x)`, None for None or NaN."""
    return none_if_nan(None if x is None else float(x))


def layer_blob(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float32).tobytes()


def layer_row(blob: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    arr = np.frombuffer(blob, dtype=np.float32)
    if arr.size != shape[0] * shape[1] * shape[2]:
        # Names changed mid-run (or unknown): keep the data flat rather than lose it.
        m = shape[2]
        return arr.copy().reshape(-1, 1, m) if m and arr.size % m == 0 else arr.reshape(1, 1, -1)
    return arr.copy().reshape(shape)
