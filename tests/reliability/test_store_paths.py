"""Store paths and filters (issue 14, store parts): a read never creates a store, LIKE wildcards
in the model filter are literal, a new store is private, a store deleted mid-run is noticed."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.errors import StoreError
from llm_energy_widget.run import Run
from llm_energy_widget.store import RunWriter, Store
from llm_energy_widget.testing import (
    apply_event,
    new_synthetic_run,
    synthetic_events,
    synthetic_run,
)


@pytest.mark.parametrize(
    "argv",
    [["runs"], ["runs", "--json"], ["show", "abc"], ["compare", "abc", "def"],
     ["export", "abc", "--format", "json", "--out", "{tmp}/out.json"]],
)  # fmt: skip
def test_read_commands_do_not_create_a_store_at_a_mistyped_path(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo" / "rusn.sqlite"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*args, "--store", str(typo)]) == 2
    err = capsys.readouterr().err
    assert str(typo) in err
    assert "does not exist" in err
    assert not typo.parent.exists()


def test_opening_for_reading_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "rusn.sqlite"
    for kwargs in ({"read_only": True}, {"create": False}):
        with pytest.raises(StoreError, match=f"no run store at {typo}"):
            Store(typo, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_model_filter_wildcards_are_literal(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    names = {}
    for model in ("a%b", "a_b", "axb", "a\\b", "plain"):
        run = synthetic_run(n_tokens=2)
        run.model = {"name": model}
        store.save(run)
        names[run.run_id] = model

    def found(pattern: str) -> set[str]:
        return {names[r] for r in store.runs(model=pattern)["run_id"]}

    assert found("%") == {"a%b"}
    assert found("_") == {"a_b"}
    assert found("a_b") == {"a_b"}
    assert found("\\") == {"a\\b"}
    assert found("a") == {"a%b", "a_b", "axb", "a\\b", "plain"}
    assert {r["model"] for r in store.run_records(model="%")} == {"a%b"}


def test_a_new_store_is_private(tmp_path: Path) -> None:
    before = stat.S_IMODE(tmp_path.stat().st_mode)
    path = tmp_path / "made" / "by" / "store" / "runs.sqlite"
    store = Store(path)
    store.save(synthetic_run(n_tokens=2))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for side in ("-wal", "-shm"):  # SQLite gives them the database file's mode
        p = path.with_name(path.name + side)
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(tmp_path.stat().st_mode) == before  # an existing directory is left as is
    store.close()


def _half_run(store: Store) -> tuple[Run, RunWriter, list[tuple[str, Any]]]:
    run = new_synthetic_run(n_layers=2)
    writer = store.record(run)
    Recorder(run).status("running")
    events = list(synthetic_events(n_tokens=12, n_layers=2))
    for name, args in events[: len(events) // 2]:
        apply_event(run, name, args)
    time.sleep(0.3)  # > one writer batch: the first half is committed
    return run, writer, events[len(events) // 2 :]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_deleted_mid_run_is_reported_on_the_run(how: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = Store(path)
    run, writer, rest = _half_run(store)
    os.unlink(path)
    if how == "replaced":
        Store(path).close()  # someone else starts a new store at the same path
    for name, args in rest:
        apply_event(run, name, args)
    Recorder(run).finish("completed", "done")
    assert writer.wait(10)
    msg = run.store_error
    assert msg, msg
    assert f"was {how}" in msg, msg
    assert str(path) in msg, msg
    assert msg in run.warnings
    if how == "replaced":
        assert Store(path).ids() == []  # nothing half-written into the new store
    with pytest.raises(StoreError, match=f"was {how}"):
        store.check_writable()
    with pytest.raises(StoreError, match=f"was {how}"):
        store.record(synthetic_run(n_tokens=2))


def test_runs_before_any_run_is_not_an_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    default = tmp_path / "fresh" / "runs.sqlite"
    monkeypatch.setenv("LLM_ENERGY_STORE", str(default))
    assert main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert main(["runs", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert not default.exists()
    assert not default.parent.exists()
