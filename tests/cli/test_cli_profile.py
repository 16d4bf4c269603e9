"""`llm-energy profile --sample / --overhead-budget`: passed to EnergyProfiler, a bad value is the
profiler's error (exit code 2, before the model loads), and the printed summary says which
tokens were instrumented, the profiling overhead and what J/token rests on."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from support.sampled import sampled_run

import llm_energy_widget.profiler as profiler_mod
from llm_energy_widget.cli import build_parser, main, profile_cmd


class FakeProfiler:
    """Records its keywords; its generate returns the hand-built sampled run."""

    kwargs: ClassVar[dict[str, Any]] = {}
    loads: ClassVar[list[Any]] = []

    def __init__(self, model: Any, tok: Any, **kw: Any) -> None:
        FakeProfiler.kwargs = kw

    def generate(self, prompt: str, **kw: Any) -> Any:
        return sampled_run()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeProfiler]:
    loads: list[Any] = []

    def load(arg: Any) -> Any:
        loads.append(arg)
        return SimpleNamespace(config=SimpleNamespace(_llm_energy_name="fake")), None

    monkeypatch.setattr(profile_cmd, "_load", load)
    monkeypatch.setattr(profiler_mod, "EnergyProfiler", FakeProfiler)
    FakeProfiler.kwargs = {}
    FakeProfiler.loads = loads
    return FakeProfiler


@pytest.mark.parametrize(
    ("argv", "sample", "budget"),
    [
        ([], None, None),
        (["--sample", "all"], "all", None),
        (["--sample", "4"], 4, None),
        (["--overhead-budget", "0.02"], None, 0.02),
    ],
)
def test_the_flags_reach_the_profiler(
    fake: type[FakeProfiler],
    argv: list[str],
    sample: Any,
    budget: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["profile", "--prompt", "hi", "--no-store", "--quiet", *argv]) == 0
    assert fake.kwargs["sample"] == sample
    assert fake.kwargs["overhead_budget"] == budget


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--sample", "0"], 'sample must be "all" or a whole number k >= 1'),
        (["--sample", "some"], "got 'some'"),
        (["--overhead-budget", "1.5"], "overhead_budget must be a fraction in (0, 1)"),
        (
            ["--sample", "2", "--overhead-budget", "0.1"],
            "pass sample= or overhead_budget=, not both",
        ),
    ],
)
def test_a_bad_value_is_the_profilers_error_before_the_model_loads(
    fake: type[FakeProfiler], argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", "--prompt", "hi", "--no-store", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: --sample / --overhead-budget: ")
    assert says in err
    assert fake.loads == []
    assert fake.kwargs == {}


def test_the_help_names_both_flags() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["profile"].format_help()
    assert "--sample all|K" in text
    assert "--overhead-budget F" in text


def test_the_printed_summary_says_which_tokens_and_the_overhead(
    fake: type[FakeProfiler], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", "--prompt", "hi", "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "  instrumented tokens: 0, 7, 15, 22 (4 of 24)\n" in out
    assert "  profiling overhead +" in out
    assert "% on 3 instrumented decode tokens, 20 bare (" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("decode J/token "))
    assert line.endswith("J (modeled, from 20 bare decode tokens of 23)")
    assert (
        "  decode J/token, decode tokens/J, decode tokens/s: the 20 bare decode tokens of 23 "
        "(not the instrumented)\n" in out
    )
    assert "  7+  tok7 " in out  # the token table marks the instrumented ones
    assert "  + instrumented (the layer hooks ran)" in out
    assert ", over 4 instrumented tokens of 24\n" in out
