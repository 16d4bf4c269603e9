"""Bad stores get specific errors and are never overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llm_energy_widget.errors import StoreError
from llm_energy_widget.store import Store, db
from llm_energy_widget.testing import synthetic_run


def test_not_a_database_is_refused_and_untouched(tmp_path: Path) -> None:
    p = tmp_path / "notes.sqlite"
    p.write_text("these are my notes, not a database\n" * 10)
    before = p.read_bytes()
    with pytest.raises(StoreError, match=r"notes\.sqlite is not an llm-energy-widget run store"):
        Store(p)
    assert p.read_bytes() == before


def test_corrupted_database_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "runs.sqlite"
    with Store(p) as s:
        s.save(synthetic_run(n_tokens=4))
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(p.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # keep the header, trash every page
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"runs\.sqlite is corrupted or not a database"):
        Store(p).runs()
    assert p.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"not an llm-energy-widget run store.*customers"):
        Store(p)
    assert sqlite3.connect(p).execute("SELECT name FROM sqlite_master").fetchall() == [
        ("customers",)
    ]


def test_newer_schema_says_upgrade(tmp_path: Path) -> None:
    p = tmp_path / "runs.sqlite"
    Store(p).close()
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade llm-energy-widget"):
        Store(p)
    with pytest.raises(StoreError, match="schema version 99"):
        Store(p, read_only=True)


def test_read_only_location_cannot_create(tmp_path: Path) -> None:
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    with pytest.raises(StoreError, match=r"cannot create|read-only|cannot open"):
        Store("/proc/llm-energy-test/runs.sqlite")


def test_read_only_store_reads_but_refuses_writes(tmp_path: Path) -> None:
    p = tmp_path / "runs.sqlite"
    run = synthetic_run(n_tokens=8)
    with Store(p) as s:
        s.save(run)
    ro = Store(p, read_only=True)
    assert ro.read_only
    assert ro.load(run.run_id[:6]).n_tokens == 8
    assert list(ro.runs()["run_id"]) == [run.run_id]
    with pytest.raises(StoreError, match="read-only; cannot delete"):
        ro.delete(run.run_id)
    with pytest.raises(StoreError, match="read-only; cannot record"):
        ro.record(synthetic_run(n_tokens=2))


def test_falls_back_to_read_only_when_writes_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "runs.sqlite"
    run = synthetic_run(n_tokens=4)
    with Store(p) as s:
        s.save(run)

    def refuse(path: Path, **kw: object) -> sqlite3.Connection:
        with db.store_errors(path, "open it for writing"):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        raise AssertionError  # pragma: no cover

    monkeypatch.setattr("llm_energy_widget.store.store.connect_rw", refuse)
    s = Store(p)
    assert s.read_only
    assert s.load(run.run_id).n_tokens == 4
    with pytest.raises(StoreError, match="read-only"):
        s.keep_last(0)


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
