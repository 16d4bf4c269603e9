"""Runs started while another is going on queue in order (Run All over generating cells).

Order and overlap are read from wall-clock stamps taken by listeners on each run's status
events, and from the power source's own open/close calls, not from the queue's bookkeeping.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from support.models import tiny_llama
from support.sources import ConstantSource

from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.run import Run

PROMPT = "Energy is the capacity to do work"


class TimedSource(ConstantSource):
    """Records when each run's sampler opened and closed it (each profiler gets its own)."""

    def __init__(self) -> None:
        super().__init__(10.0)
        self.opened: list[float] = []
        self.closed: list[float] = []

    def open(self, interval_ms: float) -> None:
        self.opened.append(time.monotonic())

    def close(self) -> None:
        self.closed.append(time.monotonic())


class Recorder:
    """(time, status, reason, thread) of every status event of a run, from its creation on."""

    def __init__(self, run: Run) -> None:
        self.events: list[tuple[float, str, str | None, str]] = []
        self._replaying = True
        run.subscribe(self._on, replay=True)
        self._replaying = False

    def _on(self, event: str, payload: dict[str, Any]) -> None:
        if event == "status":
            self.events.append(
                (
                    time.monotonic(),
                    payload["status"],
                    payload["reason"],
                    "(replayed)" if self._replaying else threading.current_thread().name,
                )
            )

    def reasons(self, status: str) -> list[str | None]:
        return [r for _, s, r, _ in self.events if s == status]

    def first(self, status: str) -> float:
        return next(t for t, s, _, _ in self.events if s == status)

    def thread(self, status: str) -> str:
        """The thread that sent the status (not a replay of it)."""
        return next(th for _, s, _, th in self.events if s == status and th != "(replayed)")


def _profiler(model: Any, tok: Any, **kw: Any) -> EnergyProfiler:
    kw.setdefault("power", TimedSource())
    kw.setdefault("baseline_s", 0.3)  # long enough for the next runs to be seen queued
    kw.setdefault("store", False)
    kw.setdefault("interval_ms", 20)
    kw.setdefault("level", "token")
    return EnergyProfiler(model, tok, **kw)


def _gen(prof: EnergyProfiler, n: int = 4, **kw: Any) -> Run:
    return prof.generate(PROMPT, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, **kw)


def test_runs_on_one_model_queue_in_order_and_each_completes(smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_llama(), smollm_tokenizer)
    runs = [_gen(prof, 4 + i) for i in range(3)]
    recs = [Recorder(r) for r in runs]
    assert [r.status for r in runs[1:]] == ["queued", "queued"]
    assert [r.end_reason for r in runs[1:]] == ["queued, 1 ahead", "queued, 2 ahead"]
    assert runs[2].wait(60)  # wait() on a queued run: returns once it has run
    assert [r.status for r in runs] == ["completed"] * 3
    assert [r.n_tokens for r in runs] == [4, 5, 6]
    # the third counted down as the runs ahead of it ended
    assert recs[2].reasons("queued") == ["queued, 2 ahead", "queued, 1 ahead"]
    # one after the other, in submission order: each started after the one before was done
    src: Any = prof.power
    assert len(src.opened) == len(src.closed) == 3
    for k in (1, 2):
        assert recs[k].first("running") > recs[k - 1].first("completed")
        assert src.opened[k] > src.closed[k - 1]  # the samplers never overlapped
    # the queued runs ran on the thread the first one used (its CUDA set-up is paid there)
    threads = {r.thread("completed") for r in recs}
    assert len(threads) == 1
    assert threads.pop().startswith("lew-generate-")
    assert all(not [w for w in r.warnings if "same time" in w] for r in runs)


def test_a_run_after_wait_starts_at_once(smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_llama(), smollm_tokenizer, baseline_s=0.0)
    first = _gen(prof)
    assert first.wait(60)
    second = _gen(prof)
    rec = Recorder(second)
    assert second.wait(60)
    assert second.status == "completed"
    assert rec.reasons("queued") == []  # never queued: wait() returned with the place free


def test_cancel_removes_a_queued_run_without_opening_anything(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    prof = _profiler(model, smollm_tokenizer, level="component")
    running = _gen(prof, 6)
    doomed, behind = _gen(prof), _gen(prof)
    rec_behind = Recorder(behind)
    assert (doomed.status, behind.end_reason) == ("queued", "queued, 2 ahead")
    doomed.cancel()
    # ended at once, in this thread: no waiting for the run ahead of it
    assert doomed.done
    assert doomed.status == "cancelled"
    assert "never started" in (doomed.end_reason or "")
    assert not running.done
    assert behind.end_reason == "queued, 1 ahead"
    assert doomed.wait(1)
    assert doomed.n_tokens == 0
    assert doomed.phases() == []
    assert doomed.power_records() == []
    assert doomed.hooked == {}  # its hooks were never attached
    assert running.wait(60)
    assert behind.wait(60)
    assert (running.status, behind.status) == ("completed", "completed")
    src: Any = prof.power
    assert len(src.opened) == 2  # the cancelled run never opened the source
    assert rec_behind.reasons("queued") == ["queued, 2 ahead", "queued, 1 ahead"]
    assert doomed.summary()["output_tokens"] == 0


def test_runs_on_different_models_queue_by_default(smollm_tokenizer: Any) -> None:
    a = _gen(_profiler(tiny_llama(), smollm_tokenizer))
    b = _gen(_profiler(tiny_llama(), smollm_tokenizer))
    assert (b.status, b.end_reason) == ("queued", "queued, 1 ahead")
    assert a.wait(60)
    assert b.wait(60)
    assert b.status == "completed"
    assert not [w for w in a.warnings + b.warnings if "same time" in w]


def test_overlap_true_lets_different_models_run_at_once_and_says_so(
    smollm_tokenizer: Any,
) -> None:
    pa = _profiler(tiny_llama(), smollm_tokenizer, overlap=True, baseline_s=0.5)
    pb = _profiler(tiny_llama(), smollm_tokenizer, overlap=True, baseline_s=0.5)
    a, b = _gen(pa), _gen(pb)
    assert b.status != "queued"
    same = _gen(pa)  # the same model still waits, overlap or not
    assert (same.status, same.end_reason) == ("queued", "queued, 1 ahead")
    assert a.wait(60)
    assert b.wait(60)
    assert same.wait(60)
    sa: Any = pa.power
    sb: Any = pb.power
    assert sb.opened[0] < sa.closed[0]
    assert sa.opened[0] < sb.closed[0]
    assert any(f"same time as run {b.run_id}" in w for w in a.warnings)
    assert any(f"same time as run {a.run_id}" in w for w in b.warnings)
    assert any(f"same time as run {a.run_id}" in w for w in b.summary()["warnings"])


def test_a_models_next_run_goes_to_the_thread_that_ran_it(smollm_tokenizer: Any) -> None:
    """With several threads (after overlapping runs), each model's runs keep to one thread:
    its warm-up and, on CUDA, the thread's own set-up are paid there."""
    pa = _profiler(tiny_llama(), smollm_tokenizer, overlap=True, baseline_s=0.3)
    pb = _profiler(tiny_llama(), smollm_tokenizer, overlap=True, baseline_s=0.3)
    first = [_gen(pa), _gen(pb)]
    recs = [Recorder(r) for r in first]
    assert all(r.wait(60) for r in first)
    threads = [r.thread("completed") for r in recs]
    assert threads[0] != threads[1]  # they overlapped: two threads
    for _ in range(2):
        for prof, thread in ((pb, threads[1]), (pa, threads[0])):
            run = _gen(prof)
            rec = Recorder(run)
            assert run.wait(60)
            assert rec.thread("completed") == thread
            assert run.settings["warmup"]["tokens"] == 0  # warm on its own thread


def test_a_forbidding_profiler_keeps_overlapping_ones_waiting(smollm_tokenizer: Any) -> None:
    free = _profiler(tiny_llama(), smollm_tokenizer, overlap=True)
    strict = _profiler(tiny_llama(), smollm_tokenizer)  # overlap=False
    a, b = _gen(free), _gen(strict)
    assert b.status == "queued"
    assert a.wait(60)
    assert b.wait(60)


def test_a_failed_run_lets_the_next_one_run(smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_llama(), smollm_tokenizer)

    class Boom:
        def __call__(self, *a: Any, **kw: Any) -> Any:
            raise RuntimeError("injected stopping-criterion failure")

    failing = prof.generate(PROMPT, max_new_tokens=4, pad_token_id=0, stopping_criteria=[Boom()])
    after = _gen(prof)
    assert after.status == "queued"
    assert failing.wait(60)
    assert after.wait(60)
    assert failing.status == "failed"
    assert "injected" in (failing.error_message or "")
    assert after.status == "completed"


def test_cancelling_the_running_run_starts_the_next(smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_llama(), smollm_tokenizer, baseline_s=5.0)
    slow = _gen(prof)
    nxt = _gen(prof)
    time.sleep(0.2)
    slow.cancel()  # during its 5 s baseline
    assert nxt.wait(30)
    assert nxt.status == "completed"
    assert slow.status == "cancelled"
    assert slow.end_reason == "cancelled by the user"


@pytest.mark.parametrize("cancel_first", [True, False])
def test_wait_interrupted_on_a_queued_run_cancels_it(
    cancel_first: bool, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (the notebook's interrupt) while waiting on a queued run takes it out of the queue."""
    from llm_energy_widget.notebook import kernel_wait

    prof = _profiler(tiny_llama(), smollm_tokenizer, baseline_s=1.0)
    ahead, queued = _gen(prof), _gen(prof)

    def interrupted(*a: Any, **kw: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(kernel_wait, "wait_processing_kernel_events", interrupted)
    target = queued if cancel_first else ahead
    with pytest.raises(KeyboardInterrupt):
        target.wait()
    monkeypatch.undo()
    assert target.cancel_requested
    assert ahead.wait(60)
    assert queued.wait(60)
    if cancel_first:
        assert queued.status == "cancelled"
        assert "never started" in (queued.end_reason or "")
        assert ahead.status == "completed"
    else:
        assert ahead.status == "cancelled"
        assert queued.status == "completed"


EXIT_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from support.models import tiny_llama
from transformers import AutoTokenizer
import llm_energy_widget as lew
from llm_energy_widget.models import DEFAULT_GGUF, default_model_dir
tok = AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF)
prof = lew.EnergyProfiler(tiny_llama(), tok, power="estimate", baseline_s=60, store={store!r})
a = prof.generate("Hi", max_new_tokens=4)
b = prof.generate("Hi", max_new_tokens=4)
time.sleep(0.5)
print("at exit:", a.status, b.status, flush=True)
"""


def test_exit_cancels_running_and_queued_runs_and_exits_cleanly(tmp_path: Any) -> None:
    """A script that ends while a run is going (here in a 60 s baseline) and another waits: the
    process exits at once with status 0, the running run is stored as cancelled."""
    import subprocess
    import sys
    from pathlib import Path

    from llm_energy_widget.store import Store

    store = tmp_path / "runs.sqlite"
    tests = str(Path(__file__).resolve().parents[1])
    script = EXIT_SCRIPT.format(tests=tests, store=str(store))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "at exit: running queued" in proc.stdout
    assert time.monotonic() - t0 < 60  # the baseline was cut short, not waited out
    s = Store(store, read_only=True)
    try:
        df = s.runs()
    finally:
        s.close()
    assert list(df["status"]) == ["cancelled"]  # the queued run never started: not stored
