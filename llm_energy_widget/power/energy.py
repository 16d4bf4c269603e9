"""Cumulative energy E(t) and the energy of any interval, however short.

Per-token energy is E(end) - E(start) on this curve: linear interpolation between readings, so a
30 ms token inside a 100 ms sampling interval gets that interval's average power x 30 ms, and the
sampling interval is reported as the figure's resolution. Never "latest power x duration".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["EnergyCurve", "FloatArray", "cumulative_trapezoid_j"]

FloatArray = npt.NDArray[np.float64]


def cumulative_trapezoid_j(t_ms: FloatArray, power_w: FloatArray) -> FloatArray:
    """Cumulative energy in J from power samples (trapezoid rule), starting at 0."""
    t = np.asarray(t_ms, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0)
    steps = 0.5 * (p[1:] + p[:-1]) * np.diff(t) / 1000.0
    return np.concatenate(([0.0], np.cumsum(steps)))


class EnergyCurve:
    """E(t) over a run: monotone arrays of time (ms) and cumulative energy (J)."""

    def __init__(self, t_ms: FloatArray, energy_j: FloatArray) -> None:
        self.t_ms = np.asarray(t_ms, dtype=np.float64)
        self.energy_j = np.asarray(energy_j, dtype=np.float64)
        if self.t_ms.shape != self.energy_j.shape:
            raise ValueError("t_ms and energy_j must have the same length")

    @property
    def covers_until_ms(self) -> float:
        return float(self.t_ms[-1]) if self.t_ms.size else float("-inf")

    def energy_at(self, t_ms: float | FloatArray) -> float | FloatArray:
        """E at any time inside the curve (NaN outside it: no extrapolation from a last sample)."""
        t = np.asarray(t_ms, dtype=np.float64)
        if self.t_ms.size < 2:
            out = np.full(t.shape, np.nan)
        else:
            out = np.interp(t, self.t_ms, self.energy_j, left=np.nan, right=np.nan)
        return float(out) if out.ndim == 0 else out

    def energy_between(
        self, t0_ms: float | FloatArray, t1_ms: float | FloatArray
    ) -> float | FloatArray:
        """Energy in J between t0 and t1, interpolated at both ends; NaN where not yet covered."""
        e1 = self.energy_at(t1_ms)
        e0 = self.energy_at(t0_ms)
        return e1 - e0

    def average_power_w(self, t0_ms: float, t1_ms: float) -> float:
        dt_s = (t1_ms - t0_ms) / 1000.0
        if dt_s <= 0:
            return float("nan")
        return float(self.energy_between(t0_ms, t1_ms)) / dt_s
