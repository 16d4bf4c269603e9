"""Comparison of synthetic runs: table, labels, figures, display, and loading by id."""

from __future__ import annotations

from pathlib import Path

import lew_hand_runs as hr
import pytest
from lew_hand_runs import hand_run

from llm_energy_widget.analysis import Comparison, compare
from llm_energy_widget.core.schema import SUMMARY_LABELS
from llm_energy_widget.errors import InvalidInputError, UnknownRunError
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run


def _runs() -> list[Run]:
    a = synthetic_run(n_tokens=8, n_layers=2, seed=1)
    b = synthetic_run(n_tokens=12, n_layers=2, seed=2, token_ms=40.0)
    a.settings["max_new_tokens"], b.settings["max_new_tokens"] = 8, 12
    return [a, b]


def test_table_has_one_row_per_run_with_efficiency() -> None:
    a, b = _runs()
    c = compare([a, b])
    t = c.table.set_index("run_id")
    assert list(c.labels) == ["max_new_tokens=8", "max_new_tokens=12"]
    assert t.loc[a.run_id, "decode_j_per_token"] == pytest.approx(a.summary()["decode_j_per_token"])
    assert t.loc[b.run_id, "tokens_per_s"] == pytest.approx(b.summary()["tokens_per_s"])
    assert t.loc[a.run_id, "prefill_share"] + t.loc[a.run_id, "decode_share"] == pytest.approx(1)
    assert t.loc[a.run_id, "energy_kind"] == "modeled"
    assert {"ttft_ms", "total_energy_j", "net_energy_j", "output_tokens"} <= set(c.table.columns)
    recs = c.records()
    assert recs[0]["run_id"] == a.run_id and isinstance(recs[0]["decode_j_per_token"], float)


def test_headline_columns_by_their_names() -> None:
    """The hand run: decode 0.75 J/token, prefill 0.25 J/prompt token, 2 decode tokens in 150 ms."""
    a, b = hand_run(), hand_run()
    c = compare([a, b])
    row = c.table.iloc[0]
    assert row["decode_j_per_token"] == pytest.approx(hr.DECODE_J_PER_TOKEN)
    assert row["prefill_j_per_prompt_token"] == pytest.approx(hr.PREFILL_J_PER_PROMPT_TOKEN)
    assert row["decode_tokens_per_s"] == pytest.approx(2 / 0.150)
    assert row["tokens_per_s"] == pytest.approx(3 / 0.250)
    assert row["layer_coverage"] == pytest.approx(hr.COVERAGE)
    assert row["energy_scope"] == "device"
    text = c.to_text()
    for key in ("decode_j_per_token", "prefill_j_per_prompt_token", "decode_tokens_per_s"):
        assert SUMMARY_LABELS[key] in text
    assert "decode_j_per_token" not in text
    assert "decode J/token" in c._table_html()
    eff = c.figures["efficiency"]
    assert [t.name for t in eff.data] == [
        "decode J/token", "prefill J/prompt token", "decode tokens/s"
    ]  # fmt: skip
    assert list(eff.data[1].y) == pytest.approx([0.25, 0.25])
    assert list(eff.data[2].y) == pytest.approx([2 / 0.150] * 2)
    assert [t.name for t in c.figures["phase_split"].data] == ["prefill", "decode", "tail"]


def test_layer_energy_is_the_mean_over_decode_tokens() -> None:
    # decode cells per layer: L0 0.2 (token 1) and 0.4 (token 2), L1 0.2 and 0.4: mean 0.3 each
    # (with the prefill token it would be 0.333 and 0.267)
    fig = compare([hand_run()]).figures["layer_energy"]
    assert list(fig.data[0].x) == ["L0", "L1"]
    assert list(fig.data[0].y) == pytest.approx([0.3, 0.3])
    assert "mean over 2 decode tokens (prefill excluded)" in fig.data[0].name
    assert "prefill excluded" in fig.layout.title.text


def test_figures_and_display() -> None:
    a, b = _runs()
    c = compare([a, b])
    assert set(c.figures) == {"efficiency", "phase_split", "power", "layer_energy"}
    eff = c.figures["efficiency"]
    assert list(eff.data[0].y) == pytest.approx(
        [a.summary()["decode_j_per_token"], b.summary()["decode_j_per_token"]]
    )
    assert "modeled" in eff.layout.title.text
    split = c.figures["phase_split"]
    assert split.layout.barmode == "stack" and [t.name for t in split.data] == ["prefill", "decode"]
    power = c.figures["power"]
    assert len(power.data) == 2 and power.data[0].x[0] <= 0.0  # aligned at prefill start
    assert "time since prefill start" in power.layout.xaxis.title.text
    bundle = c._repr_mimebundle_()
    assert "<table" in bundle["text/html"] and bundle["text/html"].count("Plotly.newPlot") == 4
    assert a.run_id in bundle["text/plain"]
    w = c.widget()
    assert len(w.children[1].children) == 4


def test_notes_flag_mixed_kinds_and_unfinished_runs() -> None:
    a, b = _runs()
    b.power_info = {**b.power_info, "kind": "measured", "source": "rapl"}
    live = synthetic_run(n_tokens=4, n_layers=2, finish=False)
    c = compare([a, b, live])
    assert any("not comparable" in n for n in c.notes)
    assert any(live.run_id in n and "running" in n for n in c.notes)
    assert "note:" in c.to_text()


def test_compare_by_id_prefix_and_dataframe(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    a, b = _runs()
    a.experiment = b.experiment = "exp"
    store.save(a)
    store.save(b)
    c = compare([a.run_id[:7], b.run_id], store=store)
    assert [r.run_id for r in c.runs] == [a.run_id, b.run_id]
    c2 = compare(store.runs(experiment="exp"), store=store)
    assert isinstance(c2, Comparison) and len(c2.runs) == 2
    with pytest.raises(UnknownRunError):
        compare(["nope"], store=store)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="at least one run"):
        compare([])
    with pytest.raises(InvalidInputError, match="Run objects, run dicts or run ids"):
        compare([3.5])
