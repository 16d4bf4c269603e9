"""Opening the SQLite file safely: refuse what is not ours, never overwrite, fall back to read-only.

Every sqlite3 error is turned into a StoreError that names the file, so a user sees which store is
broken and that it was left untouched.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError
from .schema import SCHEMA_VERSION, migrate, user_version

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 15_000


@contextlib.contextmanager
def store_errors(path: Path, action: str) -> Iterator[None]:
    """Re-raise sqlite3 errors as StoreError naming the file and what was being done."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        msg = str(exc)
        if "readonly" in msg or "read-only" in msg:
            raise StoreError(f"run store {path} is read-only; cannot {action} ({msg})") from exc
        if "locked" in msg or "busy" in msg:
            raise StoreError(
                f"run store {path} stayed locked by another process for "
                f"{BUSY_TIMEOUT_MS / 1000:.0f} s; cannot {action} ({msg})"
            ) from exc
        raise StoreError(f"run store {path}: cannot {action}: {msg}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"run store {path} is corrupted or not a database ({exc}); it was left untouched. "
            "Move it away or point LLM_ENERGY_STORE / Store(path) at another file."
        ) from exc


def check_file(path: Path) -> None:
    """Refuse a file that exists but is not SQLite, before sqlite3 gets a chance to touch it."""
    if path.is_dir():
        raise StoreError(f"run store path {path} is a directory; give a file path")
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(
            f"{path} is not an llm-energy-widget run store (not a SQLite database); it was left "
            "untouched. Point LLM_ENERGY_STORE / Store(path) at another file."
        )


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.resolve()))}?mode={mode}"


def raw_connect(path: Path, mode: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        _uri(path, mode),
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves: short explicit transactions
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def connect_rw(path: Path) -> sqlite3.Connection:
    """A read-write connection in WAL mode, schema migrated to SCHEMA_VERSION."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the run store directory {path.parent} ({exc.strerror}); "
            "choose a writable location with Store(path) or LLM_ENERGY_STORE"
        ) from exc
    conn = raw_connect(path, "rwc")
    try:
        with store_errors(path, "open it for writing"):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            check_schema(conn, path, writable=True)
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection; the schema must already be current."""
    if not path.exists():
        raise StoreError(f"run store {path} does not exist")
    try:
        conn = raw_connect(path, "ro")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open run store {path} read-only: {exc}") from exc
    try:
        with store_errors(path, "read it"):
            check_schema(conn, path, writable=False)
    except BaseException:
        conn.close()
        raise
    return conn


def check_schema(conn: sqlite3.Connection, path: Path, *, writable: bool) -> None:
    version = user_version(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"run store {path} has schema version {version}, newer than this llm-energy-widget "
            f"understands (up to {SCHEMA_VERSION}); upgrade llm-energy-widget "
            "(pip install -U llm-energy-widget). The store was left untouched."
        )
    if version == 0 and tables:
        raise StoreError(
            f"{path} is a SQLite database but not an llm-energy-widget run store "
            f"(tables: {', '.join(sorted(tables)[:5])}); it was left untouched"
        )
    if version < SCHEMA_VERSION and not writable:
        if version == 0:
            return  # an empty file: reads see no runs
        raise StoreError(
            f"run store {path} has schema version {version} and needs migrating to "
            f"{SCHEMA_VERSION}, which needs write access; open it once from a writable location"
        )
