"""Machine load around a run, from a fake /proc/stat and fake clocks: known ticks, known cores."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from llm_energy_widget.power.load import LoadWindow

TCK = os.sysconf("SC_CLK_TCK")  # ticks per second, as /proc/stat counts them
T = TypeVar("T")


def stat_line(busy_ticks: int, idle_ticks: int = 10_000) -> str:
    # cpu user nice system idle iowait irq softirq steal: busy is every field but idle/iowait
    user, nice, system, irq, softirq = busy_ticks - 4, 1, 1, 1, 1
    return f"cpu  {user} {nice} {system} {idle_ticks} 7 {irq} {softirq} 0 0 0\ncpu0 1 2 3 4\n"


def clock(*values: T) -> Callable[[], T]:
    it: Iterator[T] = iter(values)
    return lambda: next(it)


def test_known_ticks_give_known_cores(tmp_path: Path) -> None:
    """Over 2 s of wall: the machine used 3 CPU s (1.5 cores), this process 1 CPU s (0.5 cores),
    so other programs 1.0 core; 4 CPUs at one tick each are 4/TCK/2 cores of rounding."""
    stat = tmp_path / "stat"
    stat.write_text(stat_line(5_000))
    window = LoadWindow(
        stat=str(stat),
        wall_clock=clock(100.0, 102.0),
        process_clock=clock(7.0, 8.0),
        own_clock=clock({"reducer": 1.0}, {"reducer": 1.5, "sampler": 0.2}),
        cpu_count=4,
    )
    window.start()
    stat.write_text(stat_line(5_000 + 3 * TCK, idle_ticks=10_000 + 5 * TCK))
    out = window.stop()
    assert out["wall_s"] == 2.0
    assert out["cpu_count"] == 4
    assert out["system_busy_cores"] == pytest.approx(1.5)
    assert out["process_busy_cores"] == pytest.approx(0.5)
    assert out["other_busy_cores"] == pytest.approx(1.0)
    assert out["busy_resolution_cores"] == pytest.approx(4 / TCK / 2)
    assert out["process_cpu_s"] == pytest.approx(1.0)
    assert out["profiler_cpu_s_by_role"] == {
        "reducer": pytest.approx(0.5),
        "sampler": pytest.approx(0.2),
    }
    assert out["system_busy"] == f"from {stat}"
    assert window.stop() is out  # once stopped, the same answer


def test_this_process_busier_than_the_machine_reads_as_no_other_load(tmp_path: Path) -> None:
    """Tick rounding can make the machine's count fall short of the process's: clipped at 0."""
    stat = tmp_path / "stat"
    stat.write_text(stat_line(5_000))
    window = LoadWindow(
        stat=str(stat),
        wall_clock=clock(0.0, 1.0),
        process_clock=clock(0.0, 1.0),
        own_clock=clock({}, {}),
        cpu_count=2,
    )
    window.start()
    stat.write_text(stat_line(5_000 + TCK - 1))
    out = window.stop()
    assert out["process_busy_cores"] == pytest.approx(1.0)
    assert out["other_busy_cores"] == 0.0


def test_no_proc_stat_gives_none_and_says_why(tmp_path: Path) -> None:
    window = LoadWindow(
        stat=str(tmp_path / "missing"),
        wall_clock=clock(0.0, 4.0),
        process_clock=clock(1.0, 3.0),
        own_clock=clock({}, {}),
        cpu_count=8,
    )
    out = window.start().stop()
    assert out["system_busy_cores"] is None
    assert out["other_busy_cores"] is None
    assert out["busy_resolution_cores"] is None
    assert out["process_busy_cores"] == pytest.approx(0.5)  # still known: 2 CPU s over 4 s
    assert out["system_busy"].startswith("unavailable: cannot read")


def test_stop_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        LoadWindow().stop()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux only")
def test_the_real_machine_reads_plausibly() -> None:
    window = LoadWindow().start()
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass
    out = window.stop()
    assert out["wall_s"] > 0
    assert out["process_busy_cores"] > 0.1  # it spun the whole window (if it got a core)
    assert out["system_busy_cores"] is not None
    assert out["other_busy_cores"] is not None
