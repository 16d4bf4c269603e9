"""The store's tables and the migrations that create them (`PRAGMA user_version` = steps applied).

Layer x component metrics are one float32 BLOB per token row (`layers.values_f32`, shape from the
run's name lists), in a rowid table (blobs of 6.5 kB overflow a WITHOUT ROWID b-tree: 5x slower
loads). For 1,000 tokens x 30 layers x 9 components x 6 metrics it measured 8.2 MB, ~90 ms to write
in writer-sized batches and ~27 ms to load, against 20.5 MB, ~1.5 s and ~0.8 s for a long table
(`tests/store/bench_layers.py`). Migrations only ever add; none drops data.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "user_version"]

MIGRATIONS: tuple[str, ...] = (
    # 1: first schema
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL,
        end_reason TEXT,
        error TEXT,
        model_name TEXT,
        model_json TEXT NOT NULL DEFAULT '{}',
        prompt TEXT NOT NULL DEFAULT '',
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        response TEXT NOT NULL DEFAULT '',
        settings_json TEXT NOT NULL DEFAULT '{}',
        level TEXT,
        tags_json TEXT NOT NULL DEFAULT '[]',
        experiment TEXT,
        power_json TEXT NOT NULL DEFAULT '{}',
        baseline_w REAL,
        warnings_json TEXT NOT NULL DEFAULT '[]',
        hooked_json TEXT NOT NULL DEFAULT '{}',
        layer_names_json TEXT NOT NULL DEFAULT '[]',
        component_names_json TEXT NOT NULL DEFAULT '[]',
        metric_names_json TEXT NOT NULL DEFAULT '[]',
        summary_json TEXT,
        extras_json TEXT,
        n_tokens INTEGER NOT NULL DEFAULT 0,
        writer_pid INTEGER,
        writer_host TEXT
    );
    CREATE INDEX runs_created ON runs(created_at);
    CREATE INDEX runs_experiment ON runs(experiment);
    CREATE INDEX runs_model ON runs(model_name);
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (run_id, tag)
    );
    CREATE INDEX run_tags_tag ON run_tags(tag);
    CREATE TABLE power (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        t_ms REAL NOT NULL,
        cpu_w REAL, gpu_w REAL, ane_w REAL, dram_w REAL,
        total_w REAL,
        energy_j REAL,
        phase TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE phases (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        start_ms REAL NOT NULL,
        end_ms REAL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE tokens (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        token_id INTEGER,
        text TEXT,
        phase TEXT,
        start_ms REAL NOT NULL,
        end_ms REAL NOT NULL,
        energy_j REAL,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE layers (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        values_f32 BLOB NOT NULL,
        PRIMARY KEY (run_id, idx)
    );
    """,
    # 2: token times may be unknown (NULL: a run whose generate could not stream, e.g. beam
    # search; NOT NULL lost such runs), and whether the layer hooks ran during each token
    # (`instrumented`, NULL: nothing to instrument, a token-level run; runs stored before had
    # every token instrumented). SQLite cannot drop NOT NULL in place: the table is rebuilt.
    """
    CREATE TABLE tokens_v2 (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        token_id INTEGER,
        text TEXT,
        phase TEXT,
        start_ms REAL,
        end_ms REAL,
        energy_j REAL,
        instrumented INTEGER,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    INSERT INTO tokens_v2 (run_id, idx, token_id, text, phase, start_ms, end_ms, energy_j,
                           instrumented)
        SELECT t.run_id, t.idx, t.token_id, t.text, t.phase, t.start_ms, t.end_ms, t.energy_j,
               CASE WHEN COALESCE(r.level, 'component') = 'token' THEN NULL ELSE 1 END
        FROM tokens t LEFT JOIN runs r ON r.run_id = t.run_id;
    DROP TABLE tokens;
    ALTER TABLE tokens_v2 RENAME TO tokens;
    """,
    # per-device rails of a reading (NVML: `gpu1_w`, `gpu1_energy_j` for each counted GPU), as
    # a JSON object: a machine with more GPUs, or a new device kind, needs no new column. NULL:
    # the reading has none (every reading stored before).
    """
    ALTER TABLE power ADD COLUMN rails_json TEXT;
    """,
    # batched generation: which sequence of the batch chose each token (0: a single prompt,
    # so every stored run reads as one sequence), and one decoded text per sequence
    """
    ALTER TABLE tokens ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN texts_json TEXT NOT NULL DEFAULT '[]';
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing steps, each in its own transaction; returns the version reached.

    The caller has already refused a version newer than SCHEMA_VERSION.
    """
    from .db import transaction  # db imports this module at its top

    version = user_version(conn)
    while version < SCHEMA_VERSION:
        with transaction(conn):
            # Another process may have migrated while we waited for the write lock.
            version = user_version(conn)
            if version >= SCHEMA_VERSION:
                break  # leaving the block commits (the empty transaction)
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        version += 1
    return version


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
