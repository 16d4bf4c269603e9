"""Several writer processes and polling readers at once: every run is stored (issue 14, point 1).

Each writer process does what `EnergyProfiler.generate` does for every run: a new `Store(path)`
(`resolve_store`), `store.record(run)`, then the run's events arrive while the previous run's
writer thread may still be committing. Readers open the store and list it in a loop, as
`llm-energy runs` invocations do. Closing any file descriptor of the database file drops all of a
process's POSIX locks on it, so a store that reads the file outside SQLite loses runs here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import json, sys, time
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.store import Store
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events
path, n_runs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started, refused = [], []
for i in range(n_runs):
    run = new_synthetic_run(n_layers=2)
    try:
        store = Store(path)  # as generate() does for every run (resolve_store)
        writer = store.record(run)
    except Exception as exc:  # generate() would raise: the run is lost
        refused.append({"run_id": run.run_id, "error": repr(exc), "store_error": None})
        continue
    Recorder(run).status("running")
    for name, args in synthetic_events(n_tokens=10, n_layers=2, seed=seed * 100 + i):
        apply_event(run, name, args)
        time.sleep(0.01)
    Recorder(run).finish("completed", "done")
    started.append((run, writer))
for run, writer in started:
    writer.wait(60)
    print(json.dumps({"run_id": run.run_id, "error": repr(writer.error) if writer.error else None,
                      "store_error": getattr(run, "store_error", None),
                      "retries": getattr(writer, "retries", 0)}), flush=True)
for r in refused:
    print(json.dumps(r), flush=True)
"""

READER = """
import sys, time
from pathlib import Path
from llm_energy_widget.store import Store
path, stop = sys.argv[1], Path(sys.argv[2])
polls, errors = 0, []
while not stop.exists():
    try:
        store = Store(path)  # a fresh open per poll, as each `llm-energy runs` call does
        df = store.runs()
        if len(df):
            store.load(df["run_id"].iloc[0])
        store.close()
        polls += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.005)
print(polls, len(errors), errors[:3], flush=True)
"""


def test_concurrent_writers_and_readers_store_every_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    stop = tmp_path / "stop"
    Store(path).close()  # readers need the file to exist
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    n_writers, n_runs = 3, 8
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(path), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(n_runs), str(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for s in range(n_writers)
    ]
    reports = []
    t0 = time.monotonic()
    try:
        for w in writers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            reports += [json.loads(line) for line in out.splitlines() if line.strip()]
    finally:
        stop.touch()
        for w in writers:
            if w.poll() is None:
                w.kill()
        reader_out = [r.communicate(timeout=30)[0] for r in readers]
    elapsed = time.monotonic() - t0
    assert len(reports) == n_writers * n_runs
    failed = [r for r in reports if r["error"] or r["store_error"]]
    store = Store(path, read_only=True)
    stored = set(store.ids())
    whole = [
        r["run_id"]
        for r in reports
        if r["run_id"] in stored
        and (run := store.load(r["run_id"])).n_tokens == 10
        and run.status == "completed"
    ]
    store.close()
    why = (
        f"{len(whole)}/{len(reports)} runs stored whole; {len(stored)} rows; "
        f"writer failures: {failed[:3]}"
    )
    assert len(whole) == len(reports), why
    assert not failed, why
    for out in reader_out:
        polls, n_errors = out.split()[:2]
        assert int(polls) > 0, out
        assert int(n_errors) == 0, out
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert elapsed < 40
    retries = sum(r.get("retries", 0) for r in reports)
    print(f"{len(reports)} runs in {elapsed:.1f} s, {retries} retries")


def _our_locks(path: Path) -> list[str]:
    """This process's POSIX locks on `path`'s inode, from /proc/locks."""
    ino = os.stat(path).st_ino
    pid = str(os.getpid())
    return [
        " ".join(f[1:])
        for f in (line.split() for line in Path("/proc/locks").read_text().splitlines())
        if len(f) > 5 and f[4] == pid and f[5].endswith(f":{ino}")
    ]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_opening_the_store_keeps_the_process_locks(tmp_path: Path) -> None:
    """The root cause of lost runs: closing any descriptor of the file drops this process's
    SQLite locks on it. Opening, probing and writing must go through SQLite only."""
    path = tmp_path / "runs.sqlite"
    Store(path).close()
    holder = sqlite3.connect(path)  # a WAL connection keeps a shared lock on the file
    holder.execute("SELECT count(*) FROM runs").fetchone()
    held = _our_locks(path)
    assert held
    Store(path).close()
    Store(path, read_only=True).close()
    Store(path, create=False).save(synthetic_run(n_tokens=2))
    assert _our_locks(path) == held
    holder.close()


def _flaky_commit(monkeypatch: pytest.MonkeyPatch, failures: int | None) -> list[int]:
    """Make RunWriter._commit fail like a lost lock does, `failures` times (None: always)."""
    from llm_energy_widget.store import writer as writer_mod

    calls = [0]
    real = writer_mod.RunWriter._commit

    def commit(self: Any, conn: sqlite3.Connection, ops: tuple[Any, ...]) -> None:
        calls[0] += 1
        if failures is None or calls[0] <= failures:
            raise sqlite3.OperationalError("disk I/O error")
        real(self, conn, ops)

    monkeypatch.setattr(writer_mod.RunWriter, "_commit", commit)
    monkeypatch.setattr(writer_mod, "RETRY_BASE_S", 0.001)
    return calls


def test_a_failed_write_is_retried_on_a_new_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "runs.sqlite")
    _flaky_commit(monkeypatch, failures=2)
    run = synthetic_run(n_tokens=6)
    writer = store.record(run)
    assert writer.wait(10)
    assert writer.error is None
    assert writer.retries == 2
    assert run.store_error is None
    assert store.load(run.run_id).n_tokens == 6


def test_a_run_that_cannot_be_stored_says_so_and_the_next_one_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_energy_widget.store import Store
    from llm_energy_widget.store import writer as writer_mod

    path = tmp_path / "runs.sqlite"
    store = Store(path)
    real = writer_mod.RunWriter._commit
    calls = _flaky_commit(monkeypatch, failures=None)
    run = synthetic_run(n_tokens=6)
    events: list[tuple[str, Any]] = []
    run.subscribe(lambda e, p: events.append((e, p)))
    writer = store.record(run)
    assert writer.wait(10)
    assert calls[0] == writer_mod.RETRIES + 1  # bounded
    assert writer.error is not None
    msg = run.store_error
    assert msg
    assert str(path) in msg
    assert "disk I/O error" in msg
    assert run.run_id in msg
    assert msg in run.warnings
    assert ("store_error", {"message": msg, "path": str(path)}) in events

    monkeypatch.setattr(writer_mod.RunWriter, "_commit", real)  # the disk is back
    nxt = synthetic_run(n_tokens=3)
    w2 = store.record(nxt)
    assert w2.wait(10)
    assert w2.error is None
    assert nxt.store_error is None
    assert store.load(nxt.run_id).n_tokens == 3
