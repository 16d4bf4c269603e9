"""Replay: CSV and JSON-lines traces on the sampler's clock; the integral against a closed form."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.power.replay import ReplaySource
from llm_energy_widget.power.sampler import PowerSampler
from llm_energy_widget.power.streams import SkippedSampleWarning

FIXTURES = Path(__file__).parents[1] / "fixtures" / "power"


def test_integral_error_below_a_tenth_of_a_percent(tmp_path: Path) -> None:
    """P(t) = 10 + 5 sin(t) sampled every 100 ms for 20 s; E(T) = 10 T + 5 (1 - cos T)."""
    path = tmp_path / "sine.csv"
    rows = ["t_ms,total_w"] + [f"{k * 100},{10 + 5 * math.sin(k * 0.1)!r}" for k in range(201)]
    path.write_text("\n".join(rows) + "\n")
    sampler = PowerSampler(ReplaySource(path, speed=0), interval_ms=10)
    sampler.start()
    assert sampler.wait(5.0)
    sampler.stop()
    r = sampler.readings()
    assert len(r) == 201
    assert r[0].kind == "measured"
    assert r[0].source == "replay"
    exact = 10 * 20 + 5 * (1 - math.cos(20))
    assert abs(r[-1].energy_j - exact) / exact < 1e-3
    curve = sampler.curve()
    t0 = r[0].t_ms
    # 30 ms inside one 100 ms interval: that interval's average power x 30 ms
    mid = float(curve.energy_between(t0 + 5000, t0 + 5030))
    interval_avg_w = (10 * 0.1 + 5 * (math.cos(5.0) - math.cos(5.1))) / 0.1
    assert mid == pytest.approx(interval_avg_w * 0.03, rel=1e-3)


def test_released_on_the_clock_at_speed(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t_ms,total_w\n0,1\n150,2\n10000,3\n")
    src = ReplaySource(path, speed=1.0)
    src.open(100.0)
    assert [s.power_w["total"] for s in src.poll()] == [1.0]
    time.sleep(0.2)
    (s,) = src.poll()
    assert s.t_s == pytest.approx(src._open_s + 0.150)  # type: ignore[operator]
    assert not src.exhausted
    fast = ReplaySource(path, speed=100.0)
    fast.open(100.0)
    time.sleep(0.11)
    assert len(fast.poll()) == 3
    assert fast.exhausted


def test_jsonl_uses_its_energy_and_kind() -> None:
    src = ReplaySource(FIXTURES / "trace.jsonl", speed=0)
    assert src.use_energy
    assert src.kind == "measured"
    assert "recorded by nvml" in src.describe()
    src.open(100.0)
    got = src.poll()
    assert [s.energy_j for s in got] == pytest.approx([0.0, 30.0, 60.0, 90.0, 120.0, 150.0])
    assert got[0].power_w == {"gpu": 300.0, "total": 300.0}


def test_kind_rules(tmp_path: Path) -> None:
    est = tmp_path / "est.jsonl"
    est.write_text(json.dumps({"t_ms": 0, "total_w": 5, "kind": "estimated"}) + "\n")
    assert ReplaySource(est).kind == "estimated"
    with pytest.raises(InvalidInputError, match="would relabel"):
        ReplaySource(est, kind="measured")
    assert ReplaySource(FIXTURES / "trace.csv", kind="modeled").kind == "modeled"
    assert ReplaySource(FIXTURES / "trace.csv").kind == "measured"
    with pytest.raises(InvalidInputError, match="kind must be one of"):
        ReplaySource(FIXTURES / "trace.csv", kind="guessed")


def test_malformed_rows_are_skipped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t_ms,total_w,cpu_w\n0,10,8\n100,ten,8\n100,11,8\n50,11,8\n200,12,\n")
    with pytest.warns(SkippedSampleWarning) as record:
        src = ReplaySource(path)
    messages = [str(w.message) for w in record]
    assert any("line 3" in m and "'ten'" in m for m in messages)
    assert any("line 5" in m and "not after" in m for m in messages)
    assert src.skipped_samples == 2
    assert [r.t_ms for r in src.rows] == [0, 100, 200]


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read trace"):
        ReplaySource(tmp_path / "missing.csv")
    (tmp_path / "h.csv").write_text("time,watts\n0,1\n")
    with pytest.raises(InvalidInputError, match="unknown column"):
        ReplaySource(tmp_path / "h.csv")
    (tmp_path / "e.csv").write_text("t_ms,total_w\n")
    with pytest.raises(InvalidInputError, match="no readable sample"):
        ReplaySource(tmp_path / "e.csv")
    with pytest.raises(InvalidInputError, match="speed"):
        ReplaySource(FIXTURES / "trace.csv", speed=-1)
