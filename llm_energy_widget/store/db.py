"""Opening the SQLite file safely: refuse what is not ours, never overwrite, fall back to read-only.

Every sqlite3 error is turned into a StoreError that names the file, so a user sees which store is
broken and that it was left untouched.

The database file is only ever opened by SQLite. Closing *any* file descriptor of a file drops
every POSIX lock the process holds on it (fcntl semantics), including the locks of SQLite
connections that are still open in the same process; another process may then checkpoint and
reset the WAL under them, which loses commits and shows up as `disk I/O error` /
`SQLITE_IOERR_SHORT_READ`. SQLite itself keeps descriptors of a locked file open until its last
lock goes, so checks go through SQLite connections (see `probe`). The one exception is
`_create_file`, which makes a file that did not exist (O_EXCL), so no lock can be held on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError
from .schema import SCHEMA_VERSION, user_version

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DIR_MODE",
    "FILE_MODE",
    "check_path",
    "check_schema",
    "connect_ro",
    "connect_rw",
    "file_identity",
    "is_retryable",
    "missing_store",
    "not_a_store",
    "probe",
    "raw_connect",
    "rollback",
    "sidecars_creatable",
    "store_errors",
    "transaction",
    "wal_file",
    "writable",
]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000
FILE_MODE = 0o600
DIR_MODE = 0o700


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
    except sqlite3.IntegrityError as exc:  # a record the schema refuses: not a damaged file
        raise StoreError(
            f"run store {path}: cannot {action}: a record broke the store's schema ({exc}); "
            "the store itself is fine (this is a bug: please report it with the run's JSON)"
        ) from exc
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise not_a_store(path) from exc
        raise StoreError(
            f"run store {path} is corrupted or not a database ({exc}); it was left untouched. "
            "Move it away or point LLM_ENERGY_STORE / Store(path) at another file."
        ) from exc


def not_a_store(path: Path) -> StoreError:
    return StoreError(
        f"{path} is not an llm-energy-widget run store (not a SQLite database); it was left "
        "untouched. Point LLM_ENERGY_STORE / Store(path) at another file."
    )


def missing_store(path: Path) -> StoreError:
    return StoreError(
        f"no run store at {path}: the file does not exist (nothing was created). Check the "
        "path (--store / LLM_ENERGY_STORE / Store(path)); a store is created by the first run "
        "saved to it."
    )


def check_path(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"run store path {path} is a directory; give a file path")


def wal_file(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def sidecars_creatable(path: Path) -> bool:
    """Whether SQLite could create `-wal`/`-shm` next to `path` (os.access knows root and EROFS)."""
    return os.access(path.parent, os.W_OK | os.X_OK)


def writable(path: Path) -> bool:
    """Whether an existing store could be written here (the file and its sidecar files)."""
    return os.access(path, os.R_OK | os.W_OK) and sidecars_creatable(path)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of `path` via stat, which does not open the file; None if it is gone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _uri(path: Path, mode: str, immutable: bool = False) -> str:
    return f"file:{quote(str(path.resolve()))}?mode={mode}" + ("&immutable=1" if immutable else "")


def raw_connect(path: Path, mode: str, *, immutable: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        _uri(path, mode, immutable),
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves (`transaction`): short and explicit
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


def rollback(conn: sqlite3.Connection) -> None:
    """ROLLBACK after a failed transaction without hiding the failure that caused it."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


@contextlib.contextmanager
def transaction(
    conn: sqlite3.Connection, *, immediate: bool = True, read_only: bool = False
) -> Iterator[sqlite3.Connection]:
    """The one way the store opens a transaction: `with transaction(conn): ...`.

    Issues BEGIN IMMEDIATE (or BEGIN with `immediate=False`), commits when the block ends
    normally, and on any exception - BaseException too, so a KeyboardInterrupt never leaves a
    transaction open - rolls back and re-raises the original exception (`rollback`). A
    failing COMMIT is rolled back and raised the same way.

    `read_only=True` is a snapshot for reading (deferred BEGIN whatever `immediate` says: a
    read must not take the write lock); it always ends with ROLLBACK, as there is nothing to
    commit. A BEGIN that fails (busy, or a transaction already open) raises without touching
    any transaction already open on `conn`.
    """
    conn.execute("BEGIN IMMEDIATE" if immediate and not read_only else "BEGIN")
    try:
        yield conn
        if not read_only:
            conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    if read_only:
        rollback(conn)


def probe(path: Path, *, for_writing: bool) -> int:
    """Look at an existing file through SQLite without changing anything; its schema version.

    Raises StoreError for what is not ours to use (not SQLite, a foreign database, a newer
    schema, or - for reading - a schema that needs migrating), before any connection that could
    write (journal mode, migrations) is made. Without a `-wal` file the main file holds every
    commit, and `immutable=1` reads it without creating `-wal`/`-shm` (a plain read-only
    connection would leave both behind next to a foreign WAL-mode database); with a `-wal`, a
    plain read-only connection reads through it and creates nothing new.
    """
    for attempt in range(2):
        immutable = not wal_file(path).exists()
        conn = None
        try:
            with store_errors(path, "read it"):
                conn = raw_connect(path, "ro", immutable=immutable)
                check_schema(conn, path, writable=for_writing)
                return user_version(conn)
        except StoreError as exc:
            # A writer may have started (and checkpointed) between the -wal check and the read.
            if attempt or not immutable or not wal_file(path).exists() or exc.__cause__ is None:
                raise
        finally:
            if conn is not None:
                conn.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _make_dirs(directory: Path) -> None:
    """Create the missing directories, each 0700 (a store holds prompts and responses)."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)


def _create_file(path: Path) -> None:
    """Make a new empty store file, 0600 (SQLite gives -wal/-shm the database file's mode).

    Opening it with os.open is safe: O_EXCL makes a new inode, on which no connection of this
    process can hold a lock. If another process creates it first, we just use theirs.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def connect_rw(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """A read-write connection in WAL mode, schema migrated to SCHEMA_VERSION.

    An existing file is checked read-only first (`probe`): a file that is refused is not changed
    at all (no journal mode switch, no -wal/-shm files).
    """
    from .schema import migrate

    check_path(path)
    if path.exists():
        probe(path, for_writing=True)
        if not writable(path):
            # SQLite would silently open it read-only (and fail on the first write)
            raise StoreError(
                f"run store {path} is read-only (the file or its directory cannot be written); "
                "cannot open it for writing"
            )
    elif not create:
        raise missing_store(path)
    else:
        try:
            _make_dirs(path.parent)
            _create_file(path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the run store {path} ({exc.strerror}); "
                "choose a writable location with Store(path) or LLM_ENERGY_STORE"
            ) from exc
    with store_errors(path, "open it for writing"):
        conn = raw_connect(path, "rw")
    try:
        with store_errors(path, "open it for writing"):
            check_schema(conn, path, writable=True)  # again: it may have changed since the probe
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_ro(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection and whether it is `immutable`; the schema must already be current.

    A WAL store in a directory we cannot write opens read-only only if its `-wal`/`-shm` exist
    (SQLite must map the WAL index). Without a `-wal` file every commit is in the main file, and
    no writer is connected (the WAL exists while one is), so it is opened `immutable=1`: SQLite
    then takes no locks and creates nothing. Should a writer start later, the Store reopens
    normally once its `-wal` appears (`Store._reader`).
    """
    check_path(path)
    if not path.exists():
        raise missing_store(path)
    probe(path, for_writing=False)
    conn = None
    immutable = False
    try:
        conn = raw_connect(path, "ro")
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
            conn = None
        if sidecars_creatable(path):
            raise StoreError(f"cannot open run store {path} read-only: {exc}") from exc
        if wal_file(path).exists():
            raise StoreError(
                f"cannot open run store {path} read-only: {exc}. Its directory is not writable "
                "and its -wal file needs a -shm file next to it that SQLite can read; open it "
                "once where it can be written (which folds the WAL into the file)"
            ) from exc
        immutable = True
    if conn is None:
        with store_errors(path, "open it read-only"):
            conn = raw_connect(path, "ro", immutable=True)
        log.info("run store %s: read-only directory, no WAL; reading it immutable", path)
    try:
        with store_errors(path, "read it"):
            check_schema(conn, path, writable=False)
    except BaseException:
        conn.close()
        raise
    return conn, immutable


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


def is_retryable(exc: BaseException) -> bool:
    """A failure a fresh connection may not have: I/O errors, lost locks, busy (not: read-only,
    not ours, newer schema, a file that is gone)."""
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    if not isinstance(cause, sqlite3.Error):
        return False
    msg = str(cause).lower()
    return not ("readonly" in msg or "read-only" in msg or "not a database" in msg)
