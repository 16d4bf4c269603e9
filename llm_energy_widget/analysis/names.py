"""How the consumers (figures, comparison, CLI) write a figure's name, unit and kind.

The names themselves live in `core.schema` (SUMMARY_LABELS, METRIC_LABELS); this module only adds
what a column header or a title needs around them: the unit. The layer's short name and the power
readings' averaging window are `view.text`'s (re-exported here), as is every number's text.
"""

from __future__ import annotations

from ..core.schema import SUMMARY_LABELS
from ..view.text import layer_label, window_note  # re-exported: their home is view.text

__all__ = ["layer_label", "summary_name", "summary_unit", "window_note"]

_UNITS = (("_ms", "ms"), ("_js", "J·s"), ("_j", "J"), ("_w", "W"), ("_usd", "USD"), ("_g", "g"))


def summary_unit(key: str) -> str:
    """'J' for `total_energy_j`: the unit its name does not say yet ('' for a rate such as
    'decode J/token', which names its unit, and for keys without a unit suffix)."""
    label = SUMMARY_LABELS.get(key)
    if label is not None and "/" in label.split("(")[0]:
        return ""
    return next((unit for suffix, unit in _UNITS if key.endswith(suffix)), "")


def summary_name(key: str) -> str:
    """'total energy (J)' for `total_energy_j`: the SUMMARY_LABELS name with the key's unit.

    A rate names its unit already ('decode J/token'); a name with a parenthesis takes the unit
    inside it ('net energy (above baseline; J)'). Keys without a label are returned as they are.
    """
    label = SUMMARY_LABELS.get(key)
    unit = summary_unit(key)
    if label is None or not unit:
        return label or key
    return f"{label[:-1]}; {unit})" if label.endswith(")") else f"{label} ({unit})"
