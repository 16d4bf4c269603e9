"""Row <-> Run conversions shared by the writer and the reader."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..core.jsonsafe import strict_json
from ..core.schema import POWER_COLUMNS  # the columns of the `power` table (store/schema.py)

__all__ = ["POWER_COLUMNS", "dumps", "layer_row", "loads"]


def _default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return [None if isinstance(v, float) and math.isnan(v) else v for v in x.tolist()]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    return repr(x)


def dumps(x: Any) -> str:
    return json.dumps(strict_json(x), default=_default, allow_nan=False)


def loads(s: str | None, default: Any = None) -> Any:
    return default if s is None else json.loads(s)


def num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return None if math.isnan(f) else f


def layer_blob(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float32).tobytes()


def layer_row(blob: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    arr = np.frombuffer(blob, dtype=np.float32)
    if arr.size != shape[0] * shape[1] * shape[2]:
        # Names changed mid-run (or unknown): keep the data flat rather than lose it.
        m = shape[2]
        return arr.copy().reshape(-1, 1, m) if m and arr.size % m == 0 else arr.reshape(1, 1, -1)
    return arr.copy().reshape(shape)
