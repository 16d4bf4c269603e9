"""Predicted vs measured after a run (view/predicted.py), on runs that follow a known law.

The history: the 8 settings of tests/support/law_runs.py with no noise, so the fit is the law
itself. The new run: 40 prompt tokens, 30 new ones, 0.5 % off the law (prefill × 1.005, decode
× 0.995). By hand:
    predicted: prefill 2e-10 · 8e9 + 0.05 = 1.65 J; decode 2e-6 · 55,000 + 0.30 = 0.41 J/token;
               total 1.65 + 29 · 0.41 = 13.54 J
    measured:  prefill 1.65825 J; decode 0.40795 J/token; total 1.65825 + 29 · 0.40795
               = 13.48880 J
    errors:    total 13.54 / 13.4888 − 1 = +0.3796 %; decode 0.41 / 0.40795 − 1 = +0.5025 %;
               prefill 1.65 / 1.65825 − 1 = −0.4975 %
The exact history has no held-out error, so the interval is the point: the measurement is
outside it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.law_runs import HOST, SETTINGS, law_run, lawful

from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.view.predicted import predicted_of, summary_with_predicted
from llm_energy_widget.view.saved import saved_html
from llm_energy_widget.view.static import render_html, render_text
from llm_energy_widget.view.wire import snapshot_of


def _history(path: Path, settings: list[tuple[int, int]], **kw: object) -> None:
    with Store(path) as s:
        for p, n in settings:
            s.save(lawful(p, n, **kw))  # type: ignore[arg-type]


def _new_run(path: Path) -> Run:
    run = lawful(40, 30, 0.005)
    run.store_path = str(path)  # type: ignore[attr-defined]  # as the profiler sets it
    with Store(path) as s:
        s.save(run)  # saved as the profiler's writer does: predicting it leaves it out
    return run


def test_the_run_gets_its_predicted_figures_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _history(path, SETTINGS)
    run = _new_run(path)
    p = predicted_of(run)
    assert p is not None
    assert (p["kind"], p["measured_kind"], p["n_runs"], p["source"], p["host"]) == (
        "modeled", "measured", 8, "rapl", HOST,
    )  # fmt: skip
    assert run.run_id not in p["run_ids"]
    rows = {r["key"]: r for r in p["rows"]}
    assert list(rows) == ["total_energy_j", "decode_j_per_token", "prefill_energy_j"]
    for key, pred, meas, err in (
        ("total_energy_j", 13.54, 13.4888, 0.003796),
        ("decode_j_per_token", 0.41, 0.40795, 0.005025),
        ("prefill_energy_j", 1.65, 1.65825, -0.004975),
    ):
        assert rows[key]["predicted"] == pytest.approx(pred, rel=1e-6), key
        assert rows[key]["measured"] == pytest.approx(meas, rel=1e-6), key
        assert rows[key]["error"] == pytest.approx(err, abs=2e-6), key
        assert rows[key]["within"] is False  # no held-out error: a point interval
    s = summary_with_predicted(run)
    assert s["predicted"] == p
    assert s["decode_j_per_token"] == run.summary()["decode_j_per_token"]


def test_the_views_show_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _history(path, SETTINGS)
    run = _new_run(path)
    text = render_text(run)
    assert "predicted (modeled) from 8 earlier runs of rapl on box-a" in text
    assert "measured: measured" in text
    line = next(x for x in text.splitlines() if "decode J/token: predicted" in x)
    assert "0.41 J/token" in line
    assert "+0.5 %" in line
    assert "outside the interval" in line
    html = render_html(run)
    assert '<div class="lew-predicted">' in html
    assert "predicted (modeled)" in html
    png = base64.b64encode(b"\x89PNG").decode()
    assert '<div class="lew-predicted">' in saved_html(run, png, interactive=False)
    header, _ = snapshot_of(run)["header"], None
    assert header["summary"]["predicted"]["rows"][0]["key"] == "total_energy_j"


def test_no_prediction_without_enough_matching_history(tmp_path: Path) -> None:
    few = tmp_path / "few.sqlite"
    _history(few, SETTINGS[:2])  # 2 runs: a fit needs 3
    run = _new_run(few)
    assert predicted_of(run) is None
    assert "predicted" not in summary_with_predicted(run)
    assert "predicted (modeled)" not in render_text(run)
    other = tmp_path / "other.sqlite"
    _history(other, SETTINGS, host="box-b")  # another machine's runs only
    assert predicted_of(_new_run(other)) is None
    estimates = tmp_path / "est.sqlite"
    _history(estimates, SETTINGS, source="estimate", kind="estimated")  # another source
    assert predicted_of(_new_run(estimates)) is None


def test_no_store_or_no_finished_run_gives_none() -> None:
    run = lawful(40, 30)
    assert predicted_of(run) is None  # the run was saved nowhere
    cut = law_run(8, 5, 0.6, 0.25)
    cut.status = "failed"
    assert predicted_of(cut) is None
