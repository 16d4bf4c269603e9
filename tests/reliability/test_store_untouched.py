"""Files that are not ours to use are refused without being changed at all (issue 14, point 5).

Before, the read-write connection switched the file to WAL (header bytes 18-19) before looking at
its schema, so a foreign database or a store from newer code was changed, then refused.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_energy_widget.errors import StoreError
from llm_energy_widget.store import Store


def _state(path: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file next to `path` whose name starts with its name: bytes, mtime, mode."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(path.parent.iterdir())
        if p.name.startswith(path.name)
    }


def _foreign(path: Path, wal: bool = False) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.commit()
    conn.close()


def _future(path: Path, wal: bool = False) -> None:
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    if not wal:
        conn.execute("PRAGMA journal_mode = DELETE")  # what a future schema might use
    conn.close()


def _text(path: Path, wal: bool = False) -> None:
    path.write_text("my notes, not a database\n" * 20)


CASES: dict[str, tuple[Callable[..., None], bool, str]] = {
    "foreign": (_foreign, False, "not an llm-energy-widget run store.*customers"),
    "foreign-wal": (_foreign, True, "not an llm-energy-widget run store.*customers"),
    "future": (_future, False, "schema version 99.*upgrade"),
    "future-wal": (_future, True, "schema version 99.*upgrade"),
    "text": (_text, False, "not an llm-energy-widget run store"),
}


@pytest.mark.parametrize("case", CASES)
def test_refused_files_are_left_byte_for_byte(case: str, tmp_path: Path) -> None:
    make, wal, match = CASES[case]
    path = tmp_path / "data.sqlite"
    make(path, wal=wal)
    before = _state(path)
    assert list(before) == [path.name]  # no -wal/-shm to start with
    time.sleep(0.02)  # so a rewrite would show in the mtime
    for kwargs in ({}, {"read_only": True}, {"create": False}):
        with pytest.raises(StoreError, match=match):
            Store(path, **kwargs)
    assert _state(path) == before  # same bytes, mtime and mode; no -wal/-shm left behind
