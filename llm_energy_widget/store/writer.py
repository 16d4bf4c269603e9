"""Incremental persistence of a live Run: events go through a queue to a writer thread.

The generation thread only copies the payload into a queue (microseconds); the writer thread
commits what arrived in short transactions at most every `flush_ms`, so a crash or `kill -9` loses
at most that window and leaves the run with status `running`, which the next open marks
`incomplete`.

A batch that fails (I/O error, lost lock, busy) is written again on a fresh connection, up to
`RETRIES` times with doubling waits; every statement of a batch is idempotent (INSERT OR REPLACE
by key, UPDATE to a value), so a retry after a half-known outcome stores the same thing. Before
each batch the path is checked (os.stat, which opens nothing) against the file the connection
has open: a store deleted or replaced mid-run is reported, not written into the void. A run that
could not be stored says so on the run itself (`run.warnings`, `run.store_error`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import queue
import random
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import own_threads
from ..core.recorder import Recorder
from ..core.run import now_iso
from ..errors import StoreError
from ..run import Run
from .codec import dumps, layer_blob, num
from .db import connect_rw, file_identity, is_retryable, store_errors, transaction

__all__ = ["FLUSH_MS", "RETRIES", "RETRY_BASE_S", "RunWriter", "pid_alive"]

log = logging.getLogger(__name__)

FLUSH_MS = 100.0
WRITER_NICE = 10  # added to the writer thread's nice value (Linux), as the reducer's
RETRIES = 5
RETRY_BASE_S = 0.05  # waits 0.05, 0.1, 0.2, 0.4, 0.8 s (+ up to 50 % jitter): ~1.5-2.3 s in all
_WRITERS: weakref.WeakSet[RunWriter] = weakref.WeakSet()
_STOP: tuple[str, dict[str, Any]] = ("__stop__", {})


class RunWriter:
    """Persists one run: subscribe (with replay) now, write from a background thread."""

    def __init__(
        self,
        path: Path,
        run: Run,
        flush_ms: float = FLUSH_MS,
        identity: tuple[int, int] | None = None,
    ) -> None:
        """`identity`: (st_dev, st_ino) of the store file as its Store opened it; the writer
        then never creates a file at `path` (one deleted meanwhile is reported instead)."""
        self.path = path
        self.run = run
        self.flush_ms = flush_ms
        self.error: BaseException | None = None
        self.retries = 0  # writes tried again after a failure (for tests and diagnostics)
        self._conn: sqlite3.Connection | None = None
        self._identity = identity
        run.store_error = None  # this writer's outcome, None = fine
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._power_seq = 0
        self._phase_seq = 0
        self._open_phases: dict[str, list[int]] = {}
        self._unsubscribe = run.subscribe(self._on_event, replay=True)
        self._thread = threading.Thread(
            target=self._loop, name=f"llm-energy-store-{run.run_id}", daemon=True
        )
        _WRITERS.add(self)
        self._thread.start()

    # -- producer side: called from the run's threads, must stay cheap -----------------------------
    def _on_event(self, event: str, payload: dict[str, Any]) -> None:
        if event == "layers":
            payload = {"index": payload["index"], "blob": layer_blob(payload["values"])}
        self._queue.put((event, payload))

    # -- control ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run's `done` is written; True if it was within `timeout` seconds."""
        return self._finished.wait(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Write what is queued and stop (the run, if still going, stays `running` in the store)."""
        self._unsubscribe()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- writer thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        own_threads.register_current("store")  # its CPU is the profiler's, not the model's
        own_threads.lower_priority(WRITER_NICE)  # it has slack; the generating thread has none
        try:
            self._attempt(self._insert_run)
            done = False
            while not done:
                batch = self._next_batch()
                done = any(e in ("done", _STOP[0]) for e, _ in batch)
                self._attempt(functools.partial(self._commit, ops=self._prepare(batch)))
        except BaseException as exc:  # the run goes on; the failure is kept and shown on it
            self.error = exc
            self._report(exc)
        finally:
            self._unsubscribe()
            self._close_conn()
            own_threads.unregister_current()
            self._finished.set()

    def _attempt(self, write: Callable[[sqlite3.Connection], None]) -> None:
        """`write(conn)` in a transaction; on a failure a fresh connection may not have, again."""
        delay = RETRY_BASE_S
        for attempt in range(RETRIES + 1):
            try:
                if self._conn is None:
                    self._check_same_file()
                    self._conn = connect_rw(self.path, create=self._identity is None)
                    if self._identity is None:
                        self._identity = file_identity(self.path)
                self._check_same_file()
                with store_errors(self.path, f"write run {self.run.run_id}"):
                    write(self._conn)
                return
            except StoreError as exc:
                if attempt == RETRIES or not is_retryable(exc):
                    raise
                self.retries += 1
                log.warning(
                    "run store %s: writing run %s failed (%s); retrying on a new connection",
                    self.path, self.run.run_id, exc,
                )  # fmt: skip
                self._close_conn()
                time.sleep(delay * (1 + 0.5 * random.random()))
                delay *= 2

    def _check_same_file(self) -> None:
        if self._identity is None:
            return
        now = file_identity(self.path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreError(f"run store {self.path} was {what} while run {self.run.run_id} ran")

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _report(self, exc: BaseException) -> None:
        """Say on the run that it is not (fully) stored, so the widget and the CLI can show it."""
        run = self.run
        msg = (
            f"run {run.run_id} could not be stored in the run store {self.path}: {exc}. "
            "It is kept in memory only; once it has finished, save it with Store(path).save(run) "
            "or export it."
        )
        log.error("%s", msg)
        Recorder(run).store_error(msg, str(self.path))

    def _next_batch(self) -> list[tuple[str, dict[str, Any]]]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.flush_ms / 1000.0
        while batch[-1][0] not in ("done", _STOP[0]):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _insert_run(self, conn: sqlite3.Connection) -> None:
        run = self.run
        with transaction(conn):
            # Saving a run again (e.g. one loaded from a JSON file) replaces it whole.
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            conn.execute(
                "INSERT INTO runs (run_id, created_at, updated_at, status, writer_pid, writer_host)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, run.created_at, now_iso(), run.status, os.getpid(), _host()),
            )
            self._update_run_row(conn)

    def _prepare(self, batch: list[tuple[str, dict[str, Any]]]) -> tuple[Any, ...]:
        """The rows of a batch, numbered once (so writing them again stores the same rows)."""
        rid = self.run.run_id
        power_rows, token_rows, energy_rows = [], [], []
        layer_rows: dict[int, bytes] = {}
        phase_ops: list[tuple[str, tuple[Any, ...]]] = []
        summary: dict[str, Any] | None = None
        for event, p in batch:
            if event == "power":
                power_rows.append(
                    (rid, self._power_seq, float(p["t_ms"]), num(p.get("cpu_w")),
                     num(p.get("gpu_w")), num(p.get("ane_w")), num(p.get("dram_w")),
                     num(p.get("total_w")), num(p.get("energy_j")), p.get("phase"),
                     dumps(p["rails"]) if p.get("rails") else None)
                )  # fmt: skip
                self._power_seq += 1
            elif event == "phase":
                phase_ops.extend(self._phase_op(p))
            elif event == "token":
                token_rows.append(
                    (rid, p["index"], p["token_id"], p["text"], p["phase"], p["start_ms"],
                     p["end_ms"], p.get("instrumented"), int(p.get("sequence") or 0))
                )  # fmt: skip
            elif event == "token_energy":
                energy_rows.append((num(p["energy_j"]), rid, p["index"]))
            elif event == "layers":
                layer_rows[p["index"]] = p["blob"]  # later rows of a token replace earlier ones
            elif event == "done":
                summary = p
        return power_rows, token_rows, energy_rows, layer_rows, phase_ops, summary

    def _commit(self, conn: sqlite3.Connection, ops: tuple[Any, ...]) -> None:
        rid = self.run.run_id
        power_rows, token_rows, energy_rows, layer_rows, phase_ops, summary = ops
        with transaction(conn):
            if power_rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO power (run_id, seq, t_ms, cpu_w, gpu_w, ane_w, dram_w,"
                    " total_w, energy_j, phase, rails_json)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    power_rows,
                )
            for sql, args in phase_ops:
                conn.execute(sql, args)
            if token_rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO tokens (run_id, idx, token_id, text, phase, start_ms,"
                    " end_ms, instrumented, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    token_rows,
                )
            if energy_rows:
                conn.executemany(
                    "UPDATE tokens SET energy_j = ? WHERE run_id = ? AND idx = ?", energy_rows
                )
            if layer_rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO layers (run_id, idx, values_f32) VALUES (?, ?, ?)",
                    [(rid, i, b) for i, b in layer_rows.items()],
                )
            self._update_run_row(conn, summary=summary)

    def _phase_op(self, p: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
        rid = self.run.run_id
        if p.get("state") == "start" or p.get("end_ms") is None:
            seq = self._phase_seq
            self._phase_seq += 1
            self._open_phases.setdefault(p["name"], []).append(seq)
            return [
                (
                    "INSERT OR REPLACE INTO phases VALUES (?, ?, ?, ?, ?)",
                    (rid, seq, p["name"], p["start_ms"], p.get("end_ms")),
                )
            ]
        open_seqs = self._open_phases.get(p["name"])
        if open_seqs:  # the most recent open phase of that name, as Run does
            seq = open_seqs.pop()
            return [
                (
                    "UPDATE phases SET end_ms = ? WHERE run_id = ? AND seq = ?",
                    (p["end_ms"], rid, seq),
                )
            ]
        seq = self._phase_seq  # replayed closed phase
        self._phase_seq += 1
        return [
            (
                "INSERT OR REPLACE INTO phases VALUES (?, ?, ?, ?, ?)",
                (rid, seq, p["name"], p["start_ms"], p["end_ms"]),
            )
        ]

    def _update_run_row(
        self, conn: sqlite3.Connection, summary: dict[str, Any] | None = None
    ) -> None:
        """Run-level fields change without events (prompt_tokens, response, hooks): copy them."""
        run = self.run
        with run._lock:
            fields: dict[str, Any] = {
                "updated_at": now_iso(),
                "status": run.status,
                "end_reason": run.end_reason,
                "error": run.error_message,
                "model_name": run.model.get("name"),
                "model_json": dumps(run.model),
                "prompt": run.prompt,
                "prompt_tokens": int(run.prompt_tokens),
                "response": run.response_text,
                "texts_json": dumps(run.sequence_texts),
                "settings_json": dumps(run.settings),
                "level": run.level,
                "tags_json": dumps(run.tags),
                "experiment": run.experiment,
                "power_json": dumps(run.power_info),
                "baseline_w": num(run.baseline_w),
                "warnings_json": dumps(run.warnings),
                "hooked_json": dumps(run.hooked),
                "layer_names_json": dumps(run.layer_names),
                "component_names_json": dumps(run.component_names),
                "metric_names_json": dumps(run.metric_names),
                "n_tokens": run.n_tokens,
            }
            tags = list(run.tags)
            texts = list(run._tokens["text"]) if summary is not None else []
            if summary is not None:
                fields["summary_json"] = dumps(summary)
                fields["extras_json"] = dumps(run.extras)
        sets = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*fields.values(), run.run_id))
        conn.execute("DELETE FROM run_tags WHERE run_id = ?", (run.run_id,))
        conn.executemany(
            "INSERT OR IGNORE INTO run_tags VALUES (?, ?)", [(run.run_id, t) for t in tags]
        )
        if texts:  # late detokenization may have changed texts without an event
            conn.executemany(
                "UPDATE tokens SET text = ? WHERE run_id = ? AND idx = ?",
                [(t, run.run_id, i) for i, t in enumerate(texts)],
            )


def _host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs here (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@atexit.register
def _flush_all() -> None:
    """At interpreter exit, write what is queued; unfinished runs stay `running` -> incomplete."""
    for w in list(_WRITERS):
        if not w.finished:
            w.close(timeout=2.0)
