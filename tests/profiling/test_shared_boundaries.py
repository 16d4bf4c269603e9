"""The device-event timeline on the CPU: fake events whose timestamps a fake clock sets, driving
the same `event_forward` wrappers CUDA/MPS use. One event per distinct boundary (neighbours
share theirs), known-answer times for every slot, gap and "other", pooled events, and a
consistent timeline after a module raised."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import transformers as T
from support.archs import CONFIGS, GENERIC_ARCHS, REGISTRY_ARCHS, build, hook_count, prompt_ids
from torch import nn

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.profiling import devices, layer_profiler
from llm_energy_widget.profiling.architectures import discover
from llm_energy_widget.profiling.forward_wrap import EventClock
from llm_energy_widget.profiling.layer_profiler import LayerProfiler

TI = METRICS.index("time_ms")
ALL_ARCHS = REGISTRY_ARCHS + GENERIC_ARCHS
ORDER: tuple[str, ...] = ("input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj")
ORDER += ("post_attention_layernorm", "gate_proj", "up_proj", "down_proj")
# work put between the timed modules, in ms (binary fractions: the sums are exact)
PRE = 0.75  # self_attn's prelude: between input_layernorm's end and q_proj's start (shared)
ADD_ATTN = 1.5  # the residual add after self_attn returns (o_proj -> post_attention_layernorm)
ADD_MLP = 1.25  # the residual add after the MLP returns (down_proj -> the layer's end)
ATTN = 5.0  # the attention kernel: between v_proj and o_proj (a forward hook on v_proj)
ACT = 3.0  # the act_fn module, timed into mlp_act
MUL = 2.0  # the gate multiply: between up_proj and down_proj (a forward hook on up_proj)
BETWEEN = 4.0  # the model's loop between layer 0 and layer 1 (a hook on layer 0)


def own_ms(li: int, name: str) -> float:
    """The time inside each component's forward."""
    return (ORDER.index(name) + 1) * 0.25 + li * 0.125


@dataclass
class FakeTime:
    """The fake stream: events read `now`; the models' forwards advance it."""

    now: float = 0.0
    made: int = 0
    records: int = 0
    fail: set[str] = field(default_factory=set)  # "layer.name" to raise in, once

    def advance(self, ms: float) -> None:
        self.now += ms


def fake_event_class(clock: FakeTime) -> type:
    class FakeEvent:
        def __init__(self, enable_timing: bool = True) -> None:
            clock.made += 1
            self.t: float | None = None

        def record(self, stream: Any = None) -> None:
            clock.records += 1
            self.t = clock.now

        def synchronize(self) -> None:
            assert self.t is not None

        def elapsed_time(self, end: FakeEvent) -> float:
            assert self.t is not None
            assert end.t is not None
            return end.t - self.t

    return FakeEvent


def _advancing(clock: FakeTime, f: Callable[..., Any], ms: float, key: str) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        clock.advance(ms)
        if key in clock.fail:
            clock.fail.discard(key)
            raise RuntimeError(f"planned failure in {key}")
        return f(*args, **kwargs)

    return forward


def _around(clock: FakeTime, f: Callable[..., Any], pre: float, post: float) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        clock.advance(pre)
        out = f(*args, **kwargs)
        clock.advance(post)
        return out

    return forward


def llama(n_layers: int = 2, **shape: Any) -> nn.Module:
    """A fresh tiny Llama (not the session's cached one: its forwards are replaced here)."""
    torch.manual_seed(0)
    config = CONFIGS["llama"]()
    config.num_hidden_layers = n_layers
    for k, v in shape.items():
        setattr(config, k, v)
    return T.AutoModelForCausalLM.from_config(config).eval()


def install_work(model: nn.Module, clock: FakeTime) -> None:
    """Known fake time inside every timed module and between them (before attach)."""
    for li, layer in enumerate(layers(model)):
        for name in ORDER:
            mod = next(m for n, m in layer.named_modules() if n.endswith(name))
            mod.forward = _advancing(clock, mod.forward, own_ms(li, name), f"{li}.{name}")
        act = layer.get_submodule("mlp.act_fn")
        act.forward = _advancing(clock, act.forward, ACT, f"{li}.act_fn")
        attn, mlp = layer.get_submodule("self_attn"), layer.get_submodule("mlp")
        attn.forward = _around(clock, attn.forward, PRE, ADD_ATTN)
        mlp.forward = _around(clock, mlp.forward, 0.0, ADD_MLP)
        layer.get_submodule("self_attn.v_proj").register_forward_hook(
            lambda *a: clock.advance(ATTN)
        )
        layer.get_submodule("mlp.up_proj").register_forward_hook(lambda *a: clock.advance(MUL))


def layers(model: nn.Module) -> list[nn.Module]:
    return discover(model).layers


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch) -> Callable[[LayerProfiler], FakeTime]:
    """Make a profiler time with fake device events (its clock is an MPS-kind EventClock)."""
    clock = FakeTime()
    made: list[EventClock] = []

    def make_clock(devices: Any) -> EventClock:
        event = fake_event_class(clock)
        c = EventClock(torch.device("mps"), make_event=lambda device: event())
        made.append(c)
        return c

    monkeypatch.setattr(layer_profiler, "EventClock", make_clock)
    mps = torch.device("mps")
    monkeypatch.setattr(devices, "module_device", lambda mod: mps)

    def on(prof: LayerProfiler) -> FakeTime:
        prof.devices = (mps,)  # the device branch; nothing here touches MPS
        prof.device = mps
        return clock

    return on


def expected(n_layers: int) -> dict[tuple[int, str], float]:
    """Each (layer, column)'s ms, by hand."""
    out: dict[tuple[int, str], float] = {}
    for li in range(n_layers):
        for name in ORDER:
            out[li, name] = own_ms(li, name)
        out[li, "q_proj"] += PRE  # shared boundary: the prelude moved from "other" into q_proj
        out[li, "attention"] = ATTN
        out[li, "mlp_act"] = ACT + MUL
        out[li, "other"] = ADD_ATTN + ADD_MLP  # BETWEEN is in no layer, as before
    return out


def _token(model: nn.Module, prof: LayerProfiler) -> np.ndarray:
    with torch.inference_mode():
        model(prompt_ids())
    values, _ = prof.collect()
    return values


def _check(prof: LayerProfiler, values: np.ndarray, n_layers: int) -> None:
    for (li, name), ms in expected(n_layers).items():
        got = values[li, prof.component_names.index(name), TI]
        assert got == pytest.approx(ms, abs=1e-9), (li, name)


def _per_layer_events() -> int:
    """Distinct boundaries of a Llama layer at the component level, by hand: the layer's
    start (its input norm's start too); ends of input_layernorm (= q_proj's start), q_proj
    (= k_proj's), k_proj (= v_proj's), v_proj; o_proj's start and end (the attention gap keeps
    two, and so does the residual add after self_attn); post_attention_layernorm's start and
    end (= gate_proj's start); gate_proj's end (= act_fn's start); act_fn's end (= up_proj's
    start); up_proj's end, down_proj's start (the mlp_act gap) and end; the layer's end (not
    the next layer's start, see `boundaries`): 15 against 2 x 11 modules."""
    return 15


def test_one_event_per_distinct_boundary(fake_device: Any) -> None:
    n = 3
    model = llama(n)
    prof = LayerProfiler(model, "component")
    clock = fake_device(prof)
    install_work(model, clock)
    with prof:
        _token(model, prof)  # warm-up
        before = clock.records
        _token(model, prof)
        per_token = clock.records - before
        wrappers = prof.summary["hooks"]
    per_layer = _per_layer_events()
    assert wrappers == n * (len(ORDER) + 2)  # components, act_fn, the layer
    assert per_token == per_layer * n  # 45
    assert 2 * wrappers == 66  # a start/end pair per module, as before
    assert hook_count(model) == (len(ORDER) + 5) * n  # only the test's forwards and hooks


def test_layer_level_chains_the_layers(fake_device: Any) -> None:
    n = 4
    model = llama(n)
    prof = LayerProfiler(model, "layer")
    clock = fake_device(prof)
    install_work(model, clock)
    with prof:
        layers(model)[0].register_forward_hook(
            lambda *a: clock.advance(BETWEEN)  # after attach: the plan cannot see it
        )
        _token(model, prof)
        before = clock.records
        values = _token(model, prof)
        assert clock.records - before == n + 1  # one boundary between two layers
    for li in range(n):
        total = sum(expected(n)[li, c] for c in (*ORDER, "attention", "mlp_act", "other"))
        moved = BETWEEN if li == 1 else 0.0  # the loop's work between two chained layers
        assert values[li, 0, TI] == pytest.approx(total + moved, abs=1e-9)


def test_known_answer_every_slot_gap_and_other(fake_device: Any) -> None:
    n = 2
    model = llama(n)
    prof = LayerProfiler(model, "component")
    clock = fake_device(prof)
    install_work(model, clock)
    with prof:
        layers(model)[0].register_forward_hook(lambda *a: clock.advance(BETWEEN))
        for _ in range(3):
            values = _token(model, prof)
            _check(prof, values, n)
    assert prof.summary["timing_method"] == "mps_events"


def test_events_are_pooled_after_warm_up(fake_device: Any) -> None:
    model = llama(2)
    prof = LayerProfiler(model, "component")
    clock = fake_device(prof)
    install_work(model, clock)
    with prof:
        _token(model, prof)
        made = clock.made
        for _ in range(5):
            _token(model, prof)
        assert clock.made == made  # no event created per token in steady state
        assert made == 15 * 2


def test_a_module_that_raises_leaves_the_next_token_right(fake_device: Any) -> None:
    n = 2
    model = llama(n)
    prof = LayerProfiler(model, "component")
    clock = fake_device(prof)
    install_work(model, clock)
    with prof:
        layers(model)[0].register_forward_hook(lambda *a: clock.advance(BETWEEN))
        _token(model, prof)
        made = clock.made
        clock.fail.add("1.k_proj")
        with pytest.raises(RuntimeError, match="planned failure"), torch.inference_mode():
            model(prompt_ids())
        values, _ = prof.collect()
        _check_partial(prof, values)
        for _ in range(2):
            _check(prof, _token(model, prof), n)
        assert clock.made == made  # the failed token's events went back to the pool too


def _check_partial(prof: LayerProfiler, values: np.ndarray) -> None:
    """Layer 0 complete; layer 1 up to k_proj, which has the time it ran before raising."""
    col = prof.component_names.index
    want = expected(2)
    for name in (*ORDER, "attention", "mlp_act", "other"):
        assert values[0, col(name), TI] == pytest.approx(want[0, name], abs=1e-9), name
    for name in ("input_layernorm", "q_proj", "k_proj"):
        assert values[1, col(name), TI] == pytest.approx(want[1, name], abs=1e-9), name
    for name in ("v_proj", "o_proj", "down_proj", "attention", "mlp_act"):
        assert np.isnan(values[1, col(name), TI]), name
    assert values[1, col("other"), TI] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHS if a not in ("mixtral", "qwen2_moe")])
def test_every_architecture_times_every_component_with_fewer_events(
    arch: str, fake_device: Any
) -> None:
    """Each event a step of 1 ms: every timed component gets time, "other" is never negative,
    and registry architectures record fewer events than a pair per module (MoE routers are
    tapped on the device, which the fake one is not: left out)."""
    model = build(arch)
    prof = LayerProfiler(model, "component")
    clock = fake_device(prof)
    event = fake_event_class(clock)

    class Stepping(event):  # type: ignore[misc, valid-type]
        def record(self, stream: Any = None) -> None:
            clock.advance(1.0)
            super().record(stream)

    with prof:
        assert prof._clock is not None
        prof._clock.make_event = lambda device: Stepping()
        with torch.inference_mode():
            model(prompt_ids())
            prof.collect()
            before = clock.records
            model(prompt_ids())
        values, _ = prof.collect()
        wrappers = prof.summary["hooks"]
    per_token = clock.records - before
    names = prof.disc.component_names
    hooked = [prof.component_names.index(c) for c in names]
    present = [[c in row for c in names] for row in prof.disc.components]
    times = values[:, hooked, TI]
    assert (np.isfinite(times) == np.array(present)).all()
    assert (values[:, -1, TI] >= 0).all()
    if prof.disc.how.startswith("registry:"):
        assert per_token < 2 * wrappers
    else:
        assert per_token <= 2 * wrappers
    assert hook_count(model) == 0
