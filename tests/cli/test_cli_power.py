"""`llm-energy sources` and `llm-energy power`."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.power.record import READING_FIELDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "power"


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_sources_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:5] == ["nvml", "rapl", "powermetrics", "macmon", "estimate"]
    assert all(isinstance(r["available"], bool) for r in rows)
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SOURCE", "AVAILABLE", "KIND", "REASON"]
    assert "auto -> " in out


def test_power_estimate_prints_live_records(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["power", "--seconds", "2", "--source", "estimate", "--json"]) == 0
    recs = json_lines(capsys.readouterr().out)
    assert len(recs) >= 15
    assert all(tuple(r) == READING_FIELDS for r in recs)
    assert {r["kind"] for r in recs} == {"estimated"}
    assert recs[0]["gpu_w"] is None
    assert all(b["t_ms"] > a["t_ms"] for a, b in itertools.pairwise(recs))


def test_power_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["power", "--seconds", "0.5", "--source", "estimate"]) == 0
    out = capsys.readouterr().out
    for word in ("readings", "duration", "average power", "peak power", "energy", "resolution"):
        assert word in out
    assert "ESTIMATE" in out


def test_power_summary_names_a_coarse_source_and_its_power_window(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # an NVML-like source: power is a 1-s average, and it resolves 1000 ms however often polled
    from llm_energy_widget.power.estimate import EstimateSource

    opened = EstimateSource.open

    def open_like_nvml(self: EstimateSource, interval_ms: float) -> None:
        opened(self, interval_ms)  # what a source decides at open is what the CLI reports
        self.power_window_ms = 1000.0
        self.native_interval_ms = 1000.0

    monkeypatch.setattr(EstimateSource, "open", open_like_nvml)
    assert main(["power", "--seconds", "0.5", "--source", "estimate"]) == 0
    lines = {ln.split("  ")[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert lines["peak power"].endswith("W (readings are 1-s averages)")
    assert lines["resolution"].split(None, 1)[1].startswith("1000 ms (the source's own; ")
    assert lines["scope"].split(None, 1)[1] == "process"


def test_complete_file_is_read_to_its_end(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["power", "--seconds", "30", "--file", str(FIXTURES / "powermetrics.plist"), "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 1  # finished early, with one sample skipped
    recs = json_lines(out)
    assert len(recs) == 4
    assert recs[0]["source"] == "powermetrics"
    assert err.count("\n") == 1
    assert "warning: powermetrics: skipped malformed sample #3" in err


def test_replay_file_fast(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["power", "--file", str(FIXTURES / "trace.csv"), "--speed", "0", "--json"]
    assert main(args) == 0
    recs = json_lines(capsys.readouterr().out)
    assert len(recs) == 11
    assert recs[-1]["dram_w"] == 2.0
    assert recs[-1]["energy_j"] == pytest.approx(15.0, rel=1e-6)  # 10..20 W ramp over 1 s


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["power", "--source", "nope"], "unknown power source 'nope'"),
        (["power", "--interval-ms", "-5"], "--interval-ms must be a positive number"),
        (["power", "--seconds", "-1"], "--seconds must be a positive number"),
        (["power", "--file", "/nonexistent/trace.csv"], "no such file"),
        (["power", "--source", "estimate", "--file", str(FIXTURES / "trace.csv")], "--file works"),
    ],
)
def test_bad_input_one_line_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert err.startswith("llm-energy: error:")


def test_unreadable_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["power", "--source", "replay", "--file", str(bad)]) == 2
    assert "cannot read trace" in capsys.readouterr().err


def test_module_entry_point_sources_json() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "llm_energy_widget", "sources", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert {row["name"] for row in json.loads(r.stdout)} >= {"nvml", "estimate", "replay"}
