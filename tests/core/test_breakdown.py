"""Known answers for the share of layer time in "other" and its warning."""

from __future__ import annotations

import numpy as np

from llm_energy_widget.core.breakdown import other_share, other_share_note
from llm_energy_widget.core.schema import METRICS

NAMES = ["q_proj", "attention", "other"]
NAN = float("nan")


def test_share_by_hand() -> None:
    # token 0: layer rows (1 + 2 + 1) and (2 + 2 + 4) ms; token 1 is bare (all NaN)
    t = np.array(
        [
            [[1.0, 2.0, 1.0], [2.0, 2.0, 4.0]],
            [[NAN, NAN, NAN], [NAN, NAN, NAN]],
        ]
    )
    assert other_share(t, NAMES) == (1 + 4) / (4 + 8)
    # the same times as the run's 4-D array (time_ms is one metric of several)
    full = np.full((*t.shape, len(METRICS)), 7.0)
    full[..., METRICS.index("time_ms")] = t
    assert other_share(full, NAMES) == (1 + 4) / (4 + 8)


def test_component_that_never_ran_is_left_out_of_its_row() -> None:
    # a dense layer has no experts: NaN there, the row still counts (3 ms, 1 in other)
    t = np.array([[[1.0, NAN, 1.0, 1.0]]])
    assert other_share(t, ["q_proj", "experts", "attention", "other"]) == 1 / 3


def test_none_where_nothing_to_say() -> None:
    assert other_share(np.ones((2, 2, 1)), ["layer"]) is None  # level="layer"
    assert other_share(np.full((1, 2, 3), NAN), NAMES) is None
    assert other_share(np.zeros((0, 2, 3)), NAMES) is None
    assert other_share_note(np.full((1, 2, 3), NAN), NAMES) is None


def test_note_over_threshold_only() -> None:
    low = np.array([[[3.0, 5.0, 2.0]]])  # 20 %
    high = np.array([[[3.0, 3.2, 3.8]]])  # 38 %
    assert other_share_note(low, NAMES, "generic") is None
    note = other_share_note(high, NAMES, "generic")
    assert note is not None
    assert note.startswith("38 % of the layer time is in 'other'")
    assert "generic discovery" in note
    assert "run.hooked" in note
    reg = other_share_note(high, NAMES, "registry:llama")
    assert reg is not None
    assert "generic" not in reg
    assert other_share_note(high, NAMES, "generic", threshold=0.5) is None


def test_typical_token_ignores_a_preempted_one() -> None:
    # three tokens of one layer: (q 2, other 1) twice, then one with a 9 ms pause in "other"
    t = np.array([[[2.0, NAN, 1.0]], [[2.0, NAN, 1.0]], [[2.0, NAN, 10.0]]])
    assert other_share(t, NAMES) == 12 / 18
    assert other_share(t, NAMES, typical=True) == 1 / 3  # the median token: q 2, other 1
    assert other_share_note(t, NAMES, "generic") is not None  # 33 % > 30 %
    assert other_share_note(t, NAMES, "generic", threshold=0.4) is None  # 67 % would warn


def test_typical_takes_each_layers_median_token_whole() -> None:
    # layer 0: tokens of 4, 6 and 30 ms -> the 6 ms one (other 3); layer 1: 2 and 8 ms ->
    # the lower median, 2 ms (other 0.5); token 2 of layer 1 not measured
    t = np.array(
        [
            [[3.0, NAN, 1.0], [1.5, NAN, 0.5]],
            [[3.0, NAN, 3.0], [4.0, NAN, 4.0]],
            [[10.0, NAN, 20.0], [NAN, NAN, NAN]],
        ]
    )
    assert other_share(t, NAMES, typical=True) == (3.0 + 0.5) / (6.0 + 2.0)
