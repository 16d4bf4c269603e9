"""Token boundaries: each token ends where the decoding step that chose it ended.

transformers 5.x hands tokens to the streamer one step late on its deferred stop-check path
(`DeferredStopCheck`, MPS only today) and runs one extra forward whose token is undone. Both paths
are run here on CPU (the deferred one forced) with a tiny model whose forward i sleeps a known,
distinct time, so each token's duration, end and layer row can be checked against its forward's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
import transformers as T
from support.archs import CONFIGS, prompt_ids
from support.models import HostEvent
from support.sources import ConstantSource
from torch import nn
from transformers.generation import utils as gen_utils

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.power.sampler import PowerSampler
from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.profiling.tokens import TokenClock

SLEEP_MS = (120, 80, 30, 100, 50, 150, 40)  # forward i sleeps SLEEP_MS[i] (neighbours >= 40 apart)
N_NEW = 6
TOL_MS = 25.0  # from a forward's end to its step's boundary, scheduling noise included
TI = METRICS.index("time_ms")


class SleepySiLU(nn.Module):
    """SiLU that first sleeps SLEEP_MS[i] on its i-th call (one call per forward in layer 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.enabled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            time.sleep(SLEEP_MS[min(self.calls, len(SLEEP_MS) - 1)] / 1000.0)
            self.calls += 1
        return nn.functional.silu(x)


@pytest.fixture(params=["ordinary", "deferred"])
def stop_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run generate on the ordinary stop check, or on the deferred one forced on CPU."""
    if request.param == "deferred":
        monkeypatch.setattr(
            gen_utils.DeferredStopCheck, "is_supported", staticmethod(lambda *a, **k: True)
        )
        monkeypatch.setattr(torch, "Event", HostEvent)
    return str(request.param)


@pytest.fixture
def sampler_t0(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The start time (time.monotonic) of each sampler started: the run's clock origin."""
    starts: list[float] = []
    original = PowerSampler.start

    def start(self: PowerSampler) -> PowerSampler:
        out = original(self)
        assert self.t0_s is not None
        starts.append(self.t0_s)
        return out

    monkeypatch.setattr(PowerSampler, "start", start)
    return starts


Spans = list[tuple[float, float]]  # (start, end) of each top-level forward


def _sleepy_llama() -> tuple[nn.Module, SleepySiLU, Spans]:
    """A fresh tiny Llama, its layer-0 SleepySiLU, and the list each top-level forward's
    (start, end) is appended to (time.monotonic)."""
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(CONFIGS["llama"]()).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)  # as support.archs.build: sharper logits, so tokens vary
    act = SleepySiLU()
    model.model.layers[0].mlp.act_fn = act
    spans: Spans = []
    original: Callable[..., Any] = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        out = original(*args, **kwargs)
        spans.append((t0, time.monotonic()))
        return out

    model.forward = forward
    return model, act, spans


def _plain_ids(model: nn.Module, n: int, **kw: Any) -> list[int]:
    """Token ids of unprofiled greedy generation (sleeps off; also warms the model up)."""
    ids = prompt_ids()
    with torch.inference_mode():
        out = cast("Callable[..., torch.Tensor]", model.generate)(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, **kw
        )
    return [int(x) for x in out[0, ids.shape[1] :]]


def _profile(
    model: nn.Module, act: SleepySiLU, spans: Spans, t0: list[float], **kw: Any
) -> tuple[Any, Spans]:
    """A layer-level profiled run with the sleeps on, and its forwards on the run's clock (ms)."""
    spans.clear()
    act.calls, act.enabled = 0, True
    try:
        run = EnergyProfiler(
            model,
            None,
            power=ConstantSource(10.0),
            level="layer",
            baseline_s=0.0,
            store=False,
            warmup=False,  # every forward counted here is one of the run's
            sample="all",  # every token's layers timed
        ).generate(prompt_ids(), do_sample=False, pad_token_id=0, **kw)
        assert run.wait(60), run.end_reason
        assert run.status == "completed", run.end_reason
    finally:
        act.enabled = False
    return run, [((a - t0[-1]) * 1000.0, (b - t0[-1]) * 1000.0) for a, b in spans]


def _check_tokens_match_forwards(run: Any, fwd: Spans) -> None:
    """Token k ends where forward k ends, spans it, and has its layer row. The sleeps tell the
    forwards apart: a token one forward late would end >= 30 ms (the shortest sleep) off."""
    toks = run.tokens()
    prefill = next(p for p in run.phases() if p["name"] == "prefill")
    ttft = toks[0]["end_ms"] - prefill["start_ms"]
    # TTFT is the prefill forward plus generate's set-up, never a decode forward too
    assert SLEEP_MS[0] <= fwd[0][1] - fwd[0][0] <= ttft < fwd[0][1] - fwd[0][0] + SLEEP_MS[1]
    layer0 = run.layers[:, 0, 0, TI]
    assert run.layers.shape[0] == len(toks)  # the last token has its row too
    for k, t in enumerate(toks):
        start_ms, end_ms = fwd[k]
        assert abs(t["end_ms"] - end_ms) <= TOL_MS, (k, t, fwd)
        assert t["start_ms"] <= start_ms  # the whole forward k is inside token k
        assert t["duration_ms"] >= SLEEP_MS[k], (k, t)
        assert t["energy_j"] > 0, (k, t)
        assert SLEEP_MS[k] <= layer0[k] <= end_ms - start_ms, (k, layer0, fwd)
        assert t["energy_j"] == pytest.approx(10.0 * t["duration_ms"] / 1000.0, rel=1e-6)


def test_each_token_ends_with_its_forward(stop_check: str, sampler_t0: list[float]) -> None:
    model, act, spans = _sleepy_llama()
    expected = _plain_ids(model, N_NEW, min_new_tokens=N_NEW, pad_token_id=0)
    run, fwd = _profile(model, act, spans, sampler_t0, max_new_tokens=N_NEW, min_new_tokens=N_NEW)
    assert [t["token_id"] for t in run.tokens()] == expected
    assert len(fwd) == N_NEW  # stopped by length: no extra step on either path
    _check_tokens_match_forwards(run, fwd)


def test_undone_extra_forward_is_no_token(stop_check: str, sampler_t0: list[float]) -> None:
    """Stopped by EOS: the deferred path runs forward 4 after the EOS token 3 and undoes it."""
    model, act, spans = _sleepy_llama()
    plain = _plain_ids(model, N_NEW, min_new_tokens=N_NEW, pad_token_id=0)
    eos = plain[3]
    assert eos not in plain[:3]
    run, fwd = _profile(model, act, spans, sampler_t0, max_new_tokens=N_NEW, eos_token_id=eos)
    assert [t["token_id"] for t in run.tokens()] == plain[:4]
    assert len(fwd) == (5 if stop_check == "deferred" else 4)
    _check_tokens_match_forwards(run, fwd)
    # the undone forward is in the tail (what follows the last token), not in a token
    tail = next(p for p in run.phases() if p["name"] == "tail")
    assert tail["start_ms"] == run.tokens()[-1]["end_ms"]
    if stop_check == "deferred":
        assert tail["start_ms"] <= fwd[4][0]
        assert tail["end_ms"] >= fwd[4][1]
    else:
        assert tail["duration_ms"] < SLEEP_MS[4]


class _FakeClock:
    """now_ms() returns 10, 20, 30, ... and take() returns "L1", "L2", ... (one per call)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.n = 0

    def now_ms(self) -> float:
        self.t += 10.0
        return self.t

    def take(self) -> str:
        self.n += 1
        return f"L{self.n}"


def _clock_run(events: str) -> tuple[list[tuple[int, float, Any]], int]:
    """Feed a TokenClock `events` ("s" a step, "p" a put of token id 100+i, after the prompt);
    return what on_token got and how many steps were left unclaimed."""
    got: list[tuple[int, float, Any]] = []
    fake = _FakeClock()
    clock = TokenClock(
        lambda ids, t, taken: got.append((ids[0], t, taken)),
        fake.now_ms,
        torch.device("cpu"),
        fake.take,
    )
    clock.put(torch.tensor([[1, 2, 3]]))  # the prompt
    puts = 0
    for e in events:
        if e == "s":
            clock.step()
        else:
            clock.put(torch.tensor([100 + puts]))
            puts += 1
    return got, clock.discard()


def test_token_clock_pairs_puts_with_steps_in_order() -> None:
    # ordinary stop check: step k, then its put
    assert _clock_run("spspsp") == ([(100, 10, "L1"), (101, 20, "L2"), (102, 30, "L3")], 0)
    # deferred, stopped by length: put k comes after step k+1; the last put in finish()
    assert _clock_run("sspspp") == ([(100, 10, "L1"), (101, 20, "L2"), (102, 30, "L3")], 0)
    # deferred, stopped by EOS at token 1: step 2 is the undone extra one, never put
    assert _clock_run("ssps" + "p") == ([(100, 10, "L1"), (101, 20, "L2")], 1)
    # streamed before the step (assisted generation): timed at each put from then on
    assert _clock_run("pspsp") == ([(100, 10, "L1"), (101, 20, "L2"), (102, 30, "L3")], 0)


def test_token_clock_stays_bounded_when_nothing_is_put() -> None:
    got, unclaimed = _clock_run("s" * 50)
    assert got == []
    assert unclaimed == 2
