"""How a token's energy is split, and which readings a window's power figures rest on.

A token's energy comes from the cumulative curve E(t) over the token's wall time. Its decoder
layers run for only part of that time (the embedding, the final norm, lm_head, sampling and the
generate loop run outside them: 20-30 % of a decode token here). So a layer x component cell gets
the token's energy x (cell time / token time), and the rest of the token is named
`outside layers` instead of being spread over the layers. Shares are of wall time, so the cells
are **modeled** energy, the token's energy is what the source measured or estimated.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "OUTSIDE_LAYERS",
    "FloatArray",
    "cell_energy_j",
    "coverage",
    "layers_time_ms",
    "share_denominator_ms",
    "window_peak_w",
    "window_readings",
]

FloatArray = npt.NDArray[np.float64]

OUTSIDE_LAYERS = "outside layers"
"""The name every view gives a token's time and energy spent outside the hooked decoder layers
(embedding, final norm, lm_head, sampling, the generate loop)."""


def layers_time_ms(times_ms: npt.ArrayLike) -> float:
    """Hooked time of one token: the sum of its layer x component cells (NaN when none ran)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0 or np.all(np.isnan(t)):
        return float("nan")
    return float(np.nansum(t))


def share_denominator_ms(token_ms: float, hooked_ms: float) -> float:
    """The time that cell shares are taken of: the token's, or the hooked time if clocks disagree.

    Device-event times and the host's token clock can differ by a little; a share must never
    exceed 1, so the larger of the two is used.
    """
    if not np.isfinite(token_ms) or token_ms <= 0:
        return hooked_ms if np.isfinite(hooked_ms) and hooked_ms > 0 else float("nan")
    if np.isfinite(hooked_ms):
        return max(token_ms, hooked_ms)
    return token_ms


def cell_energy_j(times_ms: npt.ArrayLike, token_ms: float, token_energy_j: float) -> FloatArray:
    """Each cell's modeled energy: token energy x cell time / token time (NaN where unknown)."""
    t = np.asarray(times_ms, dtype=np.float64)
    denom = share_denominator_ms(token_ms, layers_time_ms(t))
    if not np.isfinite(token_energy_j) or not np.isfinite(denom) or denom <= 0:
        return np.full(t.shape, np.nan)
    return t / denom * token_energy_j


def coverage(token_ms: float, hooked_ms: float) -> float:
    """Hooked layer time / token time, at most 1 (NaN when either is unknown)."""
    denom = share_denominator_ms(token_ms, hooked_ms)
    if not np.isfinite(hooked_ms) or not np.isfinite(denom) or denom <= 0:
        return float("nan")
    return hooked_ms / denom


def window_readings(t_ms: FloatArray, t0_ms: float, t1_ms: float) -> npt.NDArray[np.bool_]:
    """Which readings a window's peak rests on: those taken inside [t0, t1].

    A reading stands for the interval that ends at it, so when a window is shorter than the
    sampling interval and holds no reading, the first reading after it (whose interval holds the
    window's end) is used instead. Readings of the idle baseline or after the run never count.
    """
    t = np.asarray(t_ms, dtype=np.float64)
    inside = (t >= t0_ms) & (t <= t1_ms)
    if not inside.any() and t.size:
        after = np.nonzero(t > t1_ms)[0]
        if after.size and (after[0] == 0 or t[after[0] - 1] < t1_ms):
            inside[after[0]] = True
    return inside


def window_peak_w(
    power_w: FloatArray, t_ms: FloatArray, t0_ms: float, t1_ms: float
) -> float | None:
    """The highest reading of one rail inside the window (None when it has none)."""
    p = np.asarray(power_w, dtype=np.float64)[window_readings(t_ms, t0_ms, t1_ms)]
    p = p[~np.isnan(p)]
    return float(p.max()) if p.size else None
