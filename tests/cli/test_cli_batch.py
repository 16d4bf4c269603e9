"""`llm-energy profile` batches: --prompt repeated is one batch, --batch N replicates one prompt;
bad combinations fail before the model loads; the printed run shows each sequence."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from support.models import tiny_llama
from support.profilers import quick_profiler
from support.sampled import sampled_run

import llm_energy_widget.profiler as profiler_mod
from llm_energy_widget.cli import build_parser, main, profile_cmd
from llm_energy_widget.cli.run_text import print_run


class FakeProfiler:
    prompts: ClassVar[list[Any]] = []

    def __init__(self, model: Any, tok: Any, **kw: Any) -> None:
        pass

    def generate(self, prompt: Any, **kw: Any) -> Any:
        FakeProfiler.prompts.append(prompt)
        return sampled_run()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    def load(arg: Any) -> Any:
        seen.append(arg)
        return SimpleNamespace(config=SimpleNamespace(_llm_energy_name="fake")), None

    monkeypatch.setattr(profile_cmd, "_load", load)
    monkeypatch.setattr(profiler_mod, "EnergyProfiler", FakeProfiler)
    FakeProfiler.prompts = []
    return seen


@pytest.mark.parametrize(
    ("argv", "prompt"),
    [
        (["--prompt", "a"], "a"),
        (["--prompt", "a", "--prompt", "b c"], ["a", "b c"]),
        (["--prompt", "a", "--batch", "3"], ["a", "a", "a"]),
        (["--prompt", "a", "--batch", "1"], "a"),
    ],
)
def test_prompts_and_batch_reach_generate(loads: list[Any], argv: list[str], prompt: Any) -> None:
    assert main(["profile", *argv, "--no-store", "--quiet"]) == 0
    assert FakeProfiler.prompts == [prompt]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--prompt", "a", "--batch", "0"], "--batch must be a positive integer, got 0"),
        (["--prompt", "a", "--prompt", "b", "--batch", "2"], "--batch 2 replicates one prompt"),
        (["--prompt", "a", "--prompt", " "], "--prompt is empty (prompt 1)"),
    ],
)
def test_bad_batches_fail_before_the_load(
    loads: list[Any], argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", *argv, "--no-store"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: ")
    assert says in err
    assert loads == []


def test_the_help_states_the_defaults() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["profile"].format_help().split())
    assert "repeat it to profile several prompts as one batch" in text
    assert "--batch N" in text
    assert "(default: 1, no batch)" in text


def test_the_printed_run_shows_each_sequence(smollm_tokenizer: Any) -> None:
    prompts = ["Energy is", "The capital of France is"]
    run = quick_profiler(tiny_llama(), smollm_tokenizer, level="token").generate(
        prompts, chat=False, max_new_tokens=3, do_sample=False
    )
    assert run.wait(60)
    out = io.StringIO()
    print_run(run, out)
    text = out.getvalue()
    assert "batch of 2 sequences" in text
    for q in run.summary()["sequences"]:
        line = f"  sequence {q['sequence']}: 3 tokens, {q['energy_j']:.3g} J  {q['text']!r}\n"
        assert line in text
    assert "response: " not in text
    assert "J: the token's equal share of its step's energy (modeled)" in text
