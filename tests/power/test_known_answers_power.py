"""Known answers for the power layer: every figure checked against a value worked out by hand
or in closed form from the load, never against the code's own output.

Loads used (tau in s since the load began):
- constant 300 W: E = 300 tau.
- ramp P = 100 + 100 tau W: E = 100 tau + 50 tau^2.
- 70 ms square wave, 300 W for 35 ms then 100 W for 35 ms: 14 J per period, mean 200 W.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.sources import energy_of

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.energy import EnergyCurve
from llm_energy_widget.power.estimate import EstimateSource
from llm_energy_widget.power.macmon import MacmonSource
from llm_energy_widget.power.nvml import NvmlSource
from llm_energy_widget.power.powermetrics import PowermetricsSource
from llm_energy_widget.power.rapl import RaplSource
from llm_energy_widget.power.record import SourceSample
from llm_energy_widget.power.registry import explain_auto, get_source, list_sources
from llm_energy_widget.power.replay import ReplaySource
from llm_energy_widget.power.sampler import PowerSampler
from llm_energy_widget.power.streams import SkippedSampleWarning

from .fake_nvml import FakeClock, FakeGpu, make_fake_nvml
from .test_rapl import zone

FIXTURES = Path(__file__).parents[1] / "fixtures" / "power"
INFO_KEYS = {
    "source",
    "kind",
    "scope",
    "interval_ms",
    "native_interval_ms",
    "resolution_ms",
    "power_window_ms",
    "description",
}
T_LOAD = 999.0  # the fake clock starts at 1000 s; the load began 1 s earlier


def const_e(t_s: float) -> float:
    return 300.0 * (t_s - T_LOAD)


def ramp_e(t_s: float) -> float:
    tau = t_s - T_LOAD
    return 100.0 * tau + 50.0 * tau**2


def square_p(tau_s: float) -> float:
    return 300.0 if (tau_s % 0.070) < 0.035 else 100.0


def square_e_tau(tau_s: float) -> float:
    n, r = divmod(tau_s, 0.070)
    return 14.0 * n + (300.0 * r if r < 0.035 else 10.5 + 100.0 * (r - 0.035))


def square_e(t_s: float) -> float:
    return square_e_tau(t_s - T_LOAD)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Monotonic time that moves only when slept on: every poll time is known exactly."""
    c = FakeClock(1000.0)
    monkeypatch.setattr(time, "monotonic", c)
    monkeypatch.setattr(time, "sleep", c.sleep)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return c


class FakeRun:
    """A sampler driven by hand on the fake clock: what start()/the thread/stop() do, in order."""

    def __init__(self, source: PowerSource, clock: FakeClock, interval_ms: float) -> None:
        self.sampler = PowerSampler(source, interval_ms=interval_ms)
        self.clock = clock
        self.polls_s: list[float] = []
        s = self.sampler
        s.t0_s = time.monotonic()
        self.t0_s = s.t0_s
        source.open(interval_ms)
        s._opened = True
        s._poll_until(0.0, timeout_s=1.0)
        self.begin_s = clock()

    def run(self, seconds: float, before_poll: Callable[[float], None] | None = None) -> None:
        step = self.sampler.interval_ms / 1000.0
        n = round(seconds / step)
        start = self.clock()
        for i in range(1, n + 1):
            self.clock.t_s = start + i * step
            if before_poll is not None:
                before_poll(self.clock())
            self.polls_s.append(self.clock())
            self.sampler._poll_once()

    def stop(self) -> float:
        """Stop as the profiler does; returns the stop time (s) the curve must cover."""
        t = self.clock()
        self.sampler.stop()
        return t

    def ms(self, t_s: float | np.ndarray) -> float | np.ndarray:
        return (t_s - self.t0_s) * 1e3


def nvml_run(
    clock: FakeClock,
    energy_fn: Callable[[float], float],
    update_ms: float = 100.0,
    phase_ms: float = 37.0,
    poll_ms: float = 20.0,
    seconds: float = 1.8,
    jitter_ms: float = 0.0,
    delay_s: float = 0.0,
) -> tuple[FakeRun, FakeGpu, float]:
    """A run on a fake NVML counter. open() ends just after an update (the probe stops at one),
    so polls follow updates by ~1.5 ms; delay_s moves them later in the counter's period."""
    gpu = FakeGpu(
        energy_fn=energy_fn,
        update_ms=update_ms,
        phase_ms=phase_ms,
        jitter_ms=jitter_ms,
        clock=clock,
    )
    run = FakeRun(NvmlSource(nvml=make_fake_nvml([gpu])), clock, poll_ms)
    clock.sleep(delay_s)
    run.run(seconds)
    t_stop = run.stop()
    return run, gpu, t_stop


def old_stamping_curve(
    run: FakeRun, gpu: FakeGpu, energy_fn: Callable[[float], float]
) -> EnergyCurve:
    """What the old NVML source gave on the same polls: the counter's value (last update's E)
    stamped at each poll time, a reading at every poll."""
    p = np.array(run.polls_s)
    e = np.array([energy_fn(gpu.last_update_s(x)) for x in p])
    return EnergyCurve(np.asarray(run.ms(p)), e - e[0])


# -- (A)-(D): info(), scope, resolution, power window, descriptions after open -------------------
def test_info_after_start_has_exactly_the_keys_and_the_trace_spacing(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t_ms,total_w\n" + "".join(f"{40 * k},10\n" for k in range(11)))
    for interval, resolution in ((10.0, 40.0), (100.0, 100.0)):
        s = PowerSampler(ReplaySource(path, speed=0), interval_ms=interval)
        s.start()
        info = s.info()
        s.stop()
        assert set(info) == INFO_KEYS
        assert info["source"] == "replay"
        assert info["kind"] == "measured"
        assert info["scope"] == "trace"
        assert info["interval_ms"] == interval
        assert info["native_interval_ms"] == 40.0  # the trace's median spacing, by hand
        assert info["resolution_ms"] == resolution  # max(interval, native)
        assert info["power_window_ms"] is None
        assert "samples every 40 ms" in info["description"]
        assert "integrated from total_w" in info["description"]


def test_estimate_scopes_by_name_resolution_and_descriptions() -> None:
    proc = get_source("estimate:process")
    system = get_source("estimate:system")
    assert isinstance(proc, EstimateSource)
    assert isinstance(system, EstimateSource)
    assert (proc.scope, system.scope) == ("process", "system")
    assert get_source("estimate").scope == "process"  # the default is unchanged
    assert proc.native_interval_ms == 5.0  # MIN_INTERVAL_S
    assert system.native_interval_ms == pytest.approx(1000.0 / os.sysconf("SC_CLK_TCK"))
    pd, sd = proc.describe(), system.describe()
    assert "this process" in pd
    assert "only" in pd
    assert "not other programs" in pd
    assert "every process" in sd
    assert "/proc/stat" in sd
    for text in (pd, sd):
        assert "ignores other processes" not in text
        assert "ESTIMATE" in text
    proc.open(50.0)
    assert proc.power_window_ms == 50.0  # power is the CPU-time delta over a poll
    with pytest.raises(InvalidInputError, match="estimate:process, estimate:system"):
        get_source("estimate:gpu")
    with pytest.raises(InvalidInputError, match="take a file"):
        get_source("estimate:/tmp/x")
    with pytest.raises(InvalidInputError, match="disagree"):
        get_source("estimate:system", scope="process")
    reason = {r["name"]: r["reason"] for r in list_sources()}["estimate"]
    assert "estimate:system" in reason


def test_explain_auto_names_estimate_system_when_it_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llm_energy_widget.power.registry import SOURCES

    for name in ("nvml", "rapl", "powermetrics", "macmon"):
        monkeypatch.setattr(
            SOURCES[name], "availability", classmethod(lambda cls: Availability(False, "no"))
        )
    assert "estimate:system counts every process" in explain_auto()


def test_rapl_describe_and_scope_after_open_list_the_chosen_zones(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", 0)
    zone(tmp_path, "intel-rapl:0:0", "core", 0)
    zone(tmp_path, "intel-rapl:0:1", "dram", 0)
    zone(tmp_path, "intel-rapl:1", "package-1", 0)
    src = RaplSource(tmp_path)
    assert "package-0" not in src.describe()
    src.open(100.0)
    d = src.describe()
    assert "package-0 (intel-rapl:0)" in d
    assert "package-1 (intel-rapl:1)" in d
    assert "dram (intel-rapl:0:1)" in d
    assert "core (" not in d
    assert src.scope == "package-0, package-1, dram"
    assert (src.native_interval_ms, src.power_window_ms) == (1.0, 100.0)


def test_powermetrics_resolution_is_the_real_sample_spacing() -> None:
    # the fixture's elapsed_ns: 116, 129, (malformed), 125, 121 ms -> median (121 + 125) / 2
    src = PowermetricsSource(FIXTURES / "powermetrics.plist", follow=False)
    assert src.native_interval_ms is None
    assert src.scope == "system (SoC)"
    src.open(100.0)
    with pytest.warns(SkippedSampleWarning, match="skipped malformed sample"):
        src.poll()
    src.close()
    assert src.native_interval_ms == pytest.approx(123.0)
    assert src.power_window_ms == pytest.approx(123.0)
    assert "samples every 123 ms" in src.describe()
    assert "reading" in src.describe()


def test_macmon_resolution_is_the_real_line_spacing(tmp_path: Path) -> None:
    # lines at 0, 118, 240, 361 ms: the first has no interval of its own (nominal 100 ms),
    # then 118, 122, 121 -> median of [100, 118, 121, 122] = 119.5 ms
    path = tmp_path / "m.jsonl"
    stamps = ["00.000", "00.118", "00.240", "00.361"]
    path.write_text(
        "".join(
            f'{{"timestamp": "2025-11-25T10:00:{s}Z", "cpu_power": 1.0, "all_power": 1.0}}\n'
            for s in stamps
        )
    )
    src = MacmonSource(path, capture_interval_ms=100.0)
    src.open(100.0)
    src.poll()
    src.close()
    assert src.native_interval_ms == pytest.approx(119.5, abs=1e-3)
    assert src.power_window_ms == pytest.approx(119.5, abs=1e-3)
    assert src.scope == "system (SoC)"
    d = src.describe()
    assert "lines every 120 ms" in d
    assert "1 line(s) with no interval of their own" in d


def test_replay_partial_energy_column_is_used_not_integrated(tmp_path: Path) -> None:
    # energy at 100 and 300 ms; the 200 ms row gets (1 + 3) / 2 = 2 J; rows at 0 and 400 ms
    # have no counter value on one side, so they are dropped
    path = tmp_path / "e.csv"
    path.write_text("t_ms,total_w,energy_j\n0,50,\n100,10,1\n200,10,\n300,10,3\n400,50,\n")
    src = ReplaySource(path, speed=0)
    assert src.use_energy
    assert src.dropped_rows == 2
    assert [(r.t_ms, r.energy_j) for r in src.rows] == [(100, 1.0), (200, 2.0), (300, 3.0)]
    assert "energy_j column (2 rows outside it dropped)" in src.describe()
    s = PowerSampler(src, interval_ms=10)
    s.start()
    assert s.wait(5.0)
    s.stop()
    assert [r.energy_j for r in s.readings()] == pytest.approx([1.0, 2.0, 3.0])  # the trace's own


def test_nvml_describe_scope_and_window_follow_what_open_chose(clock: FakeClock) -> None:
    avg = FakeGpu(instant_mw=None, energy_fn=const_e, clock=clock)
    src = NvmlSource(nvml=make_fake_nvml([avg]))
    src.open(20.0)
    assert src.power_window_ms == 1000.0
    assert "1-second average" in src.describe()
    assert src.scope == "GPU 0"
    assert "updates every 100 ms" in src.describe()
    src.close()

    gpus = [FakeGpu(energy_fn=const_e, clock=clock), FakeGpu(energy_fn=const_e, clock=clock)]
    nv = make_fake_nvml(gpus)
    src = NvmlSource(nvml=nv)
    src.open(20.0)
    assert src.scope == "GPUs 0,1"
    assert src.power_window_ms is None
    assert "NVML_FI_DEV_POWER_INSTANT" in src.describe()
    gpus[1].instant_mw = None  # the instant field stops answering mid-run: fall back
    src.poll()
    assert src.power_window_ms == 1000.0
    assert "1-second average" in src.describe()
    src.close()
    one = NvmlSource(devices=[1], nvml=nv)
    one.open(100.0)
    assert one.scope == "GPU 1"
    # 100 ms polls are sparser than half the 100 ms period: the description says so
    assert "poll every <= 50 ms" in one.describe()
    one.close()


def test_nvml_measures_the_counter_period_at_open_bounded_in_time(clock: FakeClock) -> None:
    # GPUs whose counters update every 40 and every 100 ms: the source reports the worst
    gpus = [
        FakeGpu(energy_fn=const_e, update_ms=40.0, phase_ms=3.0, clock=clock),
        FakeGpu(energy_fn=const_e, update_ms=100.0, phase_ms=61.0, clock=clock),
    ]
    src = NvmlSource(nvml=make_fake_nvml(gpus))
    t = clock()
    src.open(20.0)
    # 4 changes of the 100 ms counter: at most 100 ms to the first, 300 ms for 3 more
    assert clock() - t <= 0.41
    assert src.native_interval_ms == pytest.approx(100.0, abs=1.5)
    assert [g.period_ms for g in src.gpus] == pytest.approx([40.0, 100.0], abs=1.5)
    src.close()
    # a 300 ms counter: 2 changes in the 0.5 s probe give its period; a frozen one gives none
    slow = FakeGpu(energy_fn=const_e, update_ms=300.0, phase_ms=10.0, clock=clock)
    src = NvmlSource(nvml=make_fake_nvml([slow]))
    t = clock()
    src.open(20.0)
    assert clock() - t <= 0.5 + 0.002
    assert src.native_interval_ms == pytest.approx(300, abs=1.5)
    src.close()
    frozen = NvmlSource(nvml=make_fake_nvml([FakeGpu(clock=clock)]))
    frozen.open(20.0)
    assert frozen.native_interval_ms is None
    assert "no update period seen" in frozen.describe()
    frozen.close()


# -- (E): NVML readings at the counter's update times --------------------------------------------
def test_nvml_readings_sit_at_the_counter_updates_with_their_exact_energy(
    clock: FakeClock,
) -> None:
    """Constant 300 W, counter updated every 100 ms (phase 37 ms), polled every 20 ms."""
    run, gpu, t_stop = nvml_run(clock, const_e)
    readings = run.sampler.readings()
    anchor_u = gpu.last_update_s(run.t0_s + readings[0].t_ms / 1e3)
    for r in readings:
        t = run.t0_s + r.t_ms / 1e3
        u = gpu.last_update_s(t + 0.005)  # the update this reading stands for
        assert abs(t - u) <= 1e-3  # placed within 1 ms (the probe's read spacing)
        assert r.energy_j == pytest.approx(const_e(u) - const_e(anchor_u), abs=2e-3)  # mJ counter
    # the bracket midpoint would be 9 ms early: the polls around each update are 19 ms before
    # and 1 ms after it
    polls = np.array(run.polls_s)
    mids = []
    for k in range(3, 15):
        u = gpu.update_s(math.floor((run.begin_s * 1e3 - gpu.phase_ms) / gpu.update_ms) + k)
        mids.append(0.5 * (polls[polls < u].max() + polls[polls >= u].min()) - u)
    assert max(abs(m) for m in mids) > 5e-3
    # one reading per update, none at polls without a change: 1.8 s / 100 ms, +-1 at the ends
    assert abs(len(readings) - 19) <= 1
    assert run.sampler.curve().covers_until_ms >= run.ms(t_stop)
    # the old source gave a reading at every poll (90 here), the counter's value stamped at
    # the poll: a staircase, flat for 4 polls, then the whole 30 J step (see the next test)
    assert len(run.polls_s) == 90


def test_nvml_tokens_and_total_match_the_analytic_integral(clock: FakeClock) -> None:
    """10 ms "tokens" and the 1.8 s total against E(t) in closed form; the old stamping fails."""
    for energy_fn in (const_e, ramp_e):
        run, gpu, _ = nvml_run(clock, energy_fn)
        curve = run.sampler.curve()
        a = np.arange(run.begin_s + 0.2, run.polls_s[-1] - 0.1, 0.010)
        truth = np.array([energy_fn(x + 0.010) - energy_fn(x) for x in a])
        got = curve.energy_between(run.ms(a), run.ms(a + 0.010))
        old = old_stamping_curve(run, gpu, energy_fn).energy_between(run.ms(a), run.ms(a + 0.010))
        if energy_fn is const_e:
            # a linear E(t) through exact update points: every token is 300 W x 10 ms = 3 J
            assert np.max(np.abs(got - 3.0)) <= 3.0 * 1e-3
            # old: flat between updates, the whole 30 J jump inside one 20 ms poll: 0 or 15 J
            assert np.min(old) == pytest.approx(0.0)
            assert np.max(old) == pytest.approx(15.0)
        else:
            # chords of a quadratic: a token gets its 100 ms segment's mean power, off by at
            # most P' x U / 2 = 100 W/s x 50 ms = 5 W -> 0.05 J; 1 ms placement adds 0.001 J
            assert np.max(np.abs(got - truth)) <= 0.051
            assert np.max(np.abs(old - truth)) > 2.0
        t_a, t_b = run.begin_s + 0.05, run.polls_s[-1] - 0.001
        exact = energy_fn(t_b) - energy_fn(t_a)
        total = float(curve.energy_between(run.ms(t_a), run.ms(t_b)))
        old_total = float(
            old_stamping_curve(run, gpu, energy_fn).energy_between(run.ms(t_a), run.ms(t_b))
        )
        # ends interpolated on chords: <= P' U^2 / 8 = 0.125 J each, plus 1 ms of shift
        # (P' x 1.75 s x 1 ms = 0.18 J): 0.45 J; a constant load has neither
        tol = 1e-3 * exact if energy_fn is const_e else 0.45
        assert abs(total - exact) <= tol
        # old stamping, same polls: +2.6 % (constant) and +2.3 % (ramp) on this 1.75 s span
        # (the new curve: 0.0000 % and -0.015 %)
        assert abs(old_total - exact) > 3 * tol


def test_nvml_square_wave_windows_between_updates(clock: FakeClock) -> None:
    """70 ms 100/300 W square wave: the counter's 100 ms steps hold its exact integral.

    The old stamping's error depends on how late the first poll after an update comes: ~1.5 ms
    right after open (the probe stops just after an update), ~11.5 ms 10 ms later."""
    worst_old = 0.0
    for delay_s in (0.0, 0.010):
        run, gpu, _ = nvml_run(clock, square_e, delay_s=delay_s)
        curve = run.sampler.curve()
        old = old_stamping_curve(run, gpu, square_e)
        k0 = math.ceil((run.begin_s * 1e3 - gpu.phase_ms) / gpu.update_ms) + 1
        for k in range(k0, k0 + 15):
            a, b = gpu.update_s(k), gpu.update_s(k + 1)
            exact = square_e(b) - square_e(a)  # 14 J per 70 ms: 16-24 J per 100 ms, by phase
            got = float(curve.energy_between(run.ms(a), run.ms(b)))
            # placement within 1 ms moves each end by <= 300 W x 1 ms = 0.3 J
            assert abs(got - exact) <= 0.6
            worst_old = max(worst_old, abs(float(old.energy_between(run.ms(a), run.ms(b))) - exact))
    assert worst_old > 1.2  # the same windows on the old stamping's curve


def test_nvml_two_gpus_with_their_own_phases_sum_exactly(clock: FakeClock) -> None:
    gpus = [
        FakeGpu(energy_fn=lambda t: 100.0 * (t - T_LOAD), phase_ms=10.0, clock=clock),
        FakeGpu(energy_fn=lambda t: 200.0 * (t - T_LOAD), phase_ms=60.0, clock=clock),
    ]
    run = FakeRun(NvmlSource(nvml=make_fake_nvml(gpus)), clock, 20.0)
    run.run(1.0)
    run.stop()
    curve = run.sampler.curve()
    a = np.arange(run.begin_s + 0.2, run.polls_s[-1] - 0.15, 0.010)
    tokens = curve.energy_between(run.ms(a), run.ms(a + 0.010))
    assert np.max(np.abs(tokens - 3.0)) <= 3e-3  # 300 W x 10 ms, both GPUs' phases merged


def test_nvml_jittery_counter_is_never_worse_than_the_bracket_midpoint(clock: FakeClock) -> None:
    """Updates +-3 ms off their period: prediction gives way to midpoints (half a poll)."""
    for jitter_ms, poll_ms, update_ms in ((3.0, 20.0, 100.0), (0.0, 100.0, 100.0)):
        run, gpu, _ = nvml_run(
            clock, const_e, update_ms=update_ms, poll_ms=poll_ms, seconds=3.0, jitter_ms=jitter_ms
        )
        readings = run.sampler.readings()
        e0 = readings[0].energy_j
        for r in readings[1:-1]:
            t = run.t0_s + r.t_ms / 1e3
            # the true update: where the exact E equals this reading's energy
            u0 = gpu.last_update_s(run.t0_s + readings[0].t_ms / 1e3 + 0.003)
            u = T_LOAD + (const_e(u0) + r.energy_j - e0) / 300.0
            assert abs(t - u) <= poll_ms / 2e3 + 1e-4


def test_nvml_stop_covers_now_on_real_time() -> None:
    """Real clock: a 50 ms counter, 20 ms polls; stop() must wait for an update after 'now'."""
    gpu = FakeGpu(energy_fn=lambda t: 100.0 * t, update_ms=50.0)
    s = PowerSampler(NvmlSource(nvml=make_fake_nvml([gpu])), interval_ms=20.0)
    s.start()
    assert s.source.native_interval_ms == pytest.approx(50.0, abs=5.0)
    time.sleep(0.2)
    t_stop = s.now_ms()
    s.stop()
    assert s.curve().covers_until_ms >= t_stop
    e = s.arrays()["energy_j"]
    assert np.all(np.diff(e) >= 0)
    assert np.all(np.diff(s.arrays()["t_ms"]) > 0)


def test_stop_waits_long_enough_for_a_slow_counter() -> None:
    class Slow(PowerSource):
        name = "slow"
        native_interval_ms = 400.0

        @classmethod
        def availability(cls) -> Availability:
            return Availability(True, "test")

        def poll(self) -> list[SourceSample]:
            return []

    # two counter periods and a poll: (2 x 400 + 20) ms
    assert PowerSampler(Slow(), interval_ms=20)._cover_timeout_s() == pytest.approx(0.82)
    assert PowerSampler(Slow(), interval_ms=20).source.native_interval_ms == 400.0


# -- (F): a counter integrates a periodic load exactly; sampled instant power aliases ------------
def square_trace(tmp_path: Path, step_ms: int, phase_ms: int, energy: bool) -> Path:
    """7 s of the square wave sampled every step_ms, starting phase_ms into a period (ms
    integers, so no sample sits on an edge); energy_j is the exact integral since the start."""

    def p(t: int) -> float:
        return 300.0 if (t + phase_ms) % 70 < 35 else 100.0

    def e(t: int) -> float:
        return square_e_tau((t + phase_ms) / 1e3) - square_e_tau(phase_ms / 1e3)

    path = tmp_path / f"sq{step_ms}_{phase_ms}_{energy}.csv"
    rows = [f"{t},{p(t)}" + (f",{e(t)!r}" if energy else "") for t in range(0, 7001, step_ms)]
    path.write_text(("t_ms,total_w,energy_j\n" if energy else "t_ms,total_w\n") + "\n".join(rows))
    return path


@pytest.mark.parametrize("step_ms", [100, 20])
@pytest.mark.parametrize(("phase_ms", "sign"), [(2, +1), (7, -1)])
def test_square_wave_counter_exact_sampled_power_aliases(
    tmp_path: Path, step_ms: int, phase_ms: int, sign: int
) -> None:
    """7 s = 100 wave periods: exactly 1400 J. Sampled every 100 ms (or 20 ms), the wave is seen
    at 7 phases 10 ms apart; 4 of 7 fall in the 300 W half at phase 2 ms, 3 of 7 at phase 7 ms.
    The trapezoid over whole 7-sample cycles is the samples' mean x time:
    (4 x 300 + 3 x 100) / 7 = 214.3 W -> 1500 J (+1/14 = +7.14 %), or 185.7 W -> 1300 J (-7.14 %).
    """
    totals = {}
    for energy in (True, False):
        s = PowerSampler(ReplaySource(square_trace(tmp_path, step_ms, phase_ms, energy), speed=0))
        s.start()
        assert s.wait(10.0)
        s.stop()
        totals[energy] = s.readings()[-1].energy_j
    assert totals[True] == pytest.approx(1400.0, rel=1e-9)
    assert totals[False] / 1400.0 - 1 == pytest.approx(sign / 14, rel=1e-9)


def test_nvml_counter_exact_but_pre_volta_power_aliases(clock: FakeClock) -> None:
    """The same wave on NVML: the counter path gives 14 J per 70 ms between any two updates
    700 ms apart; a GPU without the counter integrates instant power sampled every 100 ms and
    reads +1/14 (phase: the first poll lands 2 ms into a high half)."""
    run, gpu, _ = nvml_run(clock, square_e, seconds=2.0)
    r = run.sampler.readings()
    t = np.array([x.t_ms for x in r])
    e = np.array([x.energy_j for x in r])
    for i in range(1, len(r) - 8):
        j = int(np.argmin(np.abs(t - (t[i] + 700.0))))
        assert t[j] - t[i] == pytest.approx(700.0, abs=0.01)
        assert e[j] - e[i] == pytest.approx(140.0, abs=2e-3)  # 10 periods x 14 J (mJ counter)

    clock.t_s = 1000.0
    gpu = FakeGpu(counter=False, power_fn=lambda t: square_p(t - T_LOAD), clock=clock)
    src = NvmlSource(nvml=make_fake_nvml([gpu]))
    src.open(100.0)
    # polls at tau = 1.002 + 0.1 k s: tau mod 70 ms = 2, 32, 62, 22, 52, 12, 42 ms (4 of 7 high)
    clock.t_s = T_LOAD + 1.002
    samples = []
    for _ in range(71):  # 70 intervals = 7 s = 10 seven-sample cycles
        samples += src.poll()
        clock.sleep(0.100)
    total = energy_of(samples[-1]) - energy_of(samples[0])
    assert total / 1400.0 - 1 == pytest.approx(1 / 14, rel=1e-9)


def test_rapl_counter_path_is_exact_on_the_square_wave(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAPL's counter (continuous here; ~1 ms in hardware) read every 100 ms: over any 7 s it
    holds 100 wave periods x 14 J = 1400 J, where sampled power read 1500 J (see above)."""
    from llm_energy_widget.power import rapl

    zone(tmp_path, "intel-rapl:0", "package-0", 0)
    real_read = rapl._read_int

    def counter_uj(path: Path) -> int:  # the CPU's exact energy so far, in uJ
        if path.name == "energy_uj":
            return round(1e6 * square_e_tau(clock() - T_LOAD))
        return real_read(path)

    monkeypatch.setattr(rapl, "_read_int", counter_uj)
    clock.t_s = T_LOAD + 1.002
    run = FakeRun(RaplSource(tmp_path), clock, 100.0)
    run.run(7.0)
    r = run.sampler.readings()
    assert r[-1].t_ms - r[0].t_ms == pytest.approx(7000.0)
    assert r[-1].energy_j - r[0].energy_j == pytest.approx(1400.0, abs=1e-5)


def test_sampler_never_integrates_power_into_a_counter_curve() -> None:
    class Mixed(PowerSource):
        name = "mixed"

        def __init__(self) -> None:
            self.out = iter(
                [
                    [SourceSample(t_s=1.0, power_w={"total": 10.0}, energy_j=0.0)],
                    [SourceSample(t_s=2.0, power_w={"total": 10.0}, energy_j=1.0)],
                    [SourceSample(t_s=3.0, power_w={"total": 1000.0})],  # power only
                    [SourceSample(t_s=4.0, power_w={"total": 10.0}, energy_j=2.0)],
                ]
            )

        @classmethod
        def availability(cls) -> Availability:
            return Availability(True, "test")

        def poll(self) -> list[SourceSample]:
            return next(self.out, [])

    s = PowerSampler(Mixed())
    s.t0_s = 0.0
    for _ in range(4):
        s._poll_once()
    assert [x.energy_j for x in s.readings()] == [0.0, 1.0, 2.0]
    assert [x.t_ms for x in s.readings()] == [1000.0, 2000.0, 4000.0]
