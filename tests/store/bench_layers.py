"""Size and speed of two layouts for 1,000 tokens x 30 layers x 9 components x 6 metrics.

Run: .venv/bin/python tests/store/bench_layers.py  (not collected by pytest: no test_ prefix)
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time

import numpy as np

N_TOKENS, N_LAYERS, N_COMP, N_METRICS = 1000, 30, 9, 6


def _db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def bench_blob(rows: np.ndarray, path: str) -> tuple[float, float, int]:
    conn = _db(path)
    conn.execute(
        "CREATE TABLE layers (run_id TEXT, idx INTEGER, values_f32 BLOB, PRIMARY KEY (run_id, idx))"
    )
    t0 = time.perf_counter()
    for start in range(0, N_TOKENS, 10):  # batches like the writer's (≈10 tokens / 100 ms)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO layers VALUES (?, ?, ?)",
            [("r", i, rows[i].tobytes()) for i in range(start, start + 10)],
        )
        conn.execute("COMMIT")
    write_s = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    t0 = time.perf_counter()
    got = [
        np.frombuffer(b, dtype=np.float32).reshape(N_LAYERS, N_COMP, N_METRICS)
        for (b,) in conn.execute("SELECT values_f32 FROM layers WHERE run_id='r' ORDER BY idx")
    ]
    arr = np.stack(got)
    read_s = time.perf_counter() - t0
    assert np.allclose(arr, rows)
    conn.close()
    return write_s, read_s, os.path.getsize(path)


def bench_long(rows: np.ndarray, path: str) -> tuple[float, float, int]:
    conn = _db(path)
    conn.execute(
        "CREATE TABLE layers (run_id TEXT, idx INTEGER, layer INTEGER, comp INTEGER, "
        "time_ms REAL, energy_j REAL, act_mean REAL, act_std REAL, act_max REAL, sparsity REAL, "
        "PRIMARY KEY (run_id, idx, layer, comp)) WITHOUT ROWID"
    )
    li, ci = np.meshgrid(np.arange(N_LAYERS), np.arange(N_COMP), indexing="ij")
    t0 = time.perf_counter()
    for start in range(0, N_TOKENS, 10):
        conn.execute("BEGIN")
        batch: list[tuple[object, ...]] = []
        for i in range(start, start + 10):
            flat = rows[i].reshape(-1, N_METRICS).astype(float).tolist()
            batch.extend(
                ("r", i, int(layer), int(comp), *m)
                for layer, comp, m in zip(li.ravel(), ci.ravel(), flat, strict=True)
            )
        conn.executemany("INSERT INTO layers VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
        conn.execute("COMMIT")
    write_s = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    t0 = time.perf_counter()
    data = conn.execute(
        "SELECT time_ms, energy_j, act_mean, act_std, act_max, sparsity FROM layers "
        "WHERE run_id='r' ORDER BY idx, layer, comp"
    ).fetchall()
    arr = np.asarray(data, dtype=np.float32).reshape(N_TOKENS, N_LAYERS, N_COMP, N_METRICS)
    read_s = time.perf_counter() - t0
    assert np.allclose(arr, rows)
    conn.close()
    return write_s, read_s, os.path.getsize(path)


def main() -> None:
    rows = np.random.default_rng(0).random((N_TOKENS, N_LAYERS, N_COMP, N_METRICS), np.float32)
    with tempfile.TemporaryDirectory() as d:
        for name, fn in (("blob float32", bench_blob), ("long table", bench_long)):
            w, r, size = fn(rows, os.path.join(d, f"{name}.sqlite"))
            print(
                f"{name:13s} write {w * 1e3:8.1f} ms  load {r * 1e3:8.1f} ms  {size / 1e6:6.1f} MB"
            )


if __name__ == "__main__":
    main()
