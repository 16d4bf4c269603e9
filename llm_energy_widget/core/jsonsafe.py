"""The one home for NaN -> None: strict JSON for everything we write, plain Python numbers.

- `finite_or_none(x)`: a float, or None for None/NaN/inf (summary figures, the widget's wire).
- `none_if_nan(x)`: `x` unchanged, or None for None/NaN (inf kept: per-row records, the store).
- `nan_if_none(x)`: the inverse, a float with NaN for None (columns read back into arrays).
- `strict_json(x)`: a copy that `json.dumps(..., allow_nan=False)` accepts.
- `nan_to_none(arr)`: nested lists with None where an array holds NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["finite_or_none", "nan_if_none", "nan_to_none", "none_if_nan", "strict_json"]


def finite_or_none(x: Any) -> float | None:
    """`float(x)`, or None where `x` is None, NaN or infinite."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def none_if_nan(x: Any) -> Any:
    """`x` itself, or None where `x` is None or NaN (infinities and non-numbers pass through)."""
    if x is None or x != x:  # noqa: PLR0124 - NaN of any type (float, numpy) is unequal to itself
        return None
    return x


def nan_if_none(x: Any) -> float:
    """`float(x)`, NaN where `x` is None."""
    return float("nan") if x is None else float(x)


def strict_json(x: Any) -> Any:
    """A copy of `x` that `json.dumps(..., allow_nan=False)` accepts (readable by any parser).

    Floats that are NaN or infinite become None, numpy arrays and scalars plain Python, tuples
    lists, dict keys strings; anything else is returned as it is.
    """
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
