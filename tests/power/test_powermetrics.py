"""powermetrics: plist and text streams, a complete file, a live tail, a spawned process."""

from __future__ import annotations

import itertools
import plistlib
import stat
import sys
import time
from pathlib import Path

import pytest
from support.sources import t_of

from llm_energy_widget.errors import InvalidInputError, SourceError
from llm_energy_widget.power.powermetrics import (
    PowermetricsParser,
    PowermetricsSource,
    parse_plist_sample,
)
from llm_energy_widget.power.streams import SkippedSampleWarning

FIXTURES = Path(__file__).parents[1] / "fixtures" / "power"


def read_all(src: PowermetricsSource) -> list:
    src.open(100.0)
    try:
        return src.poll()
    finally:
        src.close()


def test_plist_stream_energy_power_clusters_and_a_malformed_sample() -> None:
    src = PowermetricsSource(FIXTURES / "powermetrics.plist", follow=False)
    with pytest.warns(SkippedSampleWarning, match=r"#3: not a plist"):
        samples = read_all(src)
    assert src.exhausted
    assert src.skipped_samples == 1
    assert len(samples) == 4
    # sample 1: energy keys (mJ), not power x nominal interval
    s1 = samples[0]
    assert s1.energy_j == pytest.approx(0.058 + 0.011 + 0.0)
    assert s1.power_w["cpu"] == pytest.approx(0.058 / 0.116)
    # sample 2: power keys only -> mW x the real elapsed 129 ms
    e2 = (1.0 + 0.2 + 0.0) * 0.129
    assert samples[1].energy_j - s1.energy_j == pytest.approx(e2)
    assert samples[1].power_w["total"] == pytest.approx(1.2)
    # sample 4 (after the skipped one): CPU power = sum of the clusters
    assert samples[2].power_w["cpu"] == pytest.approx(0.4)
    assert samples[2].energy_j - samples[1].energy_j == pytest.approx(0.4 * 0.125)
    assert samples[3].power_w["ane"] == pytest.approx(0.012 / 0.121)
    # times accumulate the real elapsed_ns from open, even read all at once
    gaps = [b.t_s - a.t_s for a, b in itertools.pairwise(samples)]
    assert gaps == pytest.approx([0.129, 0.125, 0.121])
    assert samples[0].t_s == pytest.approx(src._open_s + 0.116)


def test_text_stream_in_mw_and_w() -> None:
    src = PowermetricsSource(FIXTURES / "powermetrics.txt", follow=False)
    with pytest.warns(SkippedSampleWarning, match=r"#3: no 'CPU/GPU/ANE/Combined"):
        samples = read_all(src)
    assert len(samples) == 3
    assert samples[0].power_w["cpu"] == pytest.approx(0.823)
    assert samples[0].power_w["gpu"] == pytest.approx(0.012)
    assert samples[1].power_w["cpu"] == pytest.approx(1.5)
    assert samples[2].power_w["total"] == pytest.approx(2.6)
    assert samples[0].energy_j == pytest.approx(0.835 * 0.10412)
    assert samples[2].t_s - samples[0].t_s == pytest.approx(0.1185 + 0.101 + 0.110)


def test_plist_document_errors_name_the_problem() -> None:
    with pytest.raises(Exception, match="no elapsed_ns"):
        parse_plist_sample(plistlib.dumps({"processor": {"cpu_power": 1.0}}))
    with pytest.raises(Exception, match="no energy or power keys"):
        parse_plist_sample(plistlib.dumps({"elapsed_ns": 1000, "processor": {}}))
    with pytest.raises(Exception, match="not a number"):
        parse_plist_sample(plistlib.dumps({"elapsed_ns": 10**8, "processor": {"cpu_power": "x"}}))
    combined = parse_plist_sample(plistlib.dumps({"elapsed_ns": 10**8, "combined_power": 500}))
    assert combined.energy_j == {"total": pytest.approx(0.05)}


def test_parser_waits_for_the_nul_that_ends_a_document() -> None:
    doc = plistlib.dumps({"elapsed_ns": 100_000_000, "processor": {"cpu_energy": 10}})
    p = PowermetricsParser()
    assert p.feed(doc[:50], final=False) == []
    assert p.feed(doc[50:], final=False) == []  # complete, but no NUL yet: a writer may add
    (out,) = p.feed(b"\x00", final=False)
    assert out[0] == 1
    assert not isinstance(out[1], Exception)
    assert out[1].total_j == pytest.approx(0.010)


def test_live_tail_skips_the_backlog_and_is_never_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "pm.plist"
    doc = plistlib.dumps({"elapsed_ns": 100_000_000, "processor": {"cpu_energy": 50}}) + b"\x00"
    path.write_bytes(doc * 3)  # written before we started: not ours
    src = PowermetricsSource(path)  # follow=True
    src.open(100.0)
    try:
        assert src.poll() == []
        with open(path, "ab") as f:
            f.write(doc * 2)
        before = time.monotonic()
        got = src.poll()
        assert len(got) == 2
        assert [s.energy_j for s in got] == pytest.approx([0.05, 0.1])
        # live: the first new sample ends when it was read, the next 100 ms later
        assert got[0].t_s == pytest.approx(before, abs=0.05)
        assert t_of(got[1]) - t_of(got[0]) == pytest.approx(0.1)
        assert src.poll() == []
        assert not src.exhausted
    finally:
        src.close()


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        PowermetricsSource(tmp_path / "nope.plist")


def fake_binary(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "fake-powermetrics"
    exe.write_text(f"#!{sys.executable}\n{body}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX executables")
def test_spawned_process_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)  # root: no sudo in front
    exe = fake_binary(
        tmp_path,
        "import plistlib, sys, time\n"
        "assert sys.argv[1:3] == ['-i', '50'] and '--samplers' in sys.argv, sys.argv\n"
        "for i in range(3):\n"
        "    d = {'elapsed_ns': 50_000_000, 'processor': {'cpu_energy': 5, 'gpu_energy': 1}}\n"
        "    sys.stdout.buffer.write(plistlib.dumps(d) + b'\\x00'); sys.stdout.flush()\n"
        "    time.sleep(0.05)\n",
    )
    src = PowermetricsSource(binary=exe)
    src.open(50.0)
    got = []
    deadline = time.monotonic() + 10
    try:
        while not src.exhausted and time.monotonic() < deadline:
            got += src.poll()
            time.sleep(0.02)
    finally:
        src.close()
    assert src.exhausted
    assert len(got) == 3
    assert got[-1].energy_j == pytest.approx(0.018)
    assert got[0].power_w["cpu"] == pytest.approx(0.1)


def test_spawned_process_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    exe = fake_binary(
        tmp_path,
        "import sys\nsys.stderr.write('powermetrics must be invoked as the superuser\\n')\n"
        "sys.exit(1)\n",
    )
    src = PowermetricsSource(binary=exe)
    src.open(100.0)
    try:
        with pytest.raises(  # noqa: PT012 - poll until the exit is noticed
            SourceError, match="exited with status 1: powermetrics must be invoked"
        ):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                src.poll()
                time.sleep(0.02)
    finally:
        src.close()


def test_unavailable_off_macos_with_the_reason() -> None:
    a = PowermetricsSource.availability()
    if sys.platform != "darwin":
        assert not a.available
        assert "macOS" in a.reason
