"""Bad input through the CLI, one table: each case exits 2 with one line `llm-energy: error: ...`
naming the problem, fails before a model is loaded (milliseconds, not the 5-20 s of a load), and
leaves the store as it was (issue 14; the API's cases are in test_bad_inputs.py).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

PROFILE = ["profile", "--prompt", "hi", "--no-store"]
MISSING = "{dir}/nonexistent-dir/x"

# (case, arguments, a fragment the one-line error must contain); {store} is a stored run's store,
# {run} its run id, {dir} a folder
CASES: list[tuple[str, list[str], str]] = [
    ("max-new-tokens 0", [*PROFILE, "--max-new-tokens", "0"], "--max-new-tokens must be positive"),
    ("max-new-tokens negative", [*PROFILE, "--max-new-tokens", "-5"], "--max-new-tokens must be"),
    ("max-new-tokens text", [*PROFILE, "--max-new-tokens", "many"], "--max-new-tokens"),
    ("empty prompt", ["profile", "--prompt", " ", "--no-store"], "--prompt is empty"),
    ("interval NaN", [*PROFILE, "--interval-ms", "nan"], "interval_ms must be a finite number"),
    ("interval 0", [*PROFILE, "--interval-ms", "0"], "interval_ms must be a positive number"),
    ("interval inf", [*PROFILE, "--interval-ms", "inf"], "interval_ms must be a finite number"),
    ("baseline negative", [*PROFILE, "--baseline-s", "-1"], "baseline_s (seconds) must be >= 0"),
    ("baseline NaN", [*PROFILE, "--baseline-s", "nan"], "baseline_s (seconds) must be a finite"),
    ("unknown power", [*PROFILE, "--power", "nope"], "unknown power source 'nope'"),
    ("replay file missing", [*PROFILE, "--power", f"replay:{MISSING}.csv"], "x.csv"),
    ("unknown level", [*PROFILE, "--level", "everything"], "--level"),
    ("temperature NaN", [*PROFILE, "--do-sample", "--temperature", "nan"], "temperature must be"),
    ("temperature 0", [*PROFILE, "--do-sample", "--temperature", "0"], "temperature must be > 0"),
    ("model missing", [*PROFILE, "--model", MISSING], "x"),
    ("store is a folder", ["profile", "--prompt", "hi", "--store", "{dir}"], "is a directory"),
    ("store under a file", ["profile", "--prompt", "hi", "--store", "{store}/r.sqlite"],
     "runs.sqlite"),
    ("json under a file", [*PROFILE, "--json", "{store}/run.json"], "is a file, not a folder"),
    ("json a folder", [*PROFILE, "--json", "{dir}"], "is a directory"),
    ("sample 0", [*PROFILE, "--sample", "0"], "sample must be"),
    ("overhead budget 2", [*PROFILE, "--overhead-budget", "2"], "overhead_budget must be"),
    ("sample and budget", [*PROFILE, "--sample", "2", "--overhead-budget", "0.1"], "not both"),
    ("unknown command", ["profiel"], "profiel"),
    ("power source nope", ["power", "--source", "nope"], "unknown power source 'nope'"),
    ("power interval", ["power", "--interval-ms", "-5"], "--interval-ms must be a positive"),
    ("power seconds", ["power", "--seconds", "-1"], "--seconds must be a positive number"),
    ("power file missing", ["power", "--file", f"{MISSING}.csv"], "no such file"),
    ("show unknown run", ["show", "zzzz", "--store", "{store}"], "zzzz"),
    ("show missing store", ["show", "abc", "--store", f"{MISSING}.sqlite"], "no run store at"),
    ("runs missing store", ["runs", "--store", f"{MISSING}.sqlite"], "no run store at"),
    ("runs negative limit", ["runs", "--store", "{store}", "--limit", "-1"], "--limit"),
    ("export bad format", ["export", "{run}", "--format", "xls", "--out", "o", "--store",
                           "{store}"], "--format"),
    ("export under a file", ["export", "{run}", "--format", "json", "--out", "{store}/r.json",
                             "--store", "{store}"], "runs.sqlite"),
    ("compare unknown", ["compare", "zzzz", "--store", "{store}"], "zzzz"),
    ("delete unknown", ["delete", "zzzz", "--yes", "--store", "{store}"], "zzzz"),
]  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "runs.sqlite"
    run = synthetic_run(n_tokens=3, seed=1)
    with Store(path) as s:
        s.save(run)
    return path, run.run_id


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_cli_input_is_one_line_exit_2_and_changes_nothing(
    case: str,
    args: list[str],
    message: str,
    store: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, rid = store
    loads: list[object] = []
    monkeypatch.setattr("llm_energy_widget.cli.profile_cmd._load", loads.append)
    argv = [a.format(store=path, run=rid, dir=tmp_path) for a in args]
    before = _digest(path)
    t0 = time.perf_counter()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("llm-energy: error:"), err
    assert err.count("\n") == 1, err
    assert message in err, err
    assert loads == []  # refused before the model loads
    assert time.perf_counter() - t0 < 5
    assert _digest(path) == before
    assert not (tmp_path / "nonexistent-dir").exists()  # nothing created on the way


def test_price_env_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_ENERGY_PRICE_PER_KWH", "abc")
    monkeypatch.setattr("llm_energy_widget.cli.profile_cmd._load", lambda _m: None)
    assert main([*PROFILE]) == 2
    err = capsys.readouterr().err
    assert "LLM_ENERGY_PRICE_PER_KWH='abc' is not a finite number" in err


def test_ctrl_c_during_profile_exits_130_and_keeps_the_run(
    tmp_path: Path,
    smollm_tokenizer: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from support.models import tiny_llama

    from llm_energy_widget.run import Run

    model = tiny_llama()
    model.config._llm_energy_name = "tiny"
    loaded = (model, smollm_tokenizer)
    monkeypatch.setattr("llm_energy_widget.cli.profile_cmd._load", lambda _m: loaded)
    real_wait = Run.wait
    calls: list[int] = []

    def interrupted_wait(self: Run, timeout: float | None = None) -> bool:
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real_wait(self, timeout)

    monkeypatch.setattr(Run, "wait", interrupted_wait)
    path = tmp_path / "runs.sqlite"
    argv = ["profile", "--prompt", "hi", "--store", str(path), "--power", "estimate",
            "--baseline-s", "0", "--max-new-tokens", "200"]  # fmt: skip
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    deadline = time.monotonic() + 20  # the store writer finishes on its own thread
    with Store(path) as s:
        while not s.ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        (rid,) = s.ids()
        assert s.load(rid).status in ("cancelled", "completed")
