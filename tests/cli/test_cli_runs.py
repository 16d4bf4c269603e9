"""`llm-energy runs/show/export/compare/delete` against a store of synthetic runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.runs import hand_run

from llm_energy_widget.cli import main
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

REPO = Path(__file__).resolve().parents[2]


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
    assert runs[1].run_id in table
    assert runs[0].run_id not in table
    # headline figures under their exact names (no bare "J/TOKEN" / "TOK/S")
    head = table.splitlines()[0]
    for name in ("decode J/token", "prefill J/prompt token", "decode tokens/s", "total energy"):
        assert name in head
    assert "J/TOKEN" not in head
    assert "TOK/S" not in head


def test_show(stored: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]) -> None:
    path, runs = stored
    assert main(["show", runs[0].run_id[:6], "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert runs[0].run_id in out
    assert "prefill" in out
    assert "modeled" in out
    assert main(["show", runs[0].run_id, "--json", "--store", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["run_id"] == runs[0].run_id
    assert len(d["tokens"]) == 8


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
    assert printed
    assert all(Path(p).exists() for p in printed)
    if fmt == "trace":
        doc = json.loads(out.read_text())
        assert doc["traceEvents"]
        assert doc["displayTimeUnit"] == "ms"


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
    assert "no run" in err
    assert str(path) in err
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


@pytest.fixture
def hand_store(tmp_path: Path) -> tuple[Path, Run]:
    """The hand run (see support.runs), stored with a 1-s power window and a 12 W baseline."""
    path = tmp_path / "hand.sqlite"
    run = hand_run(power={"power_window_ms": 1000.0}, baseline_w=12.0)
    run.reprice(price_per_kwh=0.30)  # measured at 0.30 USD/kWh
    with Store(path) as s:
        s.save(run)
    return path, run


def _line(out: str, name: str) -> str:
    """The summary line of `name` (its value after the padded name)."""
    hits = [ln.strip() for ln in out.splitlines() if ln.startswith(f"  {name}  ")]
    assert len(hits) == 1, (name, out)
    return hits[0][len(name) :].strip()


def test_show_prints_each_figure_by_its_name(
    hand_store: tuple[Path, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    path, run = hand_store
    assert main(["show", run.run_id, "--store", str(path)]) == 0
    out = capsys.readouterr().out
    # the real resolution (75 ms, not the 50 ms poll), the kind with its scope, the power window
    assert "power: hand [measured · device], resolution 75 ms, polled every 50 ms" in out
    assert "power readings are 1-s averages" in out
    assert _line(out, "decode J/token") == "0.75 J (measured · device)"
    assert _line(out, "prefill J/prompt token") == "0.25 J (measured · device)"
    assert _line(out, "decode tokens/s") == "13.33"  # 2 tokens / 150 ms
    assert _line(out, "output tokens/s (incl. prefill)") == "12"  # 3 tokens / 250 ms
    assert _line(out, "peak power (generation)") == (
        "10 W total (CPU 8 W, DRAM 2 W), from 1-s average readings (shorter peaks are smoothed)"
    )
    assert _line(out, "tail energy (after the last token)") == "0.5 J over 50 ms"
    assert _line(out, "layer coverage (hooked / token time)") == "72.0 %"
    assert _line(out, "outside layers energy") == "0.7 J (modeled)"
    # 12 W baseline > 10 W average: net energy flagged, and the summary's warnings printed
    assert _line(out, "net energy (above baseline)") == "-0.6 J  UNRELIABLE (see warning)"
    assert "warning: net energy is unreliable" in out
    assert "warning: 1 of 3 tokens are shorter than the power source's resolution" in out
    # one definition for each tokens/s name
    assert out.count("\n  decode tokens/s: decode tokens / time from the first") == 1
    assert out.count("\n  output tokens/s (incl. prefill): all output tokens / time") == 1
    assert "outside layers               70.0         0.7000         28.0 %" in out


def test_show_keeps_the_measured_price_and_reprices_only_when_asked(
    hand_store: tuple[Path, Run],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, run = hand_store
    monkeypatch.setenv("LLM_ENERGY_PRICE_PER_KWH", "9.99")
    monkeypatch.setenv("LLM_ENERGY_CARBON_G_PER_KWH", "999")
    # 3 J = 3 / 3.6e6 kWh: at the measured 0.30 USD/kWh, 2.5e-7 USD; CO2 at 400 g/kWh
    assert main(["show", run.run_id, "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert _line(out, "cost") == "$2.5e-07 (modeled, at 0.3 USD/kWh)"
    assert _line(out, "CO₂") == "0.0003333 g (modeled, at 400 g/kWh)"
    assert "re-priced" not in out
    # a run saved with no price in its settings keeps the one its stored summary had
    old = synthetic_run(n_tokens=4, n_layers=1)
    with Store(path) as s:
        s.save(old)
    assert main(["show", old.run_id, "--store", str(path)]) == 0
    assert "(modeled, at 0.15 USD/kWh)" in capsys.readouterr().out
    # explicit re-pricing: said so, and never saved
    assert main(["show", run.run_id, "--store", str(path), "--price-per-kwh", "0.6"]) == 0
    out = capsys.readouterr().out
    assert _line(out, "cost") == (
        "$5e-07 (modeled, at 0.6 USD/kWh) — re-priced (measured with 0.3 USD/kWh, 400 g/kWh)"
    )
    args = ["show", run.run_id, "--store", str(path), "--json", "--carbon-g-per-kwh", "100"]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["summary"]["co2_g"] == pytest.approx(3 / 3.6e6 * 100)
    assert d["summary"]["cost_usd"] == pytest.approx(2.5e-7)
    assert main(["show", run.run_id, "--store", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["price_per_kwh"] == 0.30
    assert main(["show", run.run_id, "--store", str(path), "--price-per-kwh", "nan"]) == 2
    assert "price_per_kwh must be a finite number" in capsys.readouterr().err


def test_show_token_level_run_leaves_out_layer_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.sqlite"
    run = synthetic_run(n_tokens=4, n_layers=0, components=())
    run.level = "token"
    with Store(path) as s:
        s.save(run)
    assert main(["show", run.run_id, "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layer coverage" not in out
    assert "outside layers" not in out
    assert "summary (modeled energy):" in out
    assert "\n  decode J/token: " in out  # defined, as it is shown
