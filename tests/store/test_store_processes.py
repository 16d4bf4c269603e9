"""Several processes writing at once, and a writer killed with SIGKILL half-way."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from llm_energy_widget.store import Store

REPO = Path(__file__).resolve().parents[2]

PLAY = """
import sys, time
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.store import Store
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events
store = Store(sys.argv[1])
run = new_synthetic_run(n_layers=3)
store.record(run)
Recorder(run).status("running")
print(run.run_id, flush=True)
n = 0
for name, args in synthetic_events(n_tokens=40, n_layers=3):
    apply_event(run, name, args)
    if name == "token":
        n += 1
        if n == 20:
            print("half", flush=True)
    time.sleep(0.01)
Recorder(run).finish("completed", "should never get here")
"""


def test_run_killed_half_way_is_incomplete_with_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAY, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "half"
    time.sleep(0.3)  # the writer commits at least every 100 ms
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    store = Store(path)
    run = store.load(run_id)
    assert run.status == "incomplete"
    assert 20 <= run.n_tokens < 40
    assert run.layers.shape[0] >= 20
    assert len(run.power_records()) > 0
    row = store.runs().set_index("run_id").loc[run_id]
    assert row["status"] == "incomplete"
    assert row["output_tokens"] == run.n_tokens
    assert "crash or kill" in row["end_reason"]


def _write_runs(path: str, n_runs: int, seed: int) -> None:
    from llm_energy_widget.testing import synthetic_run

    store = Store(path)
    for i in range(n_runs):
        run = synthetic_run(n_tokens=12, n_layers=4, seed=seed * 100 + i)
        store.save(run, timeout=60)


def test_concurrent_processes_do_not_corrupt(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.sqlite")
    Store(path).close()  # created once; the writers race on everything else
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_runs, args=(path, 5, s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(path)
    df = store.runs()
    assert len(df) == 15
    assert set(df["status"]) == {"completed"}
    assert all(store.load(rid).n_tokens == 12 for rid in df["run_id"])
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
