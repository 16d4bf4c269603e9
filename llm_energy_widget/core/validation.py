"""Checks of numbers at the package's boundary, each failing with one clear error."""

from __future__ import annotations

import math

from ..errors import InvalidInputError

__all__ = ["check_experiment", "check_tags", "finite_number"]


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


def check_tags(tags: object) -> list[str]:
    """A list of tag strings (a lone string would become its characters)."""
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)):
        hint = f" (did you mean [{tags!r}]?)" if isinstance(tags, str) else ""
        raise InvalidInputError(f"tags must be a list of strings, got {tags!r}{hint}")
    if not all(isinstance(t, str) for t in tags):
        raise InvalidInputError(f"tags must be a list of strings, got {tags!r}")
    return list(tags)


def check_experiment(experiment: object) -> str | None:
    if experiment is not None and not isinstance(experiment, str):
        raise InvalidInputError(f"experiment must be a string, got {experiment!r}")
    return experiment
