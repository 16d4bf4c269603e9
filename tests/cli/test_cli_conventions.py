"""Conventions every command keeps: each option's help states its default, --version, the exit
statuses of --help (0 ok, 1 partial, 2 usage/input, 130 interrupted), the power source checked
before any model loads, and --seed making a sampled run repeat."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest

import llm_energy_widget.profiler as profiler_mod
from llm_energy_widget._version import __version__
from llm_energy_widget.cli import EXIT_CODES, build_parser, main, profile_cmd
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.power.registry import list_sources
from llm_energy_widget.testing import synthetic_run

FAST = ["--power", "estimate", "--baseline-s", "0", "--no-warmup", "--level", "token"]
FLAG_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._SubParsersAction,
)


def _parsers(parser: argparse.ArgumentParser, name: str = "llm-energy") -> list[Any]:
    """(name, parser) for the parser and every subparser under it, nested ones too."""
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parsers(sub, f"{name} {sub_name}")
    return out


def test_every_options_help_states_its_default() -> None:
    missing = []
    names = []
    for name, parser in _parsers(build_parser()):
        names.append(name)
        for action in parser._actions:
            if isinstance(action, FLAG_ACTIONS) or not action.option_strings or action.required:
                continue
            text = (action.help or "") % {"default": action.default}
            shown = (
                {str(action.default)} if action.default not in (None, argparse.SUPPRESS) else set()
            )
            if "default" not in text and not any(d in text for d in shown):
                missing.append(f"{name} {action.option_strings[0]}")
    assert missing == []
    # the walk reached the nested and the new commands
    for name in ("llm-energy runs prune", "llm-energy sweep", "llm-energy profile"):
        assert name in names


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    text = (Path(__file__).parents[2] / "llm_energy_widget" / "_version.py").read_text()
    assert f'__version__ = "{__version__}"' in text
    assert capsys.readouterr().out == f"llm-energy {__version__}\n"


def test_help_documents_the_exit_statuses() -> None:
    text = build_parser().format_help()
    assert sorted(EXIT_CODES) == [0, 1, 2, 130]
    for code in EXIT_CODES:
        assert f"\n  {code:<4} " in text
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in doc


# -- exit statuses --------------------------------------------------------------------------------
class FakeProfiler:
    """generate() returns `FakeProfiler.run`; the profiler's keywords are ignored."""

    run: Any = None

    def __init__(self, model: Any, tok: Any, **kw: Any) -> None:
        pass

    def generate(self, prompt: str, **kw: Any) -> Any:
        return FakeProfiler.run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeProfiler]:
    from types import SimpleNamespace

    monkeypatch.setattr(
        profile_cmd,
        "_load",
        lambda arg: (SimpleNamespace(config=SimpleNamespace(_llm_energy_name="fake")), None),
    )
    monkeypatch.setattr(profiler_mod, "EnergyProfiler", FakeProfiler)
    return FakeProfiler


PROFILE = ["profile", "--prompt", "hi", "--no-store", "--quiet", "--power", "estimate"]


def test_exit_0_completed(fake: type[FakeProfiler], capsys: pytest.CaptureFixture[str]) -> None:
    fake.run = synthetic_run(n_tokens=3, n_layers=1)
    assert main(PROFILE) == 0


def test_exit_1_a_run_that_ended_incomplete(
    fake: type[FakeProfiler], capsys: pytest.CaptureFixture[str]
) -> None:
    run = synthetic_run(n_tokens=3, n_layers=1, finish=False)
    Recorder(run).finish("incomplete", "the power source stopped")
    fake.run = run
    assert main(PROFILE) == 1


def test_exit_2_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--prompt", "hi", "--max-new-tokens", "x"]) == 2
    assert capsys.readouterr().err.startswith("llm-energy: error: ")


def test_exit_130_interrupted_while_generating(
    fake: type[FakeProfiler], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the run: cancelled, the partial run printed, exit 130."""
    run = synthetic_run(n_tokens=3, n_layers=1, finish=False)
    calls = []

    def wait(timeout: float | None = None) -> bool:
        calls.append(timeout)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return True

    def cancel() -> None:
        Recorder(run).finish("cancelled", "cancelled by the user")

    run.wait = wait  # type: ignore[method-assign]
    run.cancel = cancel  # type: ignore[method-assign]
    fake.run = run
    assert main(PROFILE) == 130
    assert run.status == "cancelled"
    err = capsys.readouterr().err
    assert f"interrupted: the partial run {run.run_id} keeps what it measured" in err


def test_exit_130_interrupted_while_loading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def load(arg: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_cmd, "_load", load)
    assert main(PROFILE) == 130
    assert capsys.readouterr().err.endswith("llm-energy: interrupted\n")


# -- checks before the load -----------------------------------------------------------------------
def test_an_unavailable_power_source_fails_in_under_a_second_without_a_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unavailable = [r["name"] for r in list_sources() if not r["available"]]
    if not unavailable:
        pytest.skip("every power source works on this machine")

    def load(arg: Any) -> Any:
        raise AssertionError("the model was loaded before the power source was checked")

    monkeypatch.setattr(profile_cmd, "_load", load)
    t0 = time.perf_counter()
    code = main(["profile", "--prompt", "hi", "--no-store", "--power", unavailable[0]])
    elapsed_s = time.perf_counter() - t0
    assert code == 2
    assert elapsed_s < 1.0
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--device", "cuda:99"], "--device cuda:99"),
        (["--device", "tpu"], "--device 'tpu': not a device"),
        (["--dtype", "int8"], "--dtype"),
        (["--seed", "-1"], "--seed must be a whole number >= 0"),
    ],
)
def test_device_dtype_seed_checked_before_the_load(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def load(arg: Any) -> Any:
        raise AssertionError("loaded")

    monkeypatch.setattr(profile_cmd, "_load", load)
    assert main([*PROFILE, *argv]) == 2
    assert says in capsys.readouterr().err


# -- device, dtype, seed --------------------------------------------------------------------------
def _sampled(model_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    argv = ["profile", "--prompt", "Hello", "--model", str(model_dir), "--max-new-tokens", "6",
            "--no-store", "--quiet", "--json", "-", *FAST, *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)  # the summary goes to stderr with --json -


def test_seed_repeats_a_sampled_run_and_device_dtype_are_applied(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _sampled(tiny_model_dir, capsys, "--do-sample", "--seed", "7")
    b = _sampled(tiny_model_dir, capsys, "--do-sample", "--seed", "7", "--device", "cpu")
    c = _sampled(tiny_model_dir, capsys, "--do-sample", "--seed", "8", "--dtype", "bfloat16")
    ids = [[t["token_id"] for t in d["tokens"]] for d in (a, b, c)]
    assert len(ids[0]) == 6
    assert ids[0] == ids[1]  # the same seed: the same sampled tokens
    assert ids[0] != ids[2]  # another seed (and dtype) on a random 49k-token model: others
    assert a["settings"]["generate_kwargs"]["do_sample"] is True
    assert b["settings"]["device"] == "cpu"
    assert c["settings"]["dtype"] == "bfloat16"
    assert a["settings"]["dtype"] == "float32"  # auto: as loaded
