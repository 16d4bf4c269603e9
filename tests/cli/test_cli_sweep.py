"""`llm-energy sweep`: a grid from flags or a TOML/JSON file, every point stored under one
experiment, the comparison printed (or --json), exit 1 when some points failed, 2 on bad input
before any model loads."""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.cli import main, sweep_cmd
from llm_energy_widget.store import Store

sweep_mod = importlib.import_module("llm_energy_widget.analysis.sweep")  # the function shadows it
FAST = ["--power", "estimate", "--baseline-s", "0", "--quiet"]


def _sweep(model: Path, store: Path, *extra: str) -> list[str]:
    return ["sweep", "--model", str(model), "--prompt", "Hello", "--store", str(store),
            *FAST, *extra]  # fmt: skip


def test_a_flag_grid_is_run_stored_and_compared(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs.sqlite"
    argv = _sweep(tiny_model_dir, store, "--max-new-tokens", "2,3", "--experiment", "grid")
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["experiment"] == "grid"
    assert doc["points"] == 2
    assert doc["failures"] == []
    assert sorted(r["max_new_tokens"] for r in doc["runs"]) == [2, 3]
    assert [r["status"] for r in doc["runs"]] == ["completed", "completed"]
    with Store(store) as s:
        stored = s.run_records(experiment="grid")
    assert sorted(r["run_id"] for r in stored) == sorted(r["run_id"] for r in doc["runs"])


def test_the_text_table_names_the_points(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _sweep(tiny_model_dir, tmp_path / "r.sqlite", "--max-new-tokens", "2,3")
    assert main([*argv, "--experiment", "text"]) == 0
    out = capsys.readouterr().out
    assert "max_new_tokens=2" in out
    assert "max_new_tokens=3" in out
    assert "prompt_sent" not in out  # the chat-templated prompt is not a label
    assert out.rstrip().endswith(f"experiment text: 2 run(s) stored in {tmp_path / 'r.sqlite'}")


def test_some_points_failed_is_exit_1_and_the_rest_are_kept(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """temperature 0 is refused by generate: that point fails, the other one is stored."""
    argv = _sweep(tiny_model_dir, tmp_path / "r.sqlite", "--max-new-tokens", "2",
                  "--do-sample", "--temperature", "0.7,0", "--json")  # fmt: skip
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["points"] == 2
    assert len(doc["runs"]) == 1
    assert [f["point"]["temperature"] for f in doc["failures"]] == [0.0]
    assert doc["notes"][0] == "1 of 2 sweep points failed"


def test_every_point_failed_is_exit_1(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _sweep(tiny_model_dir, tmp_path / "r.sqlite", "--max-new-tokens", "2",
                  "--do-sample", "--temperature", "0")  # fmt: skip
    assert main(argv) == 1
    assert "every sweep point failed (1 of 1 sweep points failed)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--dtype", "float8"], "dtype 'float8': one of float32, float16, bfloat16"),
        (["--max-new-tokens", "2,zero"], "--max-new-tokens: 'zero' is not a whole number"),
        (["--batch-size", "0"], "--batch-size: values must be positive, got 0"),
        (["--do-sample", "maybe"], "--do-sample: 'maybe' is not true or false"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--executor", "threads"], "--executor 'threads': one of sequential, process:N"),
        (["--executor", "process:0"], "process:N needs a worker count N >= 1"),
        (["--power", "nope"], "unknown power source 'nope'"),
        (["--grid", "{dir}/missing.toml"], "missing.toml: no such file"),
        (["--grid", "{dir}/grid.yaml"], "give a .toml or .json file"),
        (["--grid", "{dir}/bad.json"], "not valid json"),
        (["--grid", "{dir}/grid.toml", "--max-new-tokens", "4"], "--max-new-tokens is also in"),
    ],
)
def test_bad_input_is_exit_2_before_any_point_runs(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    (tmp_path / "grid.yaml").write_text("max_new_tokens: [2]\n")
    (tmp_path / "bad.json").write_text("{max_new_tokens: [2]")
    (tmp_path / "grid.toml").write_text("max_new_tokens = [2, 3]\n")

    def no_sweep(*a: Any, **k: Any) -> Any:
        raise AssertionError("the sweep ran")

    monkeypatch.setattr(sweep_mod, "sweep", no_sweep)
    argv = [x.replace("{dir}", str(tmp_path)) for x in extra]
    assert main(_sweep(tiny_model_dir, tmp_path / "r.sqlite", *argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: ")
    assert err.count("\n") == 1
    assert says in err


def test_toml_and_json_grid_files_give_the_same_grid(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text('max_new_tokens = [8, 16]\ndtype = "float32"\n')
    (tmp_path / "g.json").write_text('{"max_new_tokens": [8, 16], "dtype": "float32"}')
    want = {"max_new_tokens": [8, 16], "dtype": "float32"}
    assert sweep_cmd.read_grid(str(tmp_path / "g.toml")) == want
    assert sweep_cmd.read_grid(str(tmp_path / "g.json")) == want
    ns = argparse.Namespace(grid=str(tmp_path / "g.toml"), **{
        f"axis_{k}": None for k in sweep_cmd.GRID_FLAGS})  # fmt: skip
    ns.axis_do_sample = "true,false"
    assert sweep_cmd.grid_from_args(ns) == {**want, "do_sample": [True, False]}


def test_a_grid_file_drives_the_sweep(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text("max_new_tokens = [2]\nbatch_size = [1, 2]\n")
    argv = _sweep(tiny_model_dir, tmp_path / "r.sqlite", "--grid", str(grid), "--json")
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(r["batch_size"] for r in doc["runs"]) == [1, 2]


def test_a_process_pool_executor(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """process:1: the point runs in a worker process; the driver stores it."""
    store = tmp_path / "r.sqlite"
    argv = _sweep(tiny_model_dir, store, "--max-new-tokens", "2", "--executor", "process:1")
    assert main([*argv, "--json", "--experiment", "pool"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (run,) = doc["runs"]
    with Store(store) as s:
        loaded = s.load(run["run_id"])
    assert loaded.settings["sweep_worker"]["pid"] != os.getpid()


@pytest.mark.allow_threads("Dask's client keeps its IO-loop threads for the process's life")
def test_a_local_dask_cluster_executor(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _sweep(tiny_model_dir, tmp_path / "r.sqlite", "--max-new-tokens", "2", "--json",
                  "--executor", "local-cluster:1")  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    (run,) = json.loads(captured.out)["runs"]
    assert run["status"] == "completed"
    assert "INFO" not in captured.err  # Dask's own lines stay out of the command's stderr


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_the_sweeps_progress_only_on_a_terminal(
    tiny_model_dir: Path, tmp_path: Path, tty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = FakeTTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    argv = ["sweep", "--model", str(tiny_model_dir), "--prompt", "Hi", "--max-new-tokens",
            "2,3", "--power", "estimate", "--baseline-s", "0", "--no-store",
            "--experiment", "bar"]  # fmt: skip
    assert main(argv) == 0
    err = stream.getvalue()
    if tty:
        assert "\rsweep bar: 0/2 points done" in err
        assert "\rsweep bar: 2/2 points done" in err
        assert "\x1b[K" in err  # erase-line reaches the terminal, not shown as text
        assert "\\x1b" not in err
        assert err.endswith("\x1b[K\n")
    else:
        assert "points done" not in err
        assert "\r" not in err
