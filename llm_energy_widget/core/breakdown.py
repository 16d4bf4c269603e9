"""How much of the decoder layers' time no component owns: the share in "other".

A layer's time is split into its hooked components, the gaps between them (attention kernel,
MLP activation) and "other", the rest (`profiling.layer_profiler`). "other" is small where the
discovery knows the architecture (a registry entry: 1-5 % on the tiny test models, mostly
residual adds and views) and large where it missed part of the layer (a fused block it cannot
see into, an attention kernel with no gap around it, or statistics reduced inside the hooks).
A large share says the heatmap's components do not add up to the layer, so the summary warns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .schema import METRICS

__all__ = ["OTHER", "OTHER_SHARE_WARN", "other_share", "other_share_note"]

OTHER = "other"
OTHER_SHARE_WARN = 0.30  # above this share of the layer time in "other", the summary warns
_TI = METRICS.index("time_ms")


def other_share(
    layers: npt.ArrayLike, component_names: list[str], *, typical: bool = False
) -> float | None:
    """Share of the layer time in "other", over every instrumented token and layer.

    `layers`: the run's [tokens, layers, components, metrics] array (its time_ms metric is
    used) or [tokens, layers, components] times in ms. A (token, layer) row counts where its
    "other" was measured (bare tokens, and layers that did not run, are NaN and ignored); its
    time is the sum of its measured cells, "other" included. None where there is no "other"
    column (level="layer") or no measured row.

    `typical`: the share for a typical token instead: per layer, the token whose layer time is
    the median. A token the OS preempted inside a layer has the pause in its "other" (between
    hooked modules) or in a component; on a busy machine a few such tokens set the plain
    share, not the median one.
    """
    if OTHER not in component_names:
        return None
    a = np.asarray(layers, dtype=np.float64)
    if a.ndim == 4:
        a = a[..., _TI]
    if a.ndim != 3 or a.shape[-1] != len(component_names) or a.size == 0:
        return None
    other = a[..., component_names.index(OTHER)]
    rows = np.isfinite(other)
    if not rows.any():
        return None
    if typical:
        rows = _median_rows(a, rows)
    total = float(np.nansum(a[rows]))
    if total <= 0:
        return None
    return float(np.sum(other[rows])) / total


def _median_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per layer, only the measured token whose layer time is the (lower) median: a whole
    row, so its cells still add up to its layer time."""
    with np.errstate(invalid="ignore"):
        totals = np.where(rows, np.nansum(a, axis=2), np.nan)  # [tokens, layers]
    keep = np.zeros_like(rows)
    for layer in range(a.shape[1]):
        tokens = np.flatnonzero(rows[:, layer])
        if tokens.size:
            ranked = tokens[np.argsort(totals[tokens, layer], kind="stable")]
            keep[ranked[(ranked.size - 1) // 2], layer] = True
    return keep


def other_share_note(
    layers: npt.ArrayLike,
    component_names: list[str],
    discovered_by: str | None = None,
    threshold: float = OTHER_SHARE_WARN,
) -> str | None:
    """A warning when more than `threshold` of a typical token's layer time is in "other"
    (`other_share(typical=True)`: preempted tokens do not raise it), else None.

    `discovered_by` is the registration summary's (`run.hooked["discovered_by"]`): "generic"
    or "registry:<model_type>"; it picks the likely reason.
    """
    share = other_share(layers, component_names, typical=True)
    if share is None or share <= threshold:
        return None
    head = f"{share * 100:.0f} % of the layer time is in 'other': "
    if discovered_by == "generic":
        why = (
            "this architecture's components were found by the generic discovery and miss "
            "part of the layer"
        )
    else:
        why = "work between the hooked components is attributed to no component"
    return head + why + "; see run.hooked"
