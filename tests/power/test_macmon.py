"""macmon: JSON lines from a capture file and from a (fake) `macmon pipe` process."""

from __future__ import annotations

import itertools
import stat
import sys
import time
from pathlib import Path

import pytest
from support.sources import energy_of, t_of

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.power.macmon import MacmonSource, parse_macmon_line
from llm_energy_widget.power.streams import SkippedSampleWarning

FIXTURES = Path(__file__).parents[1] / "fixtures" / "power"


def test_capture_file_uses_timestamps_and_skips_a_malformed_line() -> None:
    src = MacmonSource(FIXTURES / "macmon.jsonl", capture_interval_ms=250)
    src.open(100.0)
    try:
        with pytest.warns(SkippedSampleWarning, match=r"macmon: skipped malformed sample #3"):
            got = src.poll()
    finally:
        src.close()
    assert src.exhausted
    assert src.skipped_samples == 1
    assert len(got) == 3
    assert got[0].power_w["dram"] == 0.25
    assert got[0].power_w["total"] == pytest.approx(1.75)
    # the first line stands for the nominal 250 ms, the others for their timestamp gaps
    assert [t_of(b) - t_of(a) for a, b in itertools.pairwise(got)] == pytest.approx([0.25, 0.25])
    assert got[-1].energy_j == pytest.approx(1.75 * 0.25 + 2.75 * 0.25 + 6.5 * 0.25)


def test_line_errors() -> None:
    with pytest.raises(Exception, match="not JSON"):
        parse_macmon_line(b"{oops")
    with pytest.raises(Exception, match="not a non-negative number"):
        parse_macmon_line(b'{"cpu_power": -1}')
    with pytest.raises(Exception, match="no cpu_power"):
        parse_macmon_line(b'{"temp": {}}')
    watts, stamp = parse_macmon_line(b'{"all_power": 3.5}')
    assert watts == {"total": 3.5}
    assert stamp is None
    with pytest.raises(InvalidInputError):
        MacmonSource(FIXTURES / "missing.jsonl")


def test_pipe_from_a_process(tmp_path: Path) -> None:
    exe = tmp_path / "macmon"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\n"
        "assert sys.argv[1:] == ['pipe', '-i', '50'], sys.argv\n"
        "for i in range(4):\n"
        "    print(json.dumps({'cpu_power': 1.0 + i, 'gpu_power': 0.5, 'ane_power': 0.0,"
        " 'ram_power': 0.1, 'all_power': 1.5 + i}), flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    src = MacmonSource(binary=str(exe))
    src.open(50.0)
    got = []
    deadline = time.monotonic() + 10
    try:
        while not src.exhausted and time.monotonic() < deadline:
            got += src.poll()
            time.sleep(0.02)
    finally:
        src.close()
    assert len(got) == 4
    assert [s.power_w["cpu"] for s in got] == [1.0, 2.0, 3.0, 4.0]
    assert all(t_of(b) > t_of(a) for a, b in itertools.pairwise(got))
    assert all(energy_of(b) > energy_of(a) for a, b in itertools.pairwise(got))
