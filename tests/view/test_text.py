"""view/text.py, the one home of a number's text, and core/jsonsafe.py, the one home of NaN -> None:
the strings and values every view showed before they moved here."""

from __future__ import annotations

import json
import math

import numpy as np

from llm_energy_widget.core.jsonsafe import (
    finite_or_none,
    nan_if_none,
    nan_to_none,
    none_if_nan,
    strict_json,
)
from llm_energy_widget.store.codec import dumps, num
from llm_energy_widget.view.text import (
    esc,
    fmt_energy,
    fmt_num,
    fmt_pct,
    fmt_sig,
    format_cost,
    kind_text,
    layer_label,
    short_layer,
    window_adjective,
    window_note,
)

NAN, INF = float("nan"), float("inf")


def test_energy_power_time_percent_cost() -> None:
    assert [fmt_energy(x) for x in (1234.0, 0.75, 0.0123, 4.5e-6, 0.0, -2.0, None, NAN)] == [
        "1.23 kJ", "750 mJ", "12.3 mJ", "4.5 µJ", "0 J", "-2 J", "–", "–",
    ]  # fmt: skip
    assert fmt_num(1234.4, "ms") == "1234 ms"
    assert fmt_num(12.345, "W") == "12.3 W"
    assert fmt_num(3.0) == "3"
    assert fmt_num(INF, "W") == "–"
    assert fmt_pct(0.912) == "91.2 %"
    assert fmt_pct(None) == "–"
    assert fmt_pct(NAN) == "–"
    assert format_cost(3.1e-06) == "$3.1e-06"
    assert format_cost(None, "n/a") == "n/a"


def test_significant_digits_and_missing() -> None:
    assert fmt_sig(0.123456, " J") == "0.1235 J"
    assert fmt_sig(0.123456, digits=3) == "0.123"
    assert fmt_sig(12, " J") == "12 J"
    assert fmt_sig("x") == "x"
    assert fmt_sig(None) == "–"
    assert fmt_sig(NAN, missing="n/a") == "n/a"
    assert fmt_sig(INF) == "–"


def test_kind_window_layer_names_and_escaping() -> None:
    assert kind_text("measured", "device") == "measured · device"
    assert kind_text(None) == "estimated"
    assert kind_text("", None) == "estimated"
    assert window_adjective(1000) == "1-s"
    assert window_adjective(100) == "100-ms"
    assert window_note(1000) == "1-s average"
    assert window_note(250.0) == "250-ms average"
    assert window_note(None) == ""
    assert window_note(NAN) == ""
    assert window_note(0) == ""
    assert layer_label("model.layers.12") == "L12"
    assert layer_label("lm_head") == "lm_head"
    assert short_layer("model.layers.12") == "12"
    assert short_layer("lm_head") == "lm_head"
    assert esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"


def test_nan_helpers() -> None:
    assert finite_or_none(None) is None
    assert finite_or_none(NAN) is None
    assert finite_or_none(INF) is None
    assert finite_or_none(np.float32(1.5)) == 1.5
    assert type(finite_or_none(np.float64(2.0))) is float
    assert none_if_nan(NAN) is None
    assert none_if_nan(np.float64("nan")) is None
    assert none_if_nan(None) is None
    assert none_if_nan(INF) == INF
    assert none_if_nan("a") == "a"
    v = np.float32(1.5)
    assert none_if_nan(v) is v  # the value itself, not a conversion
    assert math.isnan(nan_if_none(None))
    assert nan_if_none(3) == 3.0
    assert nan_to_none(np.array([[1.0, NAN]])) == [[1.0, None]]


def test_strict_json_and_the_store_codec() -> None:
    x = {1: [NAN, INF, np.float32(2.5), np.int64(3), np.bool_(True)], "t": (np.array([NAN, 1.0]),)}
    assert strict_json(x) == {"1": [None, None, 2.5, 3, True], "t": [[None, 1.0]]}
    assert json.loads(dumps({"s": {np.int64(4)}, "o": object})) == {"s": [4], "o": repr(object)}
    assert num(None) is None
    assert num(NAN) is None
    assert num("2") == 2.0
    assert num(INF) == INF
