"""Comparison of synthetic runs: table, labels, figures, display, and loading by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_energy_widget.analysis import Comparison, compare
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
