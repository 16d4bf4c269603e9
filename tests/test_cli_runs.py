"""`llm-energy runs/show/export/compare/delete` against a store of synthetic runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, list[Run]]:
    path = tmp_path / "runs.sqlite"
    runs = [synthetic_run(n_tokens=8, n_layers=2, seed=1), synthetic_run(n_tokens=16, seed=2)]
    runs[0].tags = ["t1"]
    with Store(path) as s:
        for r in runs:
            s.save(r)
    return path, runs


def test_runs_json_lists_every_run_with_summary(
    stored: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = stored
    assert main(["runs", "--json", "--store", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in out] == [runs[1].run_id, runs[0].run_id]
    for rec, run in zip(out, reversed(runs), strict=True):
        assert {"run_id", "model", "prompt", "status", "created_at", "summary"} <= rec.keys()
        assert rec["summary"]["decode_j_per_token"] == pytest.approx(
            run.summary()["decode_j_per_token"]
        )
    assert main(["runs", "--json", "--store", str(path), "--tag", "t1"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [runs[0].run_id]
    assert main(["runs", "--store", str(path), "--limit", "1"]) == 0
    table = capsys.readouterr().out
    assert "J/TOKEN" in table and runs[1].run_id in table and runs[0].run_id not in table


def test_show(stored: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]) -> None:
    path, runs = stored
    assert main(["show", runs[0].run_id[:6], "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert runs[0].run_id in out and "prefill" in out and "modeled" in out
    assert main(["show", runs[0].run_id, "--json", "--store", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["run_id"] == runs[0].run_id and len(d["tokens"]) == 8


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "trace"])
def test_export(
    fmt: str, stored: tuple[Path, list[Run]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = stored
    out = tmp_path / f"out-{fmt}"
    assert (
        main(["export", runs[0].run_id, "--format", fmt, "--out", str(out), "--store", str(path)])
        == 0
    )
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).exists() for p in printed)
    if fmt == "trace":
        doc = json.loads(out.read_text())
        assert doc["traceEvents"] and doc["displayTimeUnit"] == "ms"


def test_compare(stored: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]) -> None:
    path, runs = stored
    assert (
        main(["compare", runs[0].run_id, runs[1].run_id[:5], "--json", "--store", str(path)]) == 0
    )
    recs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in recs] == [r.run_id for r in runs]
    assert main(["compare", runs[0].run_id, runs[1].run_id, "--store", str(path)]) == 0
    assert "decode J/token" in capsys.readouterr().out  # headers are the summary names


def test_delete_and_errors(
    stored: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = stored
    assert main(["delete", runs[0].run_id, "--store", str(path)]) == 2  # no tty, no --yes
    assert "without --yes" in capsys.readouterr().err
    assert main(["delete", runs[0].run_id, "--yes", "--store", str(path)]) == 0
    assert main(["show", runs[0].run_id, "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no run" in err and str(path) in err
    bad = path.parent / "bad.sqlite"
    bad.write_text("not a db")
    assert main(["runs", "--store", str(bad)]) == 2
    assert "not an llm-energy-widget run store" in capsys.readouterr().err


def test_console_entry_point_runs_json(stored: tuple[Path, list[Run]]) -> None:
    path, runs = stored
    env = {**os.environ, "PYTHONPATH": str(REPO), "LLM_ENERGY_STORE": str(path)}
    res = subprocess.run(
        [sys.executable, "-m", "llm_energy_widget", "runs", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    assert {r["run_id"] for r in json.loads(res.stdout)} == {r.run_id for r in runs}
