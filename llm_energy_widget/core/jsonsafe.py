"""Strict JSON for everything we write: NaN/inf become null, numpy values plain Python."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def strict_json(x: Any) -> Any:
    """A copy of `x` that `json.dumps(..., allow_nan=False)` accepts (readable by any parser)."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return strict_json(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return strict_json(x.item())
    return x


def nan_to_none(arr: np.ndarray) -> list[Any]:
    """Nested lists with None where the array holds NaN (JSON has no NaN)."""
    obj = arr.astype(object)
    obj[np.isnan(arr)] = None
    return list(obj.tolist())
