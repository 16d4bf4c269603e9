"""Sampled instrumentation on tiny random models: bare tokens really run bare, outputs do not
change, and a mix of instrumented and bare tokens survives the store and the exports."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from support.archs import hook_count
from support.models import tiny_llama
from support.profilers import quick_profiler
from transformers.models.llama import modeling_llama

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.profiling import deep, forward_wrap
from llm_energy_widget.profiling.layer_profiler import LayerProfiler
from llm_energy_widget.store import Store

PROMPT = "Energy is the capacity to do work"
OURS = {inspect.getsourcefile(forward_wrap), inspect.getsourcefile(deep)}


def _finished(run: Any) -> None:
    assert run.wait(60), "run did not finish"
    assert run.status == "completed", run.end_reason


class PathProbe:
    """Patches LlamaMLP.forward (called inside every decoder layer, under the layer's wrapper
    when instrumented) to record, per model forward, what the call path held."""

    def __init__(self, model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.first = model.model.layers[0].mlp
        self.steps: list[dict[str, Any]] = []
        self.profilers: list[LayerProfiler] = []
        original = modeling_llama.LlamaMLP.forward
        probe = self

        def forward(mod: Any, x: torch.Tensor) -> torch.Tensor:
            if mod is probe.first:
                probe.steps.append(probe.look(mod))
            return original(mod, x)

        monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", forward)
        attach = LayerProfiler.attach

        def recording_attach(lp: LayerProfiler) -> dict[str, Any]:
            self.profilers.append(lp)
            return attach(lp)

        monkeypatch.setattr(LayerProfiler, "attach", recording_attach)

    def look(self, mod: Any) -> dict[str, Any]:
        frames = 0
        f: FrameType | None = sys._getframe(1)
        while f is not None:
            frames += f.f_code.co_filename in OURS
            f = f.f_back
        lp = self.profilers[-1] if self.profilers else None
        return {
            "our_frames": frames,
            "wrapped": "forward" in mod.down_proj.__dict__,
            "hooks": len(mod.gate_proj._forward_hooks),
            "attn": str(mod.config._attn_implementation),
            "pending": lp.pending if lp is not None else 0,
        }


@pytest.mark.parametrize(("level", "sample"), [("component", 3), ("deep", 2), ("layer", None)])
def test_bare_tokens_have_nothing_of_ours_in_their_call_path(
    level: str, sample: int | None, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_llama(layers=3)
    probe = PathProbe(model, monkeypatch)
    kw: dict[str, Any] = {"sample": sample} if sample else {"sample": None}
    run = quick_profiler(model, smollm_tokenizer, level=level, warmup=False, **kw).generate(
        PROMPT, chat=False, max_new_tokens=12, min_new_tokens=12, do_sample=False
    )
    _finished(run)
    flags = [t["instrumented"] for t in run.tokens()]
    assert len(probe.steps) == len(flags) == 12  # one forward per token, no warm-up
    if sample:
        assert flags == [i % sample == 0 for i in range(12)]
    assert flags[0] is True
    assert False in flags
    for step, inst in zip(probe.steps, flags, strict=True):
        if inst:
            assert step["our_frames"] >= 1, step  # the decoder layer's wrapper
            assert step["wrapped"] == (level != "layer"), step
        else:  # bare: no frame of ours, no wrapper, no hook, no tap, no reduction running
            bare = {"our_frames": 0, "wrapped": False, "hooks": 0, "pending": 0}
            assert {k: step[k] for k in bare} == bare, step
            assert not step["attn"].startswith("llm_energy_tap"), step
        if level == "deep" and inst:
            assert step["attn"].startswith("llm_energy_tap"), step
            assert step["hooks"] == 1, step  # the MLP gate's
    assert hook_count(model) == 0
    assert "forward" not in model.model.layers[0].mlp.down_proj.__dict__


@pytest.mark.parametrize(
    "kw", [{"sample": None}, {"sample": 3}, {"sample": None, "overhead_budget": 0.5}]
)
def test_outputs_unchanged_with_sampling(kw: dict[str, Any], smollm_tokenizer: Any) -> None:
    model = tiny_llama(layers=2)
    enc = smollm_tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=0)
    expected = plain[0, enc["input_ids"].shape[1] :].tolist()
    run = quick_profiler(model, smollm_tokenizer, level="deep", **kw).generate(
        PROMPT, chat=False, max_new_tokens=16, do_sample=False, pad_token_id=0
    )
    _finished(run)
    assert [t["token_id"] for t in run.tokens()] == expected


def test_bare_tokens_have_nan_rows_and_round_trip(smollm_tokenizer: Any, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    model = tiny_llama(layers=2)
    run = quick_profiler(model, smollm_tokenizer, sample=4, store=store).generate(
        PROMPT, chat=False, max_new_tokens=10, min_new_tokens=10, do_sample=False
    )
    _finished(run)
    store.flush()
    flags = [t["instrumented"] for t in run.tokens()]
    assert flags == [i % 4 == 0 for i in range(10)]
    layers = run.layers
    assert layers.shape[0] == 10  # a row per token, the trailing bare ones too
    for i, inst in enumerate(flags):
        times = layers[i, :, :, 0]
        assert np.isfinite(times).any() == inst  # bare: NaN, never zeros
        assert not (np.nan_to_num(times, nan=1.0) == 0).all()
    assert run.settings["sampling"] == {"mode": "every", "every": 4}
    loaded = store.load(run.run_id)
    assert [t["instrumented"] for t in loaded.tokens()] == flags
    np.testing.assert_array_equal(np.isfinite(loaded.layers), np.isfinite(layers))
    assert loaded.summary()["profiling_overhead"] == run.summary()["profiling_overhead"]
    run.to_csv(tmp_path / "csv")
    tokens = pd.read_csv(tmp_path / "csv" / "tokens.csv")
    assert tokens["instrumented"].tolist() == flags
    lay = pd.read_csv(tmp_path / "csv" / "layers.csv")
    timed = sorted(set(lay.dropna(subset=["time_ms"])["token"]))
    assert timed == [i for i, f in enumerate(flags) if f]


def test_summary_says_what_the_headline_rests_on(smollm_tokenizer: Any) -> None:
    run = quick_profiler(tiny_llama(layers=2), smollm_tokenizer, sample=3).generate(
        PROMPT, chat=False, max_new_tokens=13, min_new_tokens=13, do_sample=False
    )
    _finished(run)
    s = run.summary()
    toks = run.tokens()
    bare = [t for t in toks[1:] if t["instrumented"] is False]
    inst = [t for t in toks[1:] if t["instrumented"] is True]
    assert (len(bare), len(inst)) == (8, 4)
    jpt = sum(t["energy_j"] or 0.0 for t in bare) / len(bare)
    assert s["decode_j_per_token"] == pytest.approx(jpt)
    assert "8 bare decode tokens of 12" in s["figure_basis"]["decode_j_per_token"]
    o = s["profiling_overhead"]
    assert (o["instrumented_tokens"], o["bare_tokens"]) == (4, 8)
    assert o["fraction"] is not None
    assert s["decode_energy_j"] == pytest.approx(jpt * 12)
    assert s["decode_energy_measured_j"] is not None


def test_sample_all_and_token_level_say_so(smollm_tokenizer: Any) -> None:
    model = tiny_llama(layers=2)
    for level, want in (("component", "sample='all'"), ("token", "level='token'")):
        run = quick_profiler(model, smollm_tokenizer, level=level).generate(
            PROMPT, chat=False, max_new_tokens=5, min_new_tokens=5
        )
        _finished(run)
        o = run.summary()["profiling_overhead"]
        assert o["fraction"] is None
        assert want in o["why_none"]
        expect = None if level == "token" else True
        assert {t["instrumented"] for t in run.tokens()} == {expect}


def test_default_is_an_overhead_budget(smollm_tokenizer: Any) -> None:
    prof = EnergyProfiler(
        tiny_llama(layers=2), smollm_tokenizer, power="estimate", store=False, baseline_s=0
    )
    run = prof.generate(PROMPT, chat=False, max_new_tokens=6, min_new_tokens=6)
    _finished(run)
    assert run.settings["sampling"] == {"mode": "budget", "overhead_budget": 0.005}
    flags = [t["instrumented"] for t in run.tokens()]
    assert flags[:3] == [True, False, True]  # prefill, a bare reference, one measured


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"sample": 0}, "sample must be"), ({"overhead_budget": 2}, "overhead_budget"),
     ({"sample": 2, "overhead_budget": 0.1}, "not both")],
)  # fmt: skip
def test_bad_sampling_keywords_fail_at_construction(
    kw: dict[str, Any], match: str, smollm_tokenizer: Any
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        EnergyProfiler(tiny_llama(layers=1), smollm_tokenizer, store=False, **kw)


def test_a_forward_replaced_by_someone_else_is_never_overwritten() -> None:
    layer = torch.nn.Linear(2, 2)

    def make(f: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return f(*args, **kwargs)

        return wrapper

    wrap = forward_wrap.ForwardWrap(layer, make)
    wrap.remove()
    assert "forward" not in layer.__dict__
    wrap.install()
    assert layer.__dict__["forward"] is wrap.wrapper
    wrap.remove()

    def theirs(x: torch.Tensor) -> torch.Tensor:
        return x

    layer.__dict__["forward"] = theirs  # e.g. accelerate, while the token ran bare
    wrap.install()
    assert layer.__dict__["forward"] is theirs
    assert not wrap.installed


def test_a_layer_mostly_in_other_is_said_in_the_run(
    smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layer time no component holds (here a 20 ms sleep inside each decoder layer, outside its
    components) lands in 'other'; past 30 % of the layer the run says so."""
    import time

    original = modeling_llama.LlamaDecoderLayer.forward

    def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_llama.LlamaDecoderLayer, "forward", slow)
    run = quick_profiler(tiny_llama(layers=2), smollm_tokenizer).generate(
        PROMPT, chat=False, max_new_tokens=4, min_new_tokens=4
    )
    _finished(run)
    assert any("of the layer time is in 'other'" in w for w in run.warnings), run.warnings


def test_profiler_keeps_its_last_runs_only(
    smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llm_energy_widget.profiler.RUNS_KEPT", 3)
    prof = quick_profiler(tiny_llama(layers=1), smollm_tokenizer, level="token", baseline_s=0)
    runs = [prof.generate(PROMPT, chat=False, max_new_tokens=2) for _ in range(5)]
    for run in runs:
        _finished(run)
    assert prof.runs == runs[-3:]  # the oldest two dropped from memory (they stay in the store)
