"""Layer measurements finished on the reducer thread: same numbers, in order, bounded, drained."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
from support.archs import BoundaryStreamer, build, generate, hook_count, prompt_ids, token_rows

from llm_energy_widget.core import own_threads
from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.profiling.layer_profiler import LayerProfiler
from llm_energy_widget.profiling.reducer import MAX_PENDING, NICE, Pipeline

STATS = slice(METRICS.index("act_mean"), METRICS.index("sparsity") + 1)
N_NEW = 12


def _rows(level: str, asynchronous: bool, deliver_delay_s: float = 0.0) -> list[Any]:
    model = build("llama")
    prof = LayerProfiler(model, level)
    rows, pending = token_rows(prof, model, prompt_ids(), N_NEW, asynchronous, deliver_delay_s)
    assert hook_count(model) == 0
    assert max(pending) <= MAX_PENDING
    return rows


@pytest.mark.parametrize("level", ["layer", "component", "deep"])
def test_async_rows_arrive_in_order_with_the_same_statistics(level: str) -> None:
    sync_rows = _rows(level, asynchronous=False)
    async_rows = _rows(level, asynchronous=True)  # detach() waited for every token
    assert [r[0] for r in async_rows] == list(range(N_NEW))
    for (_, a, ax), (_, s, sx) in zip(async_rows, sync_rows, strict=True):
        assert np.isfinite(a[:, :, METRICS.index("time_ms")]).any()
        # the same outputs reduced by the same ops: bit for bit
        np.testing.assert_array_equal(a[:, :, STATS], s[:, :, STATS])
        assert ax.keys() == sx.keys()
        for k in ax:
            np.testing.assert_array_equal(ax[k], sx[k])


def test_a_slow_consumer_holds_generation_back_instead_of_piling_up() -> None:
    rows = _rows("component", asynchronous=True, deliver_delay_s=0.05)
    assert [r[0] for r in rows] == list(range(N_NEW))  # all delivered by detach()


def test_a_failing_consumer_is_reported_and_later_tokens_still_arrive() -> None:
    model = build("llama")
    prof = LayerProfiler(model, "component")
    got: list[int] = []
    count = {"n": 0}

    def on_token() -> None:
        i = count["n"]
        count["n"] += 1

        def deliver(values: np.ndarray, extras: dict[str, Any]) -> None:
            if i == 2:
                raise RuntimeError("consumer broke")
            got.append(i)

        prof.collect_async(deliver)

    with prof:
        generate(model, prompt_ids(), n=6, streamer=BoundaryStreamer(on_token))
    assert got == [0, 1, 3, 4, 5]
    assert any("consumer broke" in e for e in prof.errors)


def test_pipeline_survives_a_failing_job_and_drains() -> None:
    pipe = Pipeline(max_pending=2)
    ran: list[str] = []

    def bad() -> None:
        raise ValueError("boom")

    pipe.submit(bad)
    pipe.submit(lambda: ran.append("after"))
    assert pipe.drain(5.0)
    assert ran == ["after"]
    assert pipe.pending == 0


def test_drain_gives_up_after_its_timeout() -> None:
    pipe = Pipeline()
    release = threading.Event()

    def stuck() -> None:
        release.wait(5.0)

    pipe.submit(stuck)
    t0 = time.monotonic()
    assert not pipe.drain(0.05)
    assert time.monotonic() - t0 < 1.0
    release.set()
    assert pipe.drain(5.0)


def test_a_stuck_reduction_is_reported_by_the_profiler() -> None:
    model = build("llama")
    prof = LayerProfiler(model, "layer")
    release = threading.Event()
    with prof, torch.inference_mode():
        model(prompt_ids())

        def stuck(values: Any, extras: Any) -> None:
            release.wait(5.0)

        prof.collect_async(stuck)
        prof.drain(timeout_s=0.05)
        release.set()
    assert any("still being reduced" in e for e in prof.errors)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_reducer_thread_yields_cores_to_the_generating_thread() -> None:
    seen: dict[str, int] = {}
    pipe = Pipeline()

    def job() -> None:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    pipe.submit(job)
    assert pipe.drain(5.0)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["nice"] == min(19, mine + NICE)


def _burn(cpu_s: float) -> None:
    """Use `cpu_s` of this thread's CPU, whatever else the shared cores are doing."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_a_pipeline_counts_the_reducer_cpu_its_jobs_took() -> None:
    """Two jobs burning 50 ms of thread CPU each: ~0.1 s; a 50 ms sleep adds ~0; another
    pipeline's job is not this one's."""
    pipe, other = Pipeline(), Pipeline()
    assert pipe.cpu_s == 0.0
    pipe.submit(lambda: _burn(0.05))
    other.submit(lambda: _burn(0.05))
    pipe.submit(lambda: _burn(0.05))
    assert pipe.drain(10.0)
    assert other.drain(10.0)
    burnt = pipe.cpu_s
    assert 0.1 <= burnt < 0.1 + 0.02
    pipe.submit(lambda: time.sleep(0.05))
    assert pipe.drain(10.0)
    assert pipe.cpu_s - burnt < 0.005
    assert 0.05 <= other.cpu_s < 0.05 + 0.01


def test_the_reducer_thread_is_one_of_the_profilers_own() -> None:
    pipe = Pipeline()
    pipe.submit(lambda: None)  # the thread exists (and registered) once a job ran
    assert pipe.drain(10.0)
    before = own_threads.cpu_s_by_role()["reducer"]
    pipe.submit(lambda: _burn(0.05))
    assert pipe.drain(10.0)
    assert own_threads.cpu_s_by_role()["reducer"] - before >= 0.05
