"""A replay trace whose numbers no machine could produce is refused at the boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.power.replay import ReplaySource


def test_an_energy_counter_that_goes_backwards_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "back.csv"
    p.write_text("t_ms,total_w,energy_j\n0,10,0\n100,10,1\n200,10,0.5\n300,10,3\n")
    with pytest.raises(InvalidInputError, match=r"line 4: the energy counter goes backwards"):
        ReplaySource(p)


def test_cli_power_json_never_prints_infinity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "huge.csv"
    p.write_text("t_ms,total_w\n0,10\n100,1e308\n200,1e308\n300,10\n")
    code = main(["power", "--file", str(p), "--speed", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 1  # readings printed, malformed samples skipped (each named on stderr)
    recs = [json.loads(line) for line in out.splitlines()]  # strict JSON: no Infinity
    assert [r["total_w"] for r in recs] == [10.0, 10.0]
    assert err.count("beyond any machine") == 2


def test_cli_backwards_counter_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "back.csv"
    p.write_text("t_ms,total_w,energy_j\n0,10,2\n100,10,1\n")
    assert main(["power", "--file", str(p), "--speed", "0", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "goes backwards" in err
