"""sweep() on executors: thread pools, process pools, Dask (and Ray where it imports).

A tiny random Llama (hidden 32, 2 layers) with the SmolLM2 tokenizer is saved into a temp folder,
so worker processes load it by path. One process pool and one Dask LocalCluster serve the whole
module (torch's import makes each worker process take seconds to start).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama

from llm_energy_widget.analysis import sweep
from llm_energy_widget.analysis import sweep_workers as workers
from llm_energy_widget.analysis.sweep import SweepWarning, flag_concurrent_runs
from llm_energy_widget.errors import RunError
from llm_energy_widget.store import Store

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.allow_threads(
    "the module's process pool and Dask client keep their threads until the module ends"
)

PROMPT = "The quick brown fox"
# what a worker imports to load and profile the model (transformers imports its parts lazily)
PRELOAD = [
    "torch",
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.llama.modeling_llama",
    "llm_energy_widget.models",
    "llm_energy_widget.profiler",
    "llm_energy_widget.analysis.sweep_workers",
]
FAST: dict[str, Any] = {"power": "estimate", "level": "token", "baseline_s": 0.0}


@pytest.fixture(scope="module")
def power_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own power-counter lock file (other test runs on the machine keep theirs);
    set before any worker process starts, so they inherit it."""
    path = str(tmp_path_factory.mktemp("lock") / "power.lock")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(workers.POWER_LOCK_ENV, path)
        yield path


@pytest.fixture(scope="module")
def saved(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """(folder, model): the tiny Llama and its tokenizer saved with save_pretrained."""
    tok = smollm_tokenizer
    model = tiny_llama(vocab_size=len(tok), max_positions=2048, heads=2, kv_heads=1)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def forkserver(power_lock: str) -> Any:
    """Worker processes forked from one server that has imported torch and the package once
    (a fresh process, so no torch threads are forked), instead of each importing them: this
    module's process pool and Dask workers start in a fraction of the time."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@pytest.fixture(scope="module")
def pool(forkserver: Any) -> Iterator[ProcessPoolExecutor]:
    # not fork: forking this process, which has torch's thread pools running, can hang
    with ProcessPoolExecutor(2, mp_context=forkserver) as ex:
        yield ex


@pytest.fixture(scope="module")
def dask_client(forkserver: Any, pool: ProcessPoolExecutor) -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    import dask

    pool.submit(os.getpid).result()  # the forkserver runs, with its preloads, before Dask's
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def spans(runs: list[Any]) -> list[tuple[float, float, int]]:
    return [
        (
            r.settings["sweep_worker"]["start_unix_s"],
            r.settings["sweep_worker"]["end_unix_s"],
            r.settings["sweep_worker"]["pid"],
        )
        for r in runs
    ]


def overlapping(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    return min(a[1], b[1]) > max(a[0], b[0])


def same_time(run: Any) -> bool:
    return any("ran at the same time" in w for w in run.warnings)


def stored(path: Path, experiment: str) -> set[str]:
    with Store(path) as db:
        return set(db.runs(experiment=experiment)["run_id"])


@pytest.mark.parametrize("overlap", [False, True])
def test_threads_on_one_model_object_serialize(
    saved: tuple[Path, Any], smollm_tokenizer: Any, tmp_path: Path, overlap: bool, power_lock: str
) -> None:
    """(1) Was: every point but one failed with ConcurrentRunError. Each point gets its run, and
    the runs take turns on the shared model, even with overlap allowed."""
    _, model = saved
    db = tmp_path / "runs.sqlite"
    with ThreadPoolExecutor(4) as ex:
        c = sweep((model, smollm_tokenizer), PROMPT, {"max_new_tokens": [2, 3, 4, 5]},
                  executor=ex, experiment="threads", store=db, overlap=overlap, progress=False,
                  **FAST)  # fmt: skip
    assert len(c.runs) == 4
    assert not c.notes
    assert c.failures == []
    assert {r.status for r in c.runs} == {"completed"}
    assert stored(db, "threads") == {r.run_id for r in c.runs}
    assert not any(overlapping(a, b) for a, b in itertools.combinations(spans(c.runs), 2))
    assert not any(same_time(r) or "concurrent_runs" in r.settings for r in c.runs), [
        r.warnings for r in c.runs
    ]


def test_threads_load_a_model_path_once(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, power_lock: str
) -> None:
    """(2) Was: two threads loaded at once, once giving random embeddings. One load, the saved
    weights."""
    from llm_energy_widget import models

    folder, model = saved
    real = models.load_model
    loads, inside, most = [0], [0], [0]
    guard = threading.Lock()

    def counting(*args: Any, **kwargs: Any) -> Any:
        with guard:
            loads[0] += 1
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.2)  # a slow load: the other thread arrives while it goes
            return real(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(models, "load_model", counting)
    workers.clear_loaded()
    with ThreadPoolExecutor(2) as ex:
        c = sweep(str(folder), PROMPT, {"max_new_tokens": [2, 3, 4, 5]}, executor=ex,
                  store=False, progress=False, **FAST)  # fmt: skip
    assert len(c.runs) == 4
    assert not c.notes
    assert loads[0] == 1
    assert most[0] == 1
    loaded, _ = workers._load(str(folder), None, None)  # the cached copy: no second load
    assert loads[0] == 1
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)
    workers.clear_loaded()


def test_process_pool_runs_come_back_to_one_store(
    saved: tuple[Path, Any], pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    """(3) Runs of worker processes are stored by the driver; by default they take turns on the
    machine's power counters; with overlap allowed, the overlapping ones are flagged."""
    folder, _ = saved
    db = tmp_path / "runs.sqlite"
    grid = {"max_new_tokens": [8, 9, 10, 11]}
    c = sweep(str(folder), PROMPT, grid, executor=pool, experiment="procs", store=db,
              progress=False, **FAST)  # fmt: skip
    assert len(c.runs) == 4
    assert not c.notes
    assert stored(db, "procs") == {r.run_id for r in c.runs}
    assert not any(overlapping(a, b) for a, b in itertools.combinations(spans(c.runs), 2))
    assert not any(same_time(r) or "concurrent_runs" in r.settings for r in c.runs)

    # both workers are up and hold the model now, so their first points start together
    c = sweep(str(folder), PROMPT, grid, executor=pool, experiment="procs-overlap", store=db,
              overlap=True, progress=False, **FAST)  # fmt: skip
    assert stored(db, "procs-overlap") == {r.run_id for r in c.runs}
    pairs = {
        frozenset((a.run_id, b.run_id))
        for (a, sa), (b, sb) in itertools.combinations(zip(c.runs, spans(c.runs), strict=True), 2)
        if sa[2] != sb[2] and overlapping(sa, sb)
    }
    assert pairs, f"no two runs overlapped: {spans(c.runs)}"
    with Store(db) as store:
        for r in c.runs:
            others = {p for pair in pairs if r.run_id in pair for p in pair} - {r.run_id}
            flagged = {x["run_id"] for x in r.settings.get("concurrent_runs", [])}
            assert flagged == others
            assert sum("ran at the same time as run" in w for w in r.warnings) == len(others)
            back = store.load(r.run_id)  # stored with the flags
            assert back.settings.get("concurrent_runs", []) == r.settings.get("concurrent_runs", [])
            assert back.warnings == r.warnings


def test_dask_local_cluster(
    saved: tuple[Path, Any], dask_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(4) Dask workers (processes): four runs in the driver's store, progress on stderr."""
    folder, _ = saved
    db = tmp_path / "runs.sqlite"
    c = sweep(str(folder), PROMPT, {"max_new_tokens": [2, 3, 4, 5]}, executor=dask_client,
              experiment="dask", store=db, progress=True, **FAST)  # fmt: skip
    assert len(c.runs) == 4
    assert not c.notes
    assert stored(db, "dask") == {r.run_id for r in c.runs}
    assert {r.settings["sweep_worker"]["pid"] for r in c.runs} <= set(
        dask_client.run(os.getpid).values()
    )
    err = capsys.readouterr().err
    assert "sweep dask: 0/4 points done" in err
    assert "sweep dask: 4/4 points done" in err
    assert "ETA" in err


def test_a_failing_point_is_reported(
    saved: tuple[Path, Any], pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    """(5) A bad prompt (longer than the model's context) fails in a worker process: it is
    reported, never swallowed."""
    folder, _ = saved
    db = tmp_path / "runs.sqlite"
    prompts = [PROMPT, "word " * 3000]
    with pytest.warns(SweepWarning, match="1 of 2 sweep points failed"):
        c = sweep(str(folder), prompts, {"max_new_tokens": 2}, executor=pool, experiment="bad",
                  store=db, progress=False, **FAST)  # fmt: skip
    assert len(c.runs) == 1
    assert c.notes[0] == "1 of 2 sweep points failed"
    (failure,) = c.failures
    assert failure["index"] == 1
    assert "longer than the model's context" in failure["error"]
    assert stored(db, "bad") == {c.runs[0].run_id}
    with pytest.raises(RunError, match=r"1 of 2 sweep points failed.*context"):
        sweep(str(folder), prompts, {"max_new_tokens": 2}, executor=pool, store=False,
              on_error="raise", progress=False, **FAST)  # fmt: skip
    with pytest.raises(RunError, match="every sweep point failed"):
        sweep(str(folder), prompts[1:], {"max_new_tokens": 2}, executor=pool, store=False,
              progress=False, **FAST)  # fmt: skip


def test_flag_concurrent_runs_by_hand() -> None:
    """Overlap worked out by hand: [0, 2] and [1, 4] share 1 s; [5, 6] shares none; another host
    or another power source, or the same process ([0, 0.9] of pid 1 with a), is never flagged."""
    from llm_energy_widget.run import Run

    def run(rid: str, t0: float, t1: float, pid: int, host: str = "h", src: str = "rapl") -> Run:
        r = Run(run_id=rid, power={"source": src})
        r.settings["sweep_worker"] = {"host": host, "pid": pid, "start_unix_s": t0,
                                      "end_unix_s": t1}  # fmt: skip
        return r

    a, b, c = run("a", 0, 2, 1), run("b", 1, 4, 2), run("c", 5, 6, 3)
    d, e, f = run("d", 0, 4, 4, host="other"), run("e", 0, 4, 5, src="nvml"), run("f", 0, 0.9, 1)
    assert flag_concurrent_runs([a, b, c, d, e, f]) == 1
    assert a.settings["concurrent_runs"] == [{"run_id": "b", "pid": 2, "overlap_s": 1.0}]
    assert b.settings["concurrent_runs"] == [{"run_id": "a", "pid": 1, "overlap_s": 1.0}]
    assert "for 1.00 s of its 2.00 s" in a.warnings[0]
    assert "for 1.00 s of its 3.00 s" in b.warnings[0]
    assert not any(same_time(x) or "concurrent_runs" in x.settings for x in (c, d, e, f))


@pytest.mark.skipif(
    not os.environ.get("LLM_ENERGY_TEST_RAY"),
    reason="Ray's start-up (its workers each import torch) took 60 s on the 2-core machine; "
    "LLM_ENERGY_TEST_RAY=1 runs it",
)
def test_ray(saved: tuple[Path, Any], tmp_path: Path, power_lock: str) -> None:
    """Ray's tasks, through RayExecutor: the runs come back to the driver's store."""
    ray = pytest.importorskip("ray")
    folder, _ = saved
    db = tmp_path / "runs.sqlite"
    env = {workers.POWER_LOCK_ENV: power_lock, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})  # fmt: skip
    try:
        c = sweep(str(folder), PROMPT, {"max_new_tokens": [2, 3]}, executor=workers.RayExecutor(),
                  experiment="ray", store=db, progress=False, **FAST)  # fmt: skip
    finally:
        ray.shutdown()
    assert len(c.runs) == 2
    assert not c.notes
    assert stored(db, "ray") == {r.run_id for r in c.runs}
