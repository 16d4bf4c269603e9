"""Faults injected into a run: whatever raises, wherever, the run ends, the model is released
(the next run on it works), no hook is left behind and nothing measured is lost.

Each of these hung for good before (fault suite, issue 14): a NaN `interval_ms` raised while
making the sampler, outside the try that finishes the run, so `wait()` never returned and every
later run on the model stayed queued; a power source whose `close()` raised did the same.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from support.archs import hook_count
from support.models import tiny_llama
from support.profilers import quick_profiler
from support.sources import ConstantSource

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.profiling import generation

PROMPT = "The capital of France is"


def _profiler(model: Any, tok: Any, **kw: Any) -> EnergyProfiler:
    kw.setdefault("baseline_s", 0.0)
    kw.setdefault("warmup", False)
    return quick_profiler(model, tok, **kw)


def _next_run_works(model: Any, tok: Any) -> None:
    run = _profiler(model, tok).generate(PROMPT, max_new_tokens=2, do_sample=False)
    assert run.wait(60), "the next run on the model started and ended"
    assert run.status == "completed", run.end_reason


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"interval_ms": math.nan}, "interval_ms"),
        ({"interval_ms": math.inf}, "interval_ms"),
        ({"interval_ms": -5}, "interval_ms"),
        ({"interval_ms": "100"}, "interval_ms"),
        ({"baseline_s": math.nan}, "baseline_s"),
        ({"baseline_s": -1.0}, "baseline_s"),
        ({"tags": "abc"}, "tags"),
        ({"tags": ["ok", 3]}, "tags"),
        ({"experiment": 7}, "experiment"),
    ],
)
def test_bad_settings_are_refused_before_any_run(
    kw: dict[str, Any], names: str, smollm_tokenizer: Any
) -> None:
    model = tiny_llama()
    with pytest.raises(InvalidInputError, match=names) as exc:
        _profiler(model, smollm_tokenizer, **kw)
    assert "\n" not in str(exc.value), "one line"
    _next_run_works(model, smollm_tokenizer)


STEPS = ["_begin", "_start_sampler", "_baseline", "_tokenize", "_generate", "_tail", "_detokenize"]


@pytest.mark.parametrize("step", STEPS)
def test_an_exception_at_any_step_ends_the_run_and_frees_the_model(
    step: str, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_llama()

    def boom(*_a: Any, **_kw: Any) -> Any:
        raise RuntimeError(f"injected in {step}")

    monkeypatch.setattr(generation.Generation, step, boom)
    run = _profiler(model, smollm_tokenizer, level="component").generate(
        PROMPT, max_new_tokens=3, do_sample=False
    )
    assert run.wait(60), "wait() returns"
    assert run.status == "failed"
    assert f"injected in {step}" in (run.end_reason or "")
    assert hook_count(model) == 0
    monkeypatch.undo()
    _next_run_works(model, smollm_tokenizer)


def test_the_sampler_failing_to_be_made_ends_the_run(
    smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_llama()

    def no_sampler(*_a: Any, **_kw: Any) -> Any:
        raise InvalidInputError("interval_ms must be a positive number, got nan")

    monkeypatch.setattr(generation, "PowerSampler", no_sampler)
    run = _profiler(model, smollm_tokenizer).generate(PROMPT, max_new_tokens=2)
    assert run.wait(30)
    assert run.status == "failed"
    assert "setting up the power sampler" in (run.end_reason or "")
    monkeypatch.undo()
    _next_run_works(model, smollm_tokenizer)


class _CloseRaises(ConstantSource):
    name = "close-raises"

    def close(self) -> None:
        super().close()
        raise OSError("device vanished while closing")


def test_a_source_whose_close_raises_does_not_wedge_the_run(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    run = _profiler(model, smollm_tokenizer, power=_CloseRaises(10.0)).generate(
        PROMPT, max_new_tokens=3, do_sample=False
    )
    assert run.wait(60)
    assert run.status == "completed", run.end_reason
    assert run.n_tokens == 3, "what it measured is kept"
    assert any("closing the power source failed" in w for w in run.warnings), run.warnings
    assert any("device vanished" in w for w in run.warnings)
    _next_run_works(model, smollm_tokenizer)


def test_a_cancel_at_once_still_frees_the_model(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    run = _profiler(model, smollm_tokenizer).generate(PROMPT, max_new_tokens=50)
    run.cancel()
    assert run.wait(60)
    assert run.status == "cancelled"
    assert hook_count(model) == 0
    _next_run_works(model, smollm_tokenizer)
