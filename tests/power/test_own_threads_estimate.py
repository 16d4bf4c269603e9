"""The profiler's own threads: their CPU is counted by role and left out of the process estimate.

Known answers come from busy loops that stop once their thread has used a set amount of CPU
(`time.thread_time()`), so the CPU each burns is known whatever the load on the shared machine;
only the small overheads around them (thread start, the test's own lines) are not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from llm_energy_widget.core import own_threads
from llm_energy_widget.power.estimate import UNCERTAINTY_FRACTION, EstimateSource
from llm_energy_widget.power.sampler import PowerSampler

live_only = pytest.mark.skipif(
    not own_threads.live_clocks(), reason="needs time.pthread_getcpuclockid"
)


def burn(cpu_s: float) -> None:
    """Use `cpu_s` seconds of this thread's CPU."""
    end = time.thread_time() + cpu_s
    x = 0
    while time.thread_time() < end:
        x += 1


class Helper:
    """A thread that registers under `role`, runs `work`, then waits until told to end."""

    def __init__(self, role: str, work: Callable[[], None], unregister: bool = True) -> None:
        self.done, self.release = threading.Event(), threading.Event()

        def main() -> None:
            own_threads.register_current(role)
            work()
            own_threads.publish_current()
            self.done.set()
            self.release.wait(10)
            if unregister:
                own_threads.unregister_current()

        self.thread = threading.Thread(target=main, daemon=True)

    def __enter__(self) -> Helper:
        self.thread.start()
        assert self.done.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def end(self) -> None:
        self.release.set()
        self.thread.join(10)


@pytest.fixture
def role(request: pytest.FixtureRequest) -> str:
    """A role no other thread in the test process uses (the real reducer may be running)."""
    return f"test-{request.node.name}"


def test_a_registered_thread_is_counted_live_and_after_it_ends(role: str) -> None:
    before = own_threads.cpu_s_by_role().get(role, 0.0)
    assert before == 0.0
    with Helper(role, lambda: burn(0.08)):
        live = own_threads.cpu_s_by_role()[role]
        assert 0.08 <= live < 0.08 + 0.03
    after = own_threads.cpu_s_by_role()[role]
    assert after == pytest.approx(live, abs=0.01)  # kept by unregister_current()
    with Helper(role, lambda: time.sleep(0.08)):  # sleeping is no CPU
        pass
    assert own_threads.cpu_s_by_role()[role] == pytest.approx(after, abs=0.01)
    assert own_threads.own_cpu_s() >= after


def test_cpu_before_registering_is_not_the_profilers(role: str) -> None:
    def main() -> None:
        burn(0.06)
        own_threads.register_current(role)
        own_threads.register_current(role)  # idempotent
        burn(0.02)
        own_threads.unregister_current()

    t = threading.Thread(target=main)
    t.start()
    t.join(10)
    assert 0.02 <= own_threads.cpu_s_by_role()[role] < 0.02 + 0.02


def test_a_thread_that_ends_unannounced_keeps_its_last_figure(role: str) -> None:
    with Helper(role, lambda: burn(0.05), unregister=False):
        seen = own_threads.cpu_s_by_role()[role]
    assert seen >= 0.05
    assert own_threads.cpu_s_by_role()[role] == pytest.approx(seen, abs=0.01)


def test_without_live_clocks_the_published_figure_is_used(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(own_threads, "live_clocks", lambda: False)  # macOS
    with Helper(role, lambda: burn(0.05)) as h:
        assert own_threads.cpu_s_by_role()[role] >= 0.05  # Helper published after its work
        h.end()
    quiet = f"{role}-unpublished"

    def main() -> None:
        own_threads.register_current(quiet)
        burn(0.03)
        assert own_threads.cpu_s_by_role()[quiet] == 0.0  # nothing published yet
        own_threads.unregister_current()

    t = threading.Thread(target=main)
    t.start()
    t.join(10)
    assert own_threads.cpu_s_by_role()[quiet] >= 0.03  # its final figure, at unregister


@live_only
def test_the_estimate_counts_the_models_cpu_not_the_profilers(role: str) -> None:
    """A profiler thread burns X = 0.3 s, the model (this thread) Y = 0.1 s, at 10 W a core:
    the estimate is Y x 10 = 1 J (not (X+Y) x 10 = 4 J), and says it left out X."""
    src = EstimateSource(watts_per_core=10.0)
    src.open(100.0)
    with Helper(role, lambda: burn(0.3)):
        burn(0.1)
        time.sleep(0.01)  # poll() gives nothing within 5 ms of open
        (live,) = src.poll()
    time.sleep(0.01)
    (after,) = src.poll()  # the thread has ended: its CPU is still left out
    for s in (live, after):
        assert s.energy_j is not None
        # + up to 0.1 CPU s of overheads (thread start, idle OpenMP workers spinning down)
        assert 1.0 <= s.energy_j < 1.0 + 1.0
    assert 0.3 <= src.excluded_cpu_s < 0.3 + 0.05
    assert 0.3 <= src.excluded_cpu_s_by_role[role] < 0.3 + 0.05
    info = src.info()
    assert info["uncertainty"] == UNCERTAINTY_FRACTION == 0.5
    assert info["excludes_profiler_threads"] is True
    assert info["excluded_cpu_s"] == src.excluded_cpu_s
    assert info["excluded_energy_j"] == pytest.approx(10.0 * src.excluded_cpu_s)
    assert "minus the profiler's own threads" in src.describe()


def test_the_system_scope_excludes_nothing_and_states_its_uncertainty() -> None:
    src = EstimateSource(watts_per_core=10.0, scope="system")
    src.open(100.0)
    info = src.info()
    assert info["uncertainty"] == 0.5
    assert info["excludes_profiler_threads"] is False
    assert info["excluded_cpu_s"] is None


def test_the_sampler_registers_its_thread_and_forwards_the_estimates_info() -> None:
    sampler = PowerSampler(EstimateSource(watts_per_core=10.0), interval_ms=10.0)
    before = own_threads.cpu_s_by_role().get("sampler", 0.0)
    assert sampler.load_info() is None
    sampler.start()
    info = sampler.info()
    assert info["uncertainty"] == 0.5
    assert info["kind"] == "estimated"
    time.sleep(0.2)
    sampler.stop()
    end = sampler.end_info()
    assert own_threads.cpu_s_by_role()["sampler"] >= before  # its thread registered
    assert end["excluded_cpu_s"] is not None
    assert end["excluded_cpu_s"] >= 0.0
    load = sampler.load_info()
    assert load is not None
    assert end["load"] is load
    assert load["wall_s"] >= 0.2
    assert "sampler" in load["profiler_cpu_s_by_role"]
