"""Checks of numbers at the package's boundary, each failing with one clear error."""

from __future__ import annotations

import math

from ..errors import InvalidInputError

__all__ = ["finite_number"]


def finite_number(value: object, what: str, minimum: float | None = None) -> float:
    """`value` as a finite float (>= minimum when given), else InvalidInputError naming `what`.

    NaN passes `x <= 0` and `x < 0` checks, so every float parameter goes through here.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise InvalidInputError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and x < minimum:
        raise InvalidInputError(f"{what} must be >= {minimum:g}, got {value!r}")
    return x
