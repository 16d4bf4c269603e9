"""Bad input through the API, one table: each case fails with one line naming the problem,
before a run exists, and leaves the store as it was (issue 14: the fault suite's 112 API
cases, the CLI's are in test_bad_cli_inputs.py).

Each row: (what the case is, keywords of EnergyProfiler, the prompt, keywords of generate, a
fragment the one-line error must contain). A row whose profiler keywords are bad fails at
EnergyProfiler(); the rest fail at generate().
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from support.models import tiny_llama
from support.sources import ConstantSource

from llm_energy_widget.errors import EnergyWidgetError, InvalidInputError
from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

P = "Energy is the capacity to do work"
NAN, INF = math.nan, math.inf
USER = {"role": "user", "content": "hi"}

# (case, profiler kw, prompt, generate kw, message)
CASES: list[tuple[str, dict[str, Any], Any, dict[str, Any], str]] = [
    ("unknown level", {"level": "everything"}, P, {}, "level must be one of"),
    ("interval 0", {"interval_ms": 0}, P, {}, "interval_ms must be a positive number"),
    ("interval negative", {"interval_ms": -5}, P, {}, "interval_ms must be a positive number"),
    ("interval NaN", {"interval_ms": NAN}, P, {}, "interval_ms must be a finite number"),
    ("interval inf", {"interval_ms": INF}, P, {}, "interval_ms must be a finite number"),
    ("interval text", {"interval_ms": "100"}, P, {}, "interval_ms must be a number"),
    ("baseline negative", {"baseline_s": -1}, P, {}, "baseline_s (seconds) must be >= 0"),
    ("baseline NaN", {"baseline_s": NAN}, P, {}, "baseline_s (seconds) must be a finite"),
    ("tags a string", {"tags": "abc"}, P, {}, "did you mean ['abc']"),
    ("tags not strings", {"tags": [1, 2]}, P, {}, "tags must be a list of strings"),
    ("experiment a number", {"experiment": 5}, P, {}, "experiment must be a string"),
    ("price negative", {"price_per_kwh": -1}, P, {}, "price_per_kwh must be >= 0"),
    ("price NaN", {"price_per_kwh": NAN}, P, {}, "price_per_kwh must be a finite number"),
    ("price text", {"price_per_kwh": "cheap"}, P, {}, "price_per_kwh must be a number"),
    ("carbon negative", {"carbon_g_per_kwh": -3}, P, {}, "carbon_g_per_kwh must be >= 0"),
    ("warmup text", {"warmup": "yes"}, P, {}, "warmup must be True or False"),
    ("overlap int", {"overlap": 1}, P, {}, "overlap must be True or False"),
    ("sample 0", {"sample": 0}, P, {}, "sample must be"),
    ("sample text", {"sample": "some"}, P, {}, "sample must be"),
    ("budget above 1", {"overhead_budget": 1.5}, P, {}, "overhead_budget must be"),
    ("budget NaN", {"overhead_budget": NAN}, P, {}, "must be a finite number"),
    ("sample and budget", {"sample": 2, "overhead_budget": 0.1}, P, {}, "not both"),
    ("store a number", {"store": 3}, P, {}, "store must be True, False, None, a path"),
    ("unknown power", {"power": "nope"}, P, {}, "unknown power source 'nope'"),
    ("empty prompt", {}, "", {}, "the prompt is empty"),
    ("blank prompt", {}, "   \n", {}, "the prompt is empty"),
    ("prompt a number", {}, 42, {}, "prompt must be a non-empty string"),
    ("prompt empty list", {}, [], {}, "prompt must be a non-empty string"),
    ("message without role", {}, [{"content": "hi"}], {}, "chat message 0 has no 'role'"),
    ("unknown role", {}, [{"role": "wizard", "content": "hi"}], {}, "unknown role 'wizard'"),
    ("content None", {}, [{"role": "user", "content": None}], {}, "has content None"),
    ("content a number", {}, [{"role": "user", "content": 5}], {}, "has content 5"),
    ("second message bad", {}, [USER, {"role": "assistant"}], {}, "chat message 1"),
    ("messages without text", {}, [{"role": "user", "content": " "}], {}, "have no content"),
    ("chat maybe", {}, P, {"chat": "maybe"}, 'chat must be "auto", True or False'),
    ("chat=True with ids", {}, torch.tensor([[1, 2]]), {"chat": True}, "chat=True applies"),
    ("chat=False messages", {}, [USER], {"chat": False}, "chat=False sends text"),
    ("negative id", {}, torch.tensor([[1, -3]]), {}, "input ids must be >= 0, got -3"),
    ("id out of vocab", {}, torch.tensor([[1, 10**6]]), {}, "outside the model's vocabulary"),
    ("float ids", {}, torch.tensor([[1.5]]), {}, "input ids must be integers"),
    ("empty ids", {}, torch.zeros((1, 0), dtype=torch.long), {}, "input_ids is empty"),
    ("prompt over context", {}, torch.ones((1, 300), dtype=torch.long), {}, "longer than"),
    ("max_new_tokens 0", {}, P, {"max_new_tokens": 0}, "max_new_tokens must be a positive"),
    ("max_new_tokens negative", {}, P, {"max_new_tokens": -3}, "max_new_tokens must be"),
    ("max_new_tokens float", {}, P, {"max_new_tokens": 2.5}, "max_new_tokens must be"),
    ("min_new_tokens negative", {}, P, {"min_new_tokens": -1}, "min_new_tokens must be"),
    ("num_beams 0", {}, P, {"num_beams": 0}, "num_beams must be a positive integer"),
    ("num_beams float", {}, P, {"num_beams": 1.5}, "num_beams must be a positive integer"),
    ("temperature NaN", {}, P, {"do_sample": True, "temperature": NAN}, "temperature must be"),
    ("temperature negative", {}, P, {"do_sample": True, "temperature": -1}, "temperature must"),
    ("top_p 2", {}, P, {"do_sample": True, "top_p": 2}, "top_p must be in (0, 1]"),
    ("top_k negative", {}, P, {"do_sample": True, "top_k": -1}, "top_k must be an integer >= 0"),
    ("repetition penalty 0", {}, P, {"repetition_penalty": 0}, "repetition_penalty must be > 0"),
    ("more sequences than beams", {}, P, {"num_beams": 2, "num_return_sequences": 3},
     "num_return_sequences"),
    ("typo in a keyword", {}, P, {"max_new_tokenz": 3}, "did you mean 'max_new_tokens'"),
    ("profiler setting to generate", {}, P, {"baseline_s": 0}, "a setting of the profiler"),
    ("streamer", {}, P, {"streamer": object()}, "'streamer' is set by the profiler"),
    ("tags string in generate", {}, P, {"tags": "abc"}, "tags must be a list of strings"),
    ("experiment a list", {}, P, {"experiment": ["a"]}, "experiment must be a string"),
    ("settings a list", {}, P, {"settings": [1]}, "settings must be a dict"),
]  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_llama(layers=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "runs.sqlite")
    s.save(synthetic_run(n_tokens=3, seed=1))
    return s


@pytest.mark.parametrize(
    ("case", "prof_kw", "prompt", "gen_kw", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    case: str,
    prof_kw: dict[str, Any],
    prompt: Any,
    gen_kw: dict[str, Any],
    message: str,
    model: Any,
    smollm_tokenizer: Any,
    store: Store,
) -> None:
    before = _digest(store.path)
    kw: dict[str, Any] = {"power": ConstantSource(10.0), "store": store, "baseline_s": 0.0}
    kw.update(prof_kw)
    made: list[EnergyProfiler] = []

    def attempt() -> None:
        made.append(EnergyProfiler(model, smollm_tokenizer, **kw))
        made[0].generate(prompt, **gen_kw)

    with pytest.raises(EnergyWidgetError) as info:
        attempt()
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text
    assert isinstance(info.value, InvalidInputError) or "unknown power" in text
    assert all(p.runs == [] for p in made)  # no run was created
    assert _digest(store.path) == before
    assert store.ids() == [store.ids()[0]]


def test_table_size() -> None:
    assert len(CASES) >= 55
