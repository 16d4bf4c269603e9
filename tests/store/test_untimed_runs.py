"""A run whose generate cannot stream (beam search) is stored and reloaded like any other, its
tokens' unknown times kept as unknown (issue 13, item 3); a store of schema 1 migrates."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama
from support.profilers import quick_profiler

from llm_energy_widget.store import Store
from llm_energy_widget.store.schema import MIGRATIONS, SCHEMA_VERSION


def test_beam_search_run_is_stored_and_reloaded(smollm_tokenizer: Any, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    run = quick_profiler(tiny_llama(), smollm_tokenizer, store=store).generate(
        "hello there", chat=False, max_new_tokens=5, min_new_tokens=5, num_beams=2
    )
    assert run.wait(60), "run did not finish"
    assert run.status == "completed", run.end_reason
    assert any("cannot stream tokens" in w for w in run.warnings)
    assert run.settings["warmup"]["tokens"] == 4  # counted without a streamer too
    store.flush()
    assert run.store_error is None
    loaded = store.load(run.run_id)
    assert loaded.status == "completed"
    assert [t["token_id"] for t in loaded.tokens()] == [t["token_id"] for t in run.tokens()]
    assert {t["start_ms"] for t in loaded.tokens()} == {None}  # unknown, not 0
    assert loaded.summary()["total_energy_j"] == pytest.approx(run.summary()["total_energy_j"])
    assert loaded.summary()["decode_j_per_token"] is None


def test_schema_1_store_migrates_keeping_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (run_id, created_at, updated_at, status, level) VALUES ('r1', 'd', 'd', "
        "'completed', 'component'), ('r2', 'd', 'd', 'completed', 'token')"
    )
    conn.executemany(
        "INSERT INTO tokens (run_id, idx, token_id, text, phase, start_ms, end_ms, energy_j) "
        "VALUES (?, 0, 5, 'x', 'prefill', 0, 10, 0.1)",
        [("r1",), ("r2",)],
    )
    conn.commit()
    conn.close()
    store = Store(path)
    store.ids()  # opens and migrates
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = conn.execute("SELECT run_id, instrumented, start_ms FROM tokens ORDER BY run_id")
    assert rows.fetchall() == [("r1", 1, 0.0), ("r2", None, 0.0)]
    conn.execute(
        "INSERT INTO tokens (run_id, idx, start_ms, end_ms) VALUES ('r1', 1, NULL, NULL)"
    )  # nullable now


def test_a_refused_record_is_not_called_a_corrupted_store(tmp_path: Path) -> None:
    from llm_energy_widget.errors import StoreError
    from llm_energy_widget.store.db import store_errors

    with (
        pytest.raises(StoreError, match="broke the store's schema") as info,
        store_errors(tmp_path / "runs.sqlite", "save the run"),
    ):
        raise sqlite3.IntegrityError("NOT NULL constraint failed: tokens.start_ms")
    assert "corrupted" not in str(info.value)
