"""Round trips, listing, ids and retention of the run store, on synthetic runs."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.errors import InvalidInputError, UnknownRunError
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store, default_path, resolve_store
from llm_energy_widget.store.schema import SCHEMA_VERSION
from llm_energy_widget.testing import (
    apply_event,
    new_synthetic_run,
    synthetic_events,
    synthetic_run,
)


def _same(a: Run, b: Run) -> None:
    assert b.run_id == a.run_id
    assert b.status == a.status
    assert b.created_at == a.created_at
    assert b.tokens() == a.tokens()
    assert b.phases() == a.phases()
    assert b.power_records() == a.power_records()
    np.testing.assert_array_equal(b.layers, a.layers)  # NaN == NaN here
    assert b.summary() == a.summary()
    assert b.response == a.response
    assert b.prompt == a.prompt
    assert (b.model, b.settings, b.power_info, b.tags, b.experiment) == (
        a.model,
        a.settings,
        a.power_info,
        a.tags,
        a.experiment,
    )


def test_save_and_load_round_trip(store: Store) -> None:
    run = synthetic_run(n_tokens=16, n_layers=3)
    run.tags, run.experiment = ["a", "b"], "exp1"
    run.extras["router"] = [[0.1, 0.9], None]
    store.save(run)
    loaded = store.load(run.run_id)
    _same(run, loaded)
    assert loaded.extras == {"router": [[0.1, 0.9], None]}
    assert loaded.summary()["decode_j_per_token"] == pytest.approx(
        run.summary()["decode_j_per_token"]
    )
    assert loaded.done


def test_load_accepts_unique_prefix_and_explains_unknown(store: Store) -> None:
    a, b = synthetic_run(n_tokens=2), synthetic_run(n_tokens=2)
    a.run_id = "abc123def456"
    b.run_id = "abd999000111"
    store.save(a)
    store.save(b)
    assert store.load("abc").run_id == "abc123def456"
    with pytest.raises(InvalidInputError, match=r"ambiguous.*abc123def456"):
        store.load("ab")
    with pytest.raises(UnknownRunError, match="close matches: abc123def456"):
        store.load("abc123def457")
    with pytest.raises(UnknownRunError, match="no run 'zzz'"):
        store.load("zzz")
    with pytest.raises(KeyError):  # UnknownRunError is also a KeyError
        store.delete("zzz")


def test_runs_lists_summaries_and_filters(store: Store) -> None:
    r1 = synthetic_run(n_tokens=8)
    r1.tags, r1.experiment = ["fast"], "e1"
    r2 = synthetic_run(n_tokens=16)
    r2.model = {"name": "other-model"}
    r2.experiment = "e2"
    store.save(r1)
    store.save(r2)
    df = store.runs()
    assert list(df["run_id"]) == [r2.run_id, r1.run_id]  # newest first
    row = df.set_index("run_id").loc[r1.run_id]
    assert row["decode_j_per_token"] == pytest.approx(r1.summary()["decode_j_per_token"])
    assert row["output_tokens"] == 8
    assert row["power_kind"] == "modeled"
    assert "peak_power_w.total_w" in df.columns
    assert list(store.runs(tag="fast")["run_id"]) == [r1.run_id]
    assert list(store.runs(experiment="e2")["run_id"]) == [r2.run_id]
    assert list(store.runs(model="other")["run_id"]) == [r2.run_id]
    assert list(store.runs(status="completed", limit=1)["run_id"]) == [r2.run_id]
    assert store.runs(since=dt.timedelta(hours=1)).shape[0] == 2
    assert store.runs(since="2999-01-01").empty
    assert store.runs(status="failed").empty
    assert "run_id" in store.runs(status="failed").columns
    recs = store.run_records()
    assert json.loads(json.dumps(recs))[0]["summary"]["output_tokens"] == 16


def test_delete_and_retention(store: Store) -> None:
    runs = []
    for i in range(4):
        r = synthetic_run(n_tokens=2)
        r.created_at = f"2026-01-0{i + 1}T00:00:00.000+00:00"
        runs.append(r)
        store.save(r)
    assert store.delete(runs[0].run_id[:8]) == runs[0].run_id
    assert store.delete_before("2026-01-03T00:00:00+00:00") == [runs[1].run_id]
    assert store.keep_last(1) == [runs[2].run_id]
    assert store.ids() == [runs[3].run_id]
    conn = sqlite3.connect(store.path)
    for table in ("power", "phases", "tokens", "layers", "run_tags"):
        n = conn.execute(f"SELECT count(*) FROM {table} WHERE run_id != ?", (runs[3].run_id,))
        assert n.fetchone()[0] == 0, table  # cascaded


def test_written_incrementally_while_running(store_path: Path) -> None:
    store = Store(store_path)
    run = new_synthetic_run(n_layers=2)
    writer = store.record(run)
    Recorder(run).status("running")
    events = list(synthetic_events(n_tokens=16, n_layers=2))
    for name, args in events[: len(events) // 2]:
        apply_event(run, name, args)
    time.sleep(0.4)  # > the writer's 100 ms batches
    other = Store(store_path)  # a second reader, as another notebook would be
    partial = other.load(run.run_id)
    assert partial.status == "running"
    assert 0 < partial.n_tokens == run.n_tokens < 16
    assert partial.layers.shape[0] == run.n_tokens
    for name, args in events[len(events) // 2 :]:
        apply_event(run, name, args)
    Recorder(run).finish("completed", "done")
    assert writer.wait(5)
    assert writer.error is None
    _same(run, other.load(run.run_id))
    assert other.runs().iloc[0]["status"] == "completed"


def test_late_token_text_and_run_fields_are_kept(store: Store) -> None:
    run = new_synthetic_run(n_layers=1)
    writer = store.record(run)
    Recorder(run).status("running")
    for name, args in synthetic_events(n_tokens=4, n_layers=1):
        apply_event(run, name, args)
    Recorder(run).token_text(1, " late")
    run.baseline_w = 3.5
    Recorder(run).finish("completed", "done")
    writer.wait(5)
    loaded = store.load(run.run_id)
    assert loaded.tokens()[1]["text"] == " late"
    assert loaded.baseline_w == 3.5
    assert loaded.response == run.response


def test_default_path_and_resolve_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ENERGY_STORE", str(tmp_path / "env.sqlite"))
    assert default_path() == tmp_path / "env.sqlite"
    s = resolve_store(True)
    assert isinstance(s, Store)
    assert s.path == tmp_path / "env.sqlite"
    assert resolve_store(s) is s
    assert resolve_store(False) is None
    assert resolve_store(None) is None
    p = resolve_store(tmp_path / "p.sqlite")
    assert p is not None
    assert p.path == tmp_path / "p.sqlite"
    monkeypatch.setenv("LLM_ENERGY_NO_STORE", "1")
    assert resolve_store(True) is None
    with pytest.raises(InvalidInputError, match="store must be"):
        resolve_store(3)
    monkeypatch.delenv("LLM_ENERGY_STORE")
    assert default_path().name == "runs.sqlite"
    assert "llm-energy-widget" in str(default_path())


def test_schema_is_versioned(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_save_refuses_a_live_run(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="still going"):
        store.save(synthetic_run(n_tokens=2, finish=False))
