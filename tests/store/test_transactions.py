"""The store's one transaction helper, and `run_records` reading all runs in one query."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.store import Store, schema
from llm_energy_widget.store.db import connect_rw, transaction
from llm_energy_widget.store.schema import SCHEMA_VERSION
from llm_energy_widget.testing import synthetic_run

# -- run_records: a constant number of statements ------------------------------------------------


def _fill(store: Store, n: int) -> list[dict[str, Any]]:
    """Save `n` small runs with known values; what run_records must give, newest first."""
    expected = []
    for i in range(n):
        run = synthetic_run(n_tokens=1 + i % 4, n_layers=1)
        run.run_id = f"run{i:03d}"
        run.created_at = f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000+00:00"
        run.tags = [f"tag{i % 3}"]
        run.experiment = f"exp{i % 2}"
        run.model = {"name": f"model-{i % 5}"}
        run.prompt = f"prompt {i}"
        store.save(run)
        expected.append(
            {
                "run_id": run.run_id,
                "created_at": run.created_at,
                "model": f"model-{i % 5}",
                "prompt": f"prompt {i}",
                "status": "completed",
                "end_reason": "synthetic run complete",
                "experiment": f"exp{i % 2}",
                "tags": [f"tag{i % 3}"],
                "n_tokens": 1 + i % 4,
                "level": "component",
                "power_source": "synthetic",
                "power_kind": "modeled",
                "settings": {},
                "output_tokens": 1 + i % 4,
            }
        )
    return expected[::-1]


def _traced(store: Store, **filters: Any) -> tuple[list[dict[str, Any]], list[str]]:
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        records = store.run_records(**filters)
    finally:
        store._conn.set_trace_callback(None)
    return records, statements


def _check(records: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["run_id"] for r in records] == [e["run_id"] for e in expected]  # newest first
    for rec, exp in zip(records, expected, strict=True):
        assert rec["summary"]["output_tokens"] == exp["output_tokens"]
        assert rec["summary"]["status"] == "completed"
        assert {k: rec[k] for k in exp if k != "output_tokens"} == {
            k: v for k, v in exp.items() if k != "output_tokens"
        }
        assert isinstance(rec["updated_at"], str)


@pytest.mark.parametrize("filters", [{}, {"tag": "tag1"}, {"experiment": "exp0", "limit": 4}])
def test_run_records_statement_count_does_not_grow_with_runs(
    tmp_path: Path, filters: dict[str, Any]
) -> None:
    counts = {}
    for n in (3, 30):
        with Store(tmp_path / f"runs{n}.sqlite") as store:
            expected = _fill(store, n)
            if "tag" in filters:
                expected = [e for e in expected if e["tags"] == [filters["tag"]]]
            if "experiment" in filters:
                expected = [e for e in expected if e["experiment"] == filters["experiment"]]
            if "limit" in filters:
                expected = expected[: filters["limit"]]
            records, statements = _traced(store, **filters)
            _check(records, expected)
            assert len(records) > 0
            counts[n] = len(statements)
    assert counts[3] == counts[30], counts
    assert counts[30] <= 2, counts  # one SELECT (no per-run query)


def test_run_records_on_empty_store(tmp_path: Path) -> None:
    with Store(tmp_path / "runs.sqlite") as store:
        records, statements = _traced(store)
    assert records == []
    assert len(statements) == 1


# -- transaction(): commit, rollback, read-only --------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)  # autocommit, as the store
    c.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    yield c
    c.close()


def _rows(path: Path) -> list[int]:
    """What another connection sees (committed rows only)."""
    other = sqlite3.connect(path)
    try:
        return [r[0] for r in other.execute("SELECT x FROM t ORDER BY x")]
    finally:
        other.close()


def _path(conn: sqlite3.Connection) -> Path:
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


def _trace(conn: sqlite3.Connection) -> list[str]:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return statements


def test_commits_on_success(conn: sqlite3.Connection) -> None:
    statements = _trace(conn)
    with transaction(conn) as c:
        assert c is conn
        assert conn.in_transaction
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements[-1] == "COMMIT"
    assert _rows(_path(conn)) == [1]


def test_deferred_begin_when_not_immediate(conn: sqlite3.Connection) -> None:
    statements = _trace(conn)
    with transaction(conn, immediate=False):
        conn.execute("INSERT INTO t VALUES (1)")
    assert statements[0] == "BEGIN"
    assert statements[-1] == "COMMIT"
    assert _rows(_path(conn)) == [1]


def test_immediate_takes_the_write_lock_at_once(conn: sqlite3.Connection) -> None:
    other = sqlite3.connect(_path(conn), isolation_level=None, timeout=0)
    try:
        with transaction(conn), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        with transaction(conn, read_only=True):  # a read never blocks a writer
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.mark.parametrize("exc_type", [ValueError, sqlite3.OperationalError, KeyboardInterrupt])
def test_rolls_back_and_reraises_on_any_exception(
    conn: sqlite3.Connection, exc_type: type[BaseException]
) -> None:
    conn.execute("INSERT INTO t VALUES (1)")  # committed before: must survive
    raised = exc_type("stop here")
    statements = _trace(conn)
    with pytest.raises(exc_type) as info, transaction(conn):  # noqa: PT012 - the block is the transaction under test
        conn.execute("INSERT INTO t VALUES (2)")
        raise raised
    assert info.value is raised  # the original exception, not a rollback error
    assert not conn.in_transaction
    assert statements[-1] == "ROLLBACK"
    assert "COMMIT" not in statements
    assert _rows(_path(conn)) == [1]
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]


def test_a_failing_statement_rolls_back_the_earlier_ones(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError), transaction(conn):  # noqa: PT012 - as above
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")  # duplicate key
    assert not conn.in_transaction
    assert _rows(_path(conn)) == []


def test_a_failing_commit_is_rolled_back(conn: sqlite3.Connection) -> None:
    # a deferred foreign key fails at COMMIT, which leaves the transaction open in SQLite
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE child (p INTEGER REFERENCES t(x) DEFERRABLE INITIALLY DEFERRED)")
    statements = _trace(conn)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), transaction(conn):
        conn.execute("INSERT INTO child VALUES (42)")
    assert statements[-2:] == ["COMMIT", "ROLLBACK"]
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0


def test_read_only_never_commits(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t VALUES (1)")
    statements = _trace(conn)
    with transaction(conn, read_only=True):
        assert conn.in_transaction
        assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]
        conn.execute("INSERT INTO t VALUES (2)")  # a write by mistake is not kept
    assert not conn.in_transaction
    assert statements[0] == "BEGIN"  # deferred: a reader takes no write lock
    assert statements[-1] == "ROLLBACK"
    assert "COMMIT" not in statements
    assert _rows(_path(conn)) == [1]


def test_read_only_rolls_back_and_reraises(conn: sqlite3.Connection) -> None:
    with pytest.raises(KeyboardInterrupt), transaction(conn, read_only=True):  # noqa: PT012
        conn.execute("SELECT x FROM t").fetchall()
        raise KeyboardInterrupt
    assert not conn.in_transaction


def test_begin_inside_an_open_transaction_leaves_that_transaction_alone(
    conn: sqlite3.Connection,
) -> None:
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"), transaction(conn):
        pass  # pragma: no cover
    assert conn.in_transaction  # the caller's transaction was not rolled back under it
    conn.execute("COMMIT")
    assert _rows(_path(conn)) == [1]


# -- the store's writes go through it --------------------------------------------------------------


def test_migration_found_done_by_another_process_commits_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.sqlite"
    connect_rw(path).close()  # migrated
    conn = sqlite3.connect(path, isolation_level=None)
    real = schema.user_version
    looks: list[int] = []

    def user_version(c: sqlite3.Connection) -> int:
        looks.append(real(c))
        return 0 if len(looks) == 1 else looks[-1]  # the look before the write lock: unmigrated

    monkeypatch.setattr(schema, "user_version", user_version)
    statements = _trace(conn)
    try:
        assert schema.migrate(conn) == SCHEMA_VERSION
        assert not conn.in_transaction
        assert statements[1:] == ["BEGIN IMMEDIATE", "PRAGMA user_version", "COMMIT"]
    finally:
        conn.close()


def test_store_writes_leave_no_transaction_open(tmp_path: Path) -> None:
    with Store(tmp_path / "runs.sqlite") as store:
        run = synthetic_run(n_tokens=2, n_layers=1)
        store.save(run)
        statements = _trace(store._conn)
        assert store.load(run.run_id).n_tokens == 2
        assert not store._conn.in_transaction
        assert statements.count("BEGIN") == 1
        assert statements.count("ROLLBACK") == 1
        store.delete(run.run_id)
        assert not store._conn.in_transaction
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert statements.count("COMMIT") == 1
        assert store.ids() == []
