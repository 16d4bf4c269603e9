"""The user-facing store: list, load, delete and retain runs; `record` a live run."""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from ..core.recorder import Recorder
from ..core.run import now_iso
from ..errors import InvalidInputError, StoreError, UnknownRunError
from ..run import Run
from .codec import POWER_COLUMNS, layer_row, loads
from .db import (
    connect_ro,
    connect_rw,
    file_identity,
    is_retryable,
    store_errors,
    transaction,
    wal_file,
    writable,
)
from .paths import default_path
from .schema import SCHEMA_VERSION, user_version
from .writer import RunWriter, _host, pid_alive

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

__all__ = ["LIVE_STATUSES", "RunFilters", "Store", "T"]

log = logging.getLogger(__name__)

LIVE_STATUSES = ("pending", "running")
T = TypeVar("T")


class RunFilters(TypedDict, total=False):
    """The filters of `Store.runs()` and `Store.run_records()` (`Store._run_rows` applies them)."""

    model: str | None
    tag: str | None
    experiment: str | None
    since: str | _dt.datetime | _dt.date | _dt.timedelta | None
    status: str | None
    limit: int | None


class Store:
    """A SQLite file of runs (WAL: several notebooks may write at once).

    `Store()` opens `$LLM_ENERGY_STORE` or the user data directory's `runs.sqlite`. A store that
    cannot be written (read-only location) opens read-only and says so on the first write, or
    earlier through `check_writable()`.

    `read_only=True` never writes and never creates anything; `create=False` opens an existing
    store for writing but raises StoreError, naming the path, if there is none (what read
    commands use, so a mistyped path does not leave an empty store behind).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.read_only = read_only
        self.read_only_reason: str | None = "opened with read_only=True" if read_only else None
        self._lock = threading.RLock()
        self._writers: list[RunWriter] = []
        self._immutable = False
        if read_only:
            self._conn, self._immutable = connect_ro(self.path)
        else:
            try:
                self._conn = connect_rw(self.path, create=create)
            except StoreError as exc:
                if not self.path.is_file() or (writable(self.path) and "read-only" not in str(exc)):
                    raise
                log.warning("%s; opened read-only", exc)
                self._conn, self._immutable = connect_ro(self.path)
                self.read_only = True
                self.read_only_reason = str(exc)
        self._identity = file_identity(self.path)
        self._has_schema = user_version(self._conn) == SCHEMA_VERSION
        if not self.read_only:
            self.mark_orphans_incomplete()

    def __repr__(self) -> str:
        ro = " read-only" if self.read_only else ""
        return f"<Store {self.path}{ro}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (writers of live runs keep their own and go on)."""
        with self._lock:
            self._conn.close()

    # -- connection -------------------------------------------------------------------------------
    def _reconnect(self) -> None:
        """A fresh connection after a failure a new one may not have (I/O error, lost lock)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self.read_only:
            self._conn, self._immutable = connect_ro(self.path)
        else:
            self._conn = connect_rw(self.path, create=False)
        self._identity = file_identity(self.path)
        self._has_schema = user_version(self._conn) == SCHEMA_VERSION

    def _read(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` under the lock, as StoreError; retried once on a fresh connection."""
        with self._lock:
            if self._immutable and wal_file(self.path).exists():
                # a writer appeared: an immutable connection would not see its WAL
                self._reconnect()
            for attempt in range(2):
                try:
                    with store_errors(self.path, action):
                        return fn(self._conn)
                except StoreError as exc:
                    if attempt or not is_retryable(exc):
                        raise
                    log.warning("run store %s: %s; reconnecting", self.path, exc)
                    self._reconnect()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- writing ----------------------------------------------------------------------------------
    def _require_writable(self, action: str) -> None:
        if self.read_only:
            why = f" ({self.read_only_reason})" if self.read_only_reason else ""
            raise StoreError(f"run store {self.path} is read-only; cannot {action}{why}")
        now = file_identity(self.path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreError(
                f"run store {self.path} was {what} after it was opened; cannot {action}. "
                "Open it again with Store(path)."
            )

    def check_writable(self) -> None:
        """Raise StoreError now if runs cannot be saved here (call it before loading a model).

        Covers a store that opened read-only (read-only file, directory or file system; opened
        with read_only=True) and a store file deleted or replaced since it was opened.
        """
        self._require_writable("save runs to it")
        if not writable(self.path):
            raise StoreError(
                f"run store {self.path} is read-only (the file or its directory cannot be "
                "written); cannot save runs to it"
            )

    def record(self, run: Run) -> RunWriter:
        """Persist `run` from now on, incrementally (returns at once; writing is in a thread).

        If writing fails for good (after reconnecting and retrying), the run says so: a sentence
        in `run.warnings`, the same text in `run.store_error` (None while all is well), and a
        `store_error` event.
        """
        self._require_writable(f"record run {run.run_id}")
        writer = RunWriter(self.path, run, identity=self._identity)
        self._writers = [w for w in self._writers if not w.finished] + [writer]
        return writer

    def save(self, run: Run, timeout: float | None = 60.0) -> str:
        """Write a finished run (e.g. one read from JSON) and wait until it is on disk."""
        if not run.done:
            raise InvalidInputError(f"run {run.run_id} is still going; use Store.record(run)")
        writer = self.record(run)
        if not writer.wait(timeout):
            raise StoreError(f"saving run {run.run_id} to {self.path} timed out")
        if writer.error is not None:
            raise StoreError(f"saving run {run.run_id} to {self.path} failed: {writer.error}")
        return run.run_id

    def flush(self, timeout: float | None = 10.0) -> None:
        """Wait for the writers of finished runs recorded through this Store."""
        for w in list(self._writers):
            if w.run.done:
                w.wait(timeout)

    def mark_orphans_incomplete(self) -> list[str]:
        """Runs left `running` by a process of this host that no longer exists -> `incomplete`."""
        if not self._has_schema:
            return []
        rows = self._read(
            "check for interrupted runs",
            lambda conn: conn.execute(
                f"SELECT run_id, writer_pid FROM runs WHERE status IN "
                f"({','.join('?' * len(LIVE_STATUSES))}) AND writer_host = ?",
                (*LIVE_STATUSES, _host()),
            ).fetchall(),
        )
        orphans = [rid for rid, pid in rows if pid is None or not pid_alive(int(pid))]
        for rid in orphans:
            self._mark_incomplete(rid)
        return orphans

    def _mark_incomplete(self, run_id: str) -> None:
        from .codec import dumps

        run = self.load(run_id)
        run.status = "incomplete"
        run.end_reason = "the writing process ended before the run finished (crash or kill)"
        run._summary = None
        summary = run.summary()
        with (
            self._lock,
            store_errors(self.path, f"mark run {run_id} incomplete"),
            transaction(self._conn) as conn,
        ):
            conn.execute(
                "UPDATE runs SET status = 'incomplete', end_reason = ?, summary_json = ?, "
                "updated_at = ? WHERE run_id = ? AND status IN ('pending', 'running')",
                (run.end_reason, dumps(summary), now_iso(), run_id),
            )

    def delete(self, run_id: str) -> str:
        """Delete a run and everything measured in it; returns the full id."""
        self._require_writable(f"delete run {run_id}")
        rid = self.resolve_id(run_id)
        self._delete_ids([rid])
        return rid

    def keep_last(self, n: int) -> list[str]:
        """Delete all but the `n` most recent runs (live runs are kept); returns deleted ids."""
        self._require_writable("apply retention")
        ids = self.prune_candidates(keep_last=n)
        self._delete_ids(ids)
        return ids

    def delete_before(self, when: str | _dt.datetime | _dt.date) -> list[str]:
        """Delete finished runs created before `when`; returns deleted ids."""
        self._require_writable("apply retention")
        ids = self.prune_candidates(before=when)
        self._delete_ids(ids)
        return ids

    def prune_candidates(
        self, keep_last: int | None = None, before: str | _dt.datetime | _dt.date | None = None
    ) -> list[str]:
        """The finished runs retention would delete, newest first, deleting nothing (what
        `llm-energy runs prune --dry-run` lists, and asks about): all but the `keep_last` most
        recent finished runs, and/or those created before `before`. Live runs are never listed."""
        if keep_last is None and before is None:
            raise InvalidInputError("prune needs keep_last or before (or both)")
        if keep_last is not None and (
            not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0
        ):
            raise InvalidInputError(f"keep_last needs n >= 0, got {keep_last!r}")
        finished = "status NOT IN ('pending', 'running')"
        ids: list[str] | None = None
        if keep_last is not None:
            ids = self._select_ids(
                f"SELECT run_id FROM runs WHERE {finished} "
                "ORDER BY created_at DESC LIMIT -1 OFFSET ?",
                (keep_last,),
            )
        if before is not None:
            old = self._select_ids(
                f"SELECT run_id FROM runs WHERE created_at < ? AND {finished} "
                "ORDER BY created_at DESC",
                (_iso(before),),
            )
            ids = old if ids is None else [i for i in ids if i in set(old)]
        return ids or []

    def delete_runs(self, run_ids: list[str]) -> list[str]:
        """Delete these runs (full ids, e.g. from `prune_candidates`); returns the ids that were
        in the store and are gone now."""
        self._require_writable("delete runs")
        present = set(self.ids())
        gone = [i for i in run_ids if i in present]
        self._delete_ids(gone)
        return gone

    def _select_ids(self, sql: str, args: tuple[Any, ...]) -> list[str]:
        if not self._has_schema:
            return []
        return self._read("list runs", lambda conn: [r[0] for r in conn.execute(sql, args)])

    def _delete_ids(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._lock, store_errors(self.path, "delete runs"), transaction(self._conn) as conn:
            conn.executemany("DELETE FROM runs WHERE run_id = ?", [(i,) for i in ids])

    # -- reading ----------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return self._select_ids("SELECT run_id FROM runs ORDER BY created_at DESC", ())

    def resolve_id(self, run_id: str) -> str:
        """A full id from an id or a unique prefix of one (like git)."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError(f"a run id must be a non-empty string, got {run_id!r}")
        run_id = run_id.strip()
        like = _like_escape(run_id) + "%"
        matches = self._select_ids(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
            (like,),
        )
        if run_id in matches:
            return run_id
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInputError(
                f"run id prefix {run_id!r} is ambiguous: it matches {', '.join(matches[:10])}"
                + (" …" if len(matches) > 10 else "")
            )
        close = difflib.get_close_matches(run_id, self.ids(), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UnknownRunError(f"no run {run_id!r} in {self.path}{hint}")

    def load(self, run_id: str) -> Run:
        """The run as a `Run` (the class a live run is), so every view works on it."""
        rid = self.resolve_id(run_id)
        row, cols, power, phases, tokens, layers = self._read(
            f"load run {rid}", lambda conn: _load_rows(conn, rid)
        )
        if row is None:
            raise UnknownRunError(f"run {rid} was deleted from {self.path} while loading")
        r = dict(zip(cols, row, strict=True))
        d: dict[str, Any] = {
            "run_id": rid,
            "created_at": r["created_at"],
            "status": r["status"],
            "end_reason": r["end_reason"],
            "error": r["error"],
            "model": loads(r["model_json"], {}),
            "prompt": r["prompt"],
            "prompt_tokens": r["prompt_tokens"],
            "response": r["response"],
            "texts": loads(r.get("texts_json"), []),
            "settings": loads(r["settings_json"], {}),
            "level": r["level"] or "component",
            "tags": loads(r["tags_json"], []),
            "experiment": r["experiment"],
            "power": loads(r["power_json"], {}),
            "baseline_w": r["baseline_w"],
            "warnings": loads(r["warnings_json"], []),
            "hooked": loads(r["hooked_json"], {}),
            "phases": [{"name": n, "start_ms": s, "end_ms": e} for n, s, e in phases],
            "tokens": [_token_row(t) for t in tokens],
            "power_samples": [_power_row(p) for p in power],
            "layers": {
                "layer_names": loads(r["layer_names_json"], []),
                "component_names": loads(r["component_names_json"], []),
                "metric_names": loads(r["metric_names_json"], []),
                "values": [],
            },
            "extras": loads(r["extras_json"], {}),
        }
        run = Run.from_dict(d)
        # Tokens with layer rows are contiguous from 0 in a live run; fill gaps with NaN rows.
        shape = (len(run.layer_names), len(run.component_names), len(run.metric_names))
        by_idx = {i: layer_row(b, shape) for i, b in layers}
        if by_idx:
            Recorder(run).load_layer_rows([by_idx.get(i) for i in range(max(by_idx) + 1)])
        return run

    def runs(self, **filters: Unpack[RunFilters]) -> pd.DataFrame:
        """One row per run, newest first, summary fields as columns (decode_j_per_token, …).

        Filters (`RunFilters`): model (a name pattern), tag, experiment, since (a date, datetime,
        ISO string or a timedelta back from now), status, limit.
        """
        import pandas as pd

        rows = self._run_rows(**filters)
        records = [_run_record(row) for row in rows]
        base = [
            "run_id", "created_at", "updated_at", "status", "model", "experiment", "tags",
            "prompt", "n_tokens", "level", "power_source", "power_kind", "end_reason",
        ]  # fmt: skip
        df = pd.DataFrame.from_records(records)
        if df.empty:
            return pd.DataFrame(columns=base)
        return df

    def run_records(self, **filters: Unpack[RunFilters]) -> list[dict[str, Any]]:
        """`runs()` as JSON-ready dicts with the summary nested (the CLI's `runs --json`).

        One query whatever the number of runs (the rows `runs()` reads, not one query per run).
        """
        if not self._has_schema:
            return []
        return [_json_record(row) for row in self._run_rows(**filters)]

    def _run_rows(
        self,
        model: str | None = None,
        tag: str | None = None,
        experiment: str | None = None,
        since: str | _dt.datetime | _dt.date | _dt.timedelta | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """The `_RUN_COLUMNS` of the runs matching the filters, newest first, in one query."""
        where, args = [], []
        if model:
            where.append("model_name LIKE ? ESCAPE '\\'")
            args.append(f"%{_like_escape(model)}%")
        if tag:
            where.append("run_id IN (SELECT run_id FROM run_tags WHERE tag = ?)")
            args.append(tag)
        if experiment:
            where.append("experiment = ?")
            args.append(experiment)
        if since is not None:
            where.append("created_at >= ?")
            args.append(_iso(since))
        if status:
            where.append("status = ?")
            args.append(status)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if not self._has_schema:
            return []
        return self._read("list runs", lambda conn: conn.execute(sql, args).fetchall())


def _power_row(p: Any) -> dict[str, Any]:
    """A stored reading as a run's power record (its per-device rails where it has them)."""
    n = len(POWER_COLUMNS)
    rec: dict[str, Any] = {**dict(zip(POWER_COLUMNS, p[:n], strict=True)), "phase": p[n]}
    rails = loads(p[n + 1], None)
    if isinstance(rails, dict) and rails:
        rec["rails"] = rails
    return rec


def _load_rows(conn: sqlite3.Connection, rid: str) -> tuple[Any, ...]:
    """Everything stored for one run, read in one snapshot even while a writer appends."""
    with transaction(conn, read_only=True):  # nothing to commit: it ends with ROLLBACK
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (rid,)).fetchone()
        cols = [d[0] for d in conn.execute("SELECT * FROM runs LIMIT 0").description]
        power = conn.execute(
            f"SELECT {', '.join(POWER_COLUMNS)}, phase, rails_json FROM power WHERE run_id = ? "
            "ORDER BY seq",
            (rid,),
        ).fetchall()
        phases = conn.execute(
            "SELECT name, start_ms, end_ms FROM phases WHERE run_id = ? ORDER BY seq", (rid,)
        ).fetchall()
        tokens = conn.execute(
            "SELECT idx, token_id, text, phase, start_ms, end_ms, instrumented, sequence "
            "FROM tokens WHERE run_id = ? ORDER BY idx",
            (rid,),
        ).fetchall()
        layers = conn.execute(
            "SELECT idx, values_f32 FROM layers WHERE run_id = ? ORDER BY idx", (rid,)
        ).fetchall()
    return row, cols, power, phases, tokens, layers


def _token_row(t: tuple[Any, ...]) -> dict[str, Any]:
    """A tokens row as a Run.to_dict token."""
    rec = dict(
        zip(("index", "token_id", "text", "phase", "start_ms", "end_ms"), t[:6], strict=True)
    )
    rec["instrumented"] = None if t[6] is None else bool(t[6])
    rec["sequence"] = int(t[7] or 0)
    return rec


def _like_escape(text: str) -> str:
    """`text` matched literally by `LIKE ? ESCAPE '\\'` (% and _ are wildcards otherwise)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The columns `_run_rows` reads, in the order `_run_record` and `_json_record` unpack them.
_RUN_COLUMNS = (
    "run_id, created_at, updated_at, status, model_name, experiment, tags_json, "
    "prompt, n_tokens, level, power_json, settings_json, summary_json, end_reason"
)


def _run_record(row: tuple[Any, ...]) -> dict[str, Any]:
    (rid, created, updated, status, model, experiment, tags, prompt, n_tokens, level, power,
     settings, summary, end_reason) = row  # fmt: skip
    p = loads(power, {})
    rec: dict[str, Any] = {
        "run_id": rid,
        "created_at": created,
        "updated_at": updated,
        "status": status,
        "model": model,
        "experiment": experiment,
        "tags": loads(tags, []),
        "prompt": prompt,
        "n_tokens": n_tokens,
        "level": level,
        "power_source": p.get("source"),
        "power_kind": p.get("kind"),
        "end_reason": end_reason,
    }
    for k, v in (loads(summary) or {}).items():
        if k == "status":
            continue
        if isinstance(v, dict):
            rec.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            rec[k] = v
    for k, v in loads(settings, {}).items():
        rec[f"settings.{k}"] = v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
    return rec


def _json_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A `_RUN_COLUMNS` row as `run_records` gives it: JSON-ready, the summary nested."""
    (rid, created, updated, status, model, experiment, tags, prompt, n_tokens, level, power,
     settings, summary, end_reason) = row  # fmt: skip
    p = loads(power, {})
    return {
        "run_id": rid,
        "model": model,
        "prompt": prompt,
        "status": status,
        "created_at": created,
        "updated_at": updated,
        "experiment": experiment,
        "tags": loads(tags, []),
        "n_tokens": n_tokens,
        "level": level,
        "power_source": p.get("source"),
        "power_kind": p.get("kind"),
        "settings": loads(settings, {}),
        "summary": loads(summary),
        "end_reason": end_reason,
    }


def _iso(when: str | _dt.datetime | _dt.date | _dt.timedelta) -> str:
    """A UTC ISO timestamp comparable with the stored `created_at`."""
    if isinstance(when, _dt.timedelta):
        when = _dt.datetime.now(_dt.timezone.utc) - when
    if isinstance(when, str):
        try:
            when = _dt.datetime.fromisoformat(when)
        except ValueError as exc:
            raise InvalidInputError(f"not an ISO date or time: {when!r}") from exc
    if not isinstance(when, _dt.datetime):
        when = _dt.datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        when = when.astimezone()  # naive = local time
    return when.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds")
