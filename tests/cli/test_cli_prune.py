"""`llm-energy runs prune --keep-last N | --before DATE`: lists with --dry-run, asks unless
--yes, says how many runs went; `Store.prune_candidates` lists without deleting."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

DAYS = ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04")


@pytest.fixture
def store4(tmp_path: Path) -> tuple[Path, list[Run]]:
    """Four finished runs, one a day (oldest first)."""
    path = tmp_path / "runs.sqlite"
    runs = []
    with Store(path) as s:
        for day in DAYS:
            r = synthetic_run(n_tokens=2, n_layers=1)
            r.created_at = f"{day}T12:00:00.000+00:00"
            s.save(r)
            runs.append(r)
    return path, runs


def _ids(path: Path) -> list[str]:
    with Store(path) as s:
        return s.ids()


def test_prune_candidates_delete_nothing(store4: tuple[Path, list[Run]]) -> None:
    path, runs = store4
    with Store(path) as s:
        assert s.prune_candidates(keep_last=1) == [runs[2].run_id, runs[1].run_id, runs[0].run_id]
        assert s.prune_candidates(keep_last=4) == []
        assert s.prune_candidates(before="2026-01-03T00:00:00+00:00") == [
            runs[1].run_id,
            runs[0].run_id,
        ]
        # both: older than Jan 3 AND beyond the newest one
        assert s.prune_candidates(keep_last=1, before="2026-01-02T00:00:00+00:00") == [
            runs[0].run_id
        ]
        with pytest.raises(ValueError, match="keep_last or before"):
            s.prune_candidates()
        with pytest.raises(ValueError, match="keep_last needs n >= 0"):
            s.prune_candidates(keep_last=-1)
        assert s.delete_runs([runs[0].run_id, "not-there"]) == [runs[0].run_id]
    assert len(_ids(path)) == 3


def test_dry_run_lists_and_deletes_nothing(
    store4: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = store4
    assert main(["runs", "prune", "--keep-last", "2", "--dry-run", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert runs[0].run_id in out
    assert runs[1].run_id in out
    assert runs[3].run_id not in out
    assert "would delete 2 run(s)" in out
    assert "--dry-run: none deleted" in out
    assert len(_ids(path)) == 4


def test_keep_last_with_yes_removes_and_says_how_many(
    store4: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = store4
    assert main(["runs", "--store", str(path), "prune", "--keep-last", "1", "--yes"]) == 0
    assert capsys.readouterr().out.startswith("removed 3 run(s) from ")
    assert _ids(path) == [runs[3].run_id]


def test_before_a_date(store4: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]) -> None:
    path, runs = store4
    argv = ["runs", "prune", "--before", "2026-01-02T13:00+00:00", "--yes", "--store", str(path)]
    assert main(argv) == 0
    assert "removed 2 run(s)" in capsys.readouterr().out
    assert _ids(path) == [runs[3].run_id, runs[2].run_id]
    assert main(argv) == 0
    assert "nothing to prune" in capsys.readouterr().out


def test_asks_on_a_terminal_and_keeps_on_no(
    store4: tuple[Path, list[Run]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = store4

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert main(["runs", "prune", "--keep-last", "0", "--store", str(path)]) == 1
    out = capsys.readouterr().out
    assert "delete these 4 run(s)" in out
    assert "kept: none deleted" in out
    assert len(_ids(path)) == 4
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert main(["runs", "prune", "--keep-last", "0", "--store", str(path)]) == 0
    assert "removed 4 run(s)" in capsys.readouterr().out
    assert _ids(path) == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--keep-last", "2"], "refusing to delete 2 run(s) without --yes (no terminal)"),
        (["--keep-last", "-1", "--yes"], "--keep-last must be >= 0"),
        (["--before", "last week", "--yes"], "--before 'last week': not an ISO date"),
        (["--yes"], "one of the arguments --keep-last --before is required"),
        (["--keep-last", "1", "--before", "2026-01-01"], "not allowed with argument"),
    ],
)
def test_bad_input_is_exit_2_and_deletes_nothing(
    store4: tuple[Path, list[Run]],
    argv: list[str],
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = store4
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["runs", "prune", *argv, "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: ")
    assert says in err
    assert len(_ids(path)) == 4


def test_runs_still_lists(
    store4: tuple[Path, list[Run]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs = store4
    assert main(["runs", "--store", str(path), "--limit", "1"]) == 0
    assert runs[3].run_id in capsys.readouterr().out
