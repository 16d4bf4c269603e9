"""EnergyProfiler on tiny random models: attribution, events, cleanup and specific errors."""

from __future__ import annotations

import itertools
import json
import math
import sys
from typing import Any

import numpy as np
import pytest
import torch
from support.archs import hook_count
from support.models import tiny_llama
from support.profilers import quick_profiler
from support.runs import num
from support.sources import ConstantSource

from llm_energy_widget.errors import (
    InvalidInputError,
    RunError,
    SourceUnavailableError,
)
from llm_energy_widget.profiler import EnergyProfiler, profile

PROMPT = "Energy is the capacity to do work"


_all_hooks = hook_count
_profiler = quick_profiler


@pytest.mark.parametrize("level", ["token", "layer", "component", "deep"])
def test_run_is_complete_and_outputs_unchanged(
    level: str, tiny_model: Any, smollm_tokenizer: Any
) -> None:
    enc = smollm_tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        plain = tiny_model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected = plain[0, enc["input_ids"].shape[1] :].tolist()
    hooks_before = _all_hooks(tiny_model)

    run = _profiler(tiny_model, smollm_tokenizer, level=level).generate(
        PROMPT, chat=False, max_new_tokens=8, do_sample=False, pad_token_id=0
    )  # chat=False: compared with plain generate on the raw prompt
    assert run.wait(60), "run did not finish"
    assert run.status == "completed", run.end_reason
    assert [t["token_id"] for t in run.tokens()] == expected
    assert _all_hooks(tiny_model) == hooks_before
    names = [p["name"] for p in run.phases()]
    assert names == [
        "baseline",
        "tokenize",
        "to_device",
        "prefill",
        "decode",
        "tail",
        "detokenize",
    ]
    toks = run.tokens()
    assert toks[0]["phase"] == "prefill"
    assert all(t["phase"] == "decode" for t in toks[1:])
    assert all(num(t["energy_j"]) > 0 and num(t["duration_ms"]) > 0 for t in toks)
    assert run.prompt_tokens == enc["input_ids"].shape[1]
    if level == "token":
        assert run.layers.shape[0] == 0
    else:
        arr = run.layers
        assert arr.shape[:2] == (8, 2)
        t_idx = run.metric_names.index("time_ms")
        assert (arr[:, :, :, t_idx] > 0).any()
    d = json.loads(json.dumps(run.to_dict(), allow_nan=False))
    for key in (
        "run_id",
        "model",
        "prompt",
        "response",
        "power",
        "phases",
        "tokens",
        "power_samples",
        "layers",
        "summary",
        "labels",
    ):
        assert key in d
    assert d["labels"]["layers.energy_j"] == "modeled"
    assert d["power"]["kind"] == "measured"
    assert d["power"]["source"] == "constant"


def test_energy_is_conserved_with_constant_power(tiny_model: Any, smollm_tokenizer: Any) -> None:
    """Tokens plus non-token phases add up to the run's energy (the tail closes the gap that
    generate's wrap-up after the last token left, hence the former 1 % tolerance)."""
    run = _profiler(tiny_model, smollm_tokenizer, level="component").generate(
        PROMPT, max_new_tokens=40, min_new_tokens=40, do_sample=False, pad_token_id=0
    )
    assert run.wait(60)
    s = run.summary()
    tokens_j = sum(num(t["energy_j"]) for t in run.tokens())
    other_j = sum(
        num(p["energy_j"])
        for p in run.phases()
        if p["name"] in ("tokenize", "to_device", "tail", "detokenize")
    )
    assert s["total_energy_j"] == pytest.approx(10.0 * s["duration_ms"] / 1000, rel=1e-6)
    assert tokens_j + other_j == pytest.approx(s["total_energy_j"], rel=1e-6)
    # component energies (modeled) + the token's energy outside the layers = the token's energy;
    # each cell's share is of the token's time (10 W constant: energy = 10 W x cell time)
    ei, ti = run.metric_names.index("energy_j"), run.metric_names.index("time_ms")
    per_token = run.layers[:, :, :, ei].sum(axis=(1, 2))
    for i, t in enumerate(run.tokens()):
        assert 0 < num(t["layer_coverage"]) <= 1
        assert per_token[i] + t["outside_layers_j"] == pytest.approx(t["energy_j"], rel=1e-3)
        cells_j = run.layers[i, :, :, ei]
        assert np.nanmax(np.abs(cells_j - 10.0 * run.layers[i, :, :, ti] / 1e3)) < 1e-4


def _varying_trace(path: Any, seconds: float = 60.0, step_ms: int = 10) -> Any:
    """A replay trace whose power changes every sample (5..21 W), so the energy of an interval
    depends on exactly where it starts and ends."""
    rows = ["t_ms,total_w"]
    rows += [f"{t},{5 + (t // step_ms * 7) % 17}" for t in range(0, int(seconds * 1000), step_ms)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _by_phase(run: Any) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in run.phases()}


@pytest.mark.parametrize("n_new", [1, 12])
def test_tokens_and_other_phases_add_up_to_the_run(
    n_new: int, tiny_model: Any, smollm_tokenizer: Any, tmp_path: Any
) -> None:
    """On a replayed varying trace: tokens + tokenize + to_device + tail + detokenize = the run's
    total (baseline excluded), prefill = token 0 and decode = the decode tokens, to 1e-6."""
    from llm_energy_widget.power.replay import ReplaySource

    source = ReplaySource(_varying_trace(tmp_path / "trace.csv"))
    run = _profiler(tiny_model, smollm_tokenizer, power=source, level="component").generate(
        PROMPT, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    toks, ph = run.tokens(), _by_phase(run)
    assert len(toks) == n_new
    names = [p["name"] for p in run.phases()]
    middle = ["prefill", "decode", "tail"] if n_new > 1 else ["prefill", "tail"]
    assert names == ["baseline", "tokenize", "to_device", *middle, "detokenize"]
    # contiguous: each phase starts where the previous one ended; decode/tail at token ends
    work = run.phases()[1:]
    for a, b in itertools.pairwise(work):
        assert b["start_ms"] == a["end_ms"], (a, b)
    assert ph["prefill"]["end_ms"] == toks[0]["end_ms"]
    assert ph["tail"]["start_ms"] == toks[-1]["end_ms"]
    assert ph["tail"]["end_ms"] > ph["tail"]["start_ms"]  # generate's wrap-up takes some time

    s = run.summary()
    others = sum(ph[n]["energy_j"] for n in ("tokenize", "to_device", "tail", "detokenize"))
    tokens_j = sum(num(t["energy_j"]) for t in toks)
    assert tokens_j + others == pytest.approx(s["total_energy_j"], rel=1e-6)
    assert ph["prefill"]["energy_j"] == pytest.approx(toks[0]["energy_j"], rel=1e-6)
    if n_new > 1:
        decode_j = sum(num(t["energy_j"]) for t in toks[1:])
        assert ph["decode"]["energy_j"] == pytest.approx(decode_j, rel=1e-6)
        assert s["decode_energy_j"] == pytest.approx(decode_j, rel=1e-6)
    # the trace varies: an interval's energy is not just 13 W x its duration
    assert len({round(num(t["avg_power_w"]), 3) for t in toks}) > 1 or n_new == 1


def test_events_stream_live(tiny_model: Any, smollm_tokenizer: Any) -> None:
    events: list[str] = []
    prof = _profiler(tiny_model, smollm_tokenizer, level="layer")
    run = prof.generate(PROMPT, max_new_tokens=5, do_sample=False, pad_token_id=0)
    run.subscribe(lambda ev, payload: events.append(ev), replay=True)
    assert run.wait(60)
    assert events.count("token") == 5
    assert "power" in events, " ".join(events[-12:])
    assert "phase" in events, " ".join(events[-12:])
    assert events[-1] == "done", " ".join(events[-12:])
    assert events.count("token_energy") == 5


def test_cancel_keeps_what_was_measured(tiny_model: Any, smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_model, smollm_tokenizer, level="component")
    run = prof.generate(
        PROMPT, max_new_tokens=200, min_new_tokens=200, do_sample=False, pad_token_id=0
    )
    run.subscribe(lambda ev, p: run.cancel() if ev == "token" and p["index"] == 3 else None)
    assert run.wait(60)
    assert run.status == "cancelled"
    assert 4 <= run.n_tokens < 200
    assert _all_hooks(tiny_model) == 0
    assert all(t["energy_j"] is not None for t in run.tokens())


def test_exception_inside_a_hook_cleans_up(tiny_model: Any, smollm_tokenizer: Any) -> None:
    calls = {"n": 0}

    def bomb(module: Any, args: Any, out: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected hook failure")

    handle = tiny_model.model.layers[1].mlp.register_forward_hook(bomb)
    try:
        # no warm-up: the hook's 4th call must fall in the measured run, not before it
        run = _profiler(tiny_model, smollm_tokenizer, level="component", warmup=False).generate(
            PROMPT, max_new_tokens=10, do_sample=False, pad_token_id=0
        )
        assert run.wait(60)
    finally:
        handle.remove()
    assert run.status == "failed"
    assert "injected hook failure" in (run.error_message or "")
    assert run.n_tokens == 3  # tokens measured before the failure are kept
    assert _all_hooks(tiny_model) == 0
    assert all(p["end_ms"] is not None for p in run.phases())


def test_exception_inside_the_sampler_is_reported(tiny_model: Any, smollm_tokenizer: Any) -> None:
    prof = _profiler(tiny_model, smollm_tokenizer, power=ConstantSource(5.0, fail_after=3))
    run = prof.generate(PROMPT, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert run.wait(60)
    assert any("injected sampler failure" in w for w in run.warnings)
    assert "power sampling stopped early" in (run.end_reason or "")
    assert _all_hooks(tiny_model) == 0


def test_second_run_on_the_same_model_queues(tiny_model: Any, smollm_tokenizer: Any) -> None:
    """Was: a second concurrent run raised ConcurrentRunError. Now it waits its turn."""
    prof = _profiler(tiny_model, smollm_tokenizer, level="token", baseline_s=1.0)
    run = prof.generate(PROMPT, max_new_tokens=4, pad_token_id=0)
    second = prof.generate(PROMPT, max_new_tokens=4, pad_token_id=0)
    assert (second.status, second.end_reason) == ("queued", "queued, 1 ahead")
    assert run.wait(60)
    assert run.status == "completed"
    assert second.wait(60)
    assert second.status == "completed"
    again = prof.generate(PROMPT, max_new_tokens=2, pad_token_id=0)  # free again afterwards
    assert again.wait(60)
    assert again.status == "completed"


@pytest.mark.parametrize(
    ("prompt", "kw", "match"),
    [
        ("   ", {}, "prompt is empty"),
        (PROMPT, {"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        (PROMPT, {"max_new_tokens": -3}, "max_new_tokens must be a positive integer"),
        ("word " * 300, {}, "longer than the model's context of 256 tokens"),
        ([{"role": "user", "content": ""}], {}, "no content"),
        (3.5, {}, "prompt must be"),
    ],
)
def test_bad_input_is_named(
    prompt: Any, kw: dict[str, Any], match: str, tiny_model: Any, smollm_tokenizer: Any
) -> None:
    prof = _profiler(tiny_model, smollm_tokenizer)
    with pytest.raises(InvalidInputError, match=match):
        prof.generate(prompt, **kw)
    assert _all_hooks(tiny_model) == 0


def test_missing_tokenizer_and_not_a_causal_lm(tiny_model: Any) -> None:
    with pytest.raises(InvalidInputError, match="a tokenizer is needed"):
        _profiler(tiny_model, None).generate("hello")
    with pytest.raises(InvalidInputError, match="causal LM"):
        EnergyProfiler(torch.nn.Linear(2, 2), None)
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    with pytest.raises(InvalidInputError):
        EnergyProfiler(bert, None)
    with pytest.raises(InvalidInputError, match="level must be one of"):
        EnergyProfiler(tiny_model, None, level="everything")


def test_input_ids_without_tokenizer(tiny_model: Any) -> None:
    run = _profiler(tiny_model, None, level="token").generate(
        torch.tensor([[1, 2, 3, 4]]), max_new_tokens=3, do_sample=False, pad_token_id=0
    )
    assert run.wait(60)
    assert run.status == "completed"
    assert run.n_tokens == 3


def test_unavailable_power_source_is_explained(
    tiny_model: Any, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NVML made unavailable on every host (a GPU one too): `import pynvml` fails."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    prof = _profiler(tiny_model, smollm_tokenizer, power="nvml")
    with pytest.raises(SourceUnavailableError, match="nvidia-ml-py is not installed"):
        prof.generate(PROMPT, max_new_tokens=2)
    assert _all_hooks(tiny_model) == 0


def test_model_that_cannot_stream_still_profiles(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    original = model.generate

    def generate_no_streamer(*args: Any, **kw: Any) -> Any:
        if "streamer" in kw:
            raise TypeError("generate() got an unexpected keyword argument 'streamer'")
        return original(*args, **kw)

    model.generate = generate_no_streamer
    run = _profiler(model, smollm_tokenizer, level="token").generate(
        PROMPT, max_new_tokens=4, do_sample=False, pad_token_id=0
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    assert run.n_tokens == 4
    assert any("cannot stream tokens" in w for w in run.warnings)
    assert all(t["duration_ms"] is None and t["energy_j"] is None for t in run.tokens())
    assert run.summary()["total_energy_j"] > 0


def test_keyboard_interrupt_cancels_and_cleans_up(
    tiny_model: Any, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_energy_widget import run as run_mod

    real_wait = run_mod.Run.wait
    state = {"first": True}

    def wait(self: Any, timeout: float | None = None) -> bool:
        if state["first"]:
            state["first"] = False
            real_wait(self, 0.5)
            raise KeyboardInterrupt
        return real_wait(self, timeout)

    monkeypatch.setattr(run_mod.Run, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        profile(
            tiny_model,
            smollm_tokenizer,
            PROMPT,
            power=ConstantSource(),
            store=False,
            baseline_s=0.0,
            max_new_tokens=200,
            min_new_tokens=200,
            pad_token_id=0,
        )
    assert _all_hooks(tiny_model) == 0


def _raising_criterion(input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
    raise RuntimeError("a stopping criterion failed")


def test_profile_raises_on_failed_run(tiny_model: Any, smollm_tokenizer: Any) -> None:
    with pytest.raises(RunError, match="profiling failed"):
        profile(
            tiny_model,
            smollm_tokenizer,
            PROMPT,
            power=ConstantSource(),
            store=False,
            baseline_s=0.0,
            max_new_tokens=2,
            stopping_criteria=[_raising_criterion],  # fails inside generate, mid-run
        )


def test_summary_figures_are_consistent(tiny_model: Any, smollm_tokenizer: Any) -> None:
    run = profile(
        tiny_model,
        smollm_tokenizer,
        PROMPT,
        power=ConstantSource(8.0),
        store=False,
        baseline_s=0.3,
        interval_ms=20,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
    )
    s = run.summary()
    assert s["output_tokens"] == 6
    assert s["baseline_w"] == pytest.approx(8.0, rel=1e-6)
    assert s["net_energy_j"] == pytest.approx(0.0, abs=1e-6)  # constant power: nothing above idle
    assert s["decode_j_per_token"] * s["decode_tokens_per_j"] == pytest.approx(1.0)
    assert s["prefill_energy_j"] + s["decode_energy_j"] <= s["total_energy_j"] + 1e-9
    assert s["peak_power_w"]["total_w"] == pytest.approx(8.0)
    assert s["energy_kind"] == "measured"
    assert not math.isnan(s["ttft_ms"])
    assert s["cost_usd"] > 0
    assert s["co2_g"] > 0
