"""A model split across devices: each module is timed with events of its own device.

No GPU here: a tiny Llama's layers are *placed* on fake devices (cuda:0, cuda:1, cpu) by
replacing the device lookup (`devices.module_device`), and a fake event factory makes events that
remember the device they were made for and read that device's own fake clock. The clocks start
far apart (0, 10 s, 50 s), so an interval measured between two devices' events would be off by
seconds: the exact known answers below show that every interval stayed within one device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import transformers as T
from support.archs import CONFIGS, prompt_ids
from torch import nn

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.profiling import devices, layer_profiler, tokens
from llm_energy_widget.profiling.architectures import discover
from llm_energy_widget.profiling.forward_wrap import EventClock, HostEvent
from llm_energy_widget.profiling.layer_profiler import LayerProfiler

TI = METRICS.index("time_ms")
CUDA0, CUDA1, CPU = torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cpu")
PLACES = (CUDA0, CUDA1, CPU)  # layer i runs on PLACES[i]
START_MS = {CUDA0: 0.0, CUDA1: 10_000.0, CPU: 50_000.0}  # each device's clock
ORDER: tuple[str, ...] = ("input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj")
ORDER += ("post_attention_layernorm", "gate_proj", "up_proj", "down_proj")


def work_ms(li: int, name: str) -> float:
    """Fake time inside each component's forward (binary fractions: sums are exact)."""
    return (ORDER.index(name) + 1) * 0.25 + li * 0.125


@dataclass
class FakeDevices:
    """One fake clock per device; events and syncs remember their device."""

    now: dict[torch.device, float] = field(default_factory=lambda: dict(START_MS))
    made: list[torch.device] = field(default_factory=list)  # the device of each event made
    recorded: list[torch.device] = field(default_factory=list)
    synced: list[torch.device] = field(default_factory=list)

    def event(self, device: torch.device) -> Any:
        self.made.append(device)
        fake = self

        class Event:
            t: float | None = None

            def record(self, stream: Any = None) -> None:
                if device.type == "cuda":  # recorded on its own device's stream
                    assert stream is not None
                    assert stream.device == device
                fake.recorded.append(device)
                self.t = fake.now[device]

            def synchronize(self) -> None:
                fake.synced.append(device)

            def elapsed_time(self, end: Any) -> float:
                assert self.t is not None
                assert end.t is not None
                return float(end.t - self.t)

        return Event()


def tiny_llama(n_layers: int = 3) -> nn.Module:
    torch.manual_seed(0)
    config = CONFIGS["llama"]()
    config.num_hidden_layers = n_layers
    return T.AutoModelForCausalLM.from_config(config).eval()


def place(model: nn.Module) -> dict[int, torch.device]:
    """Layer i's modules on PLACES[i]; the embedding on cuda:0, the final norm and head on cpu."""
    at: dict[int, torch.device] = {}
    for li, layer in enumerate(discover(model).layers):
        for m in layer.modules():
            at[id(m)] = PLACES[li]
    base: Any = model.get_submodule("model")
    at[id(base.embed_tokens)] = CUDA0
    at[id(base.rotary_emb)] = CUDA0
    at[id(base.norm)] = CPU
    at[id(model.get_submodule("lm_head"))] = CPU
    return at


def install_work(model: nn.Module, fake: FakeDevices, at: dict[int, torch.device]) -> None:
    """Each timed component advances its own device's clock (before attach)."""
    for li, layer in enumerate(discover(model).layers):
        for name in ORDER:
            mod = next(m for n, m in layer.named_modules() if n.endswith(name))
            mod.forward = _advancing(fake, at[id(mod)], mod.forward, work_ms(li, name))


def _advancing(
    fake: FakeDevices, dev: torch.device, f: Callable[..., Any], ms: float
) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        fake.now[dev] += ms
        return f(*args, **kwargs)

    return forward


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> tuple[nn.Module, FakeDevices]:
    """A 3-layer model split over cuda:0, cuda:1 and cpu, with fake events and streams."""
    model = tiny_llama()
    at = place(model)
    fake = FakeDevices()
    monkeypatch.setattr(devices, "module_device", lambda mod: at.get(id(mod)))
    monkeypatch.setattr(
        layer_profiler, "EventClock", lambda devs: EventClock(devs, make_event=fake.event)
    )
    monkeypatch.setattr(
        torch.cuda, "current_stream", lambda device=None: SimpleNamespace(device=device)
    )

    @contextmanager
    def on_stream(stream: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr(torch.cuda, "stream", on_stream)
    install_work(model, fake, at)
    return model, fake


def _token(model: nn.Module, prof: LayerProfiler) -> np.ndarray:
    with torch.inference_mode():
        model(prompt_ids())
    values, _ = prof.collect()
    return values


def test_model_devices_in_order_of_first_use(split: tuple[nn.Module, FakeDevices]) -> None:
    model, _ = split
    assert devices.model_devices(model) == (CUDA0, CUDA1, CPU)
    assert devices.primary_device(model) == CUDA0
    assert devices.cuda_indices(devices.model_devices(model)) == [0, 1]


def test_each_component_timed_on_its_own_device(split: tuple[nn.Module, FakeDevices]) -> None:
    model, fake = split
    prof = LayerProfiler(model, "component")
    assert prof.devices == (CUDA0, CUDA1, CPU)
    with prof:
        _token(model, prof)  # warm-up: fills each device's pool
        made = len(fake.made)
        fake.recorded.clear()
        fake.synced.clear()
        values = _token(model, prof)
        summary = prof.summary
    assert summary["devices"] == ["cuda:0", "cuda:1", "cpu"]
    assert summary["timing_method"] == "cuda_events+perf_counter_ns"
    for li in range(3):
        for name in ORDER:
            got = values[li, prof.component_names.index(name), TI]
            assert got == pytest.approx(work_ms(li, name), abs=1e-9), (li, name)
        # the layer (span of its own device's events) is its components and nothing else
        row = values[li, :, TI]
        assert np.nansum(row) == pytest.approx(sum(work_ms(li, n) for n in ORDER), abs=1e-9)
    # 15 boundaries per Llama layer (test_shared_boundaries), each on its layer's device
    assert fake.recorded == [CUDA0] * 15 + [CUDA1] * 15 + [CPU] * 15
    assert len(fake.made) == made  # pooled per device: nothing new after the warm-up
    # reading waited for each device's last event, not only the token's last one
    assert sorted(fake.synced, key=str) == sorted(PLACES, key=str)


def test_layer_level_shares_no_boundary_across_devices(
    split: tuple[nn.Module, FakeDevices],
) -> None:
    """At the layer level a layer's start reuses the previous layer's end, but not from
    another device: 2 events per layer here, against 4 for 3 chained layers on one device."""
    model, fake = split
    prof = LayerProfiler(model, "layer")
    with prof:
        _token(model, prof)
        fake.recorded.clear()
        values = _token(model, prof)
    assert fake.recorded == [CUDA0, CUDA0, CUDA1, CUDA1, CPU, CPU]
    for li in range(3):
        want = sum(work_ms(li, n) for n in ORDER)
        assert values[li, 0, TI] == pytest.approx(want, abs=1e-9)


def test_read_ms_leaves_intervals_across_devices_untimed(monkeypatch: pytest.MonkeyPatch) -> None:
    """By hand: events a (cuda:0, t=1), b (cuda:0, t=4), c (cuda:1, t=10_000), d (cuda:1,
    t=10_002); slots 0 (a->b), 1 (b->c, across devices), 2 (c->d); a span over a..d crosses."""
    monkeypatch.setattr(
        torch.cuda, "current_stream", lambda device=None: SimpleNamespace(device=device)
    )
    fake = FakeDevices()
    clock = EventClock((CUDA0, CUDA1), make_event=fake.event)
    times = iter([1.0, 4.0, 10_000.0, 10_002.0])
    for lane, tag in ((0, 0), (0, 1), (1, 2), (1, -1)):
        dev = clock.devices[lane]
        fake.now[dev] = next(times)
        clock.recorder(lane)(tag)
    clock.spans.extend([(3, 0, 3), (4, 2, 3)])
    ms = clock.read_ms(clock.take(), 5)
    np.testing.assert_array_equal(ms, [3.0, 0.0, 2.0, 0.0, 2.0])  # 0: never ran (NaN later)
    assert fake.synced == [CUDA0, CUDA1]
    assert [len(ln.pool) for ln in clock._lanes] == [2, 2]


def test_token_end_syncs_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Any] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    tokens.device_sync_fn((CUDA0, CUDA1, CPU))()
    assert synced == [CUDA0, CUDA1]
    synced.clear()
    tokens.device_sync_fn(CPU)()
    assert synced == []


def test_module_device_from_accelerate_hook_params_and_meta() -> None:
    lin = nn.Linear(2, 2)
    assert devices.module_device(lin) == CPU
    assert devices.module_device(nn.GELU()) is None  # no weights: its parent's device
    offloaded = nn.Linear(2, 2, device="meta")
    assert devices.module_device(offloaded) is None  # weights nowhere a kernel runs
    offloaded._hf_hook = SimpleNamespace(execution_device=1)  # type: ignore[assignment]
    assert devices.module_device(offloaded) == CUDA1  # accelerate moves its inputs there
    assert devices.model_devices(nn.Sequential(nn.GELU())) == (CPU,)


def test_host_events_time_cpu_modules() -> None:
    a, b = HostEvent(), HostEvent()
    a.record()
    b.record()
    b.t_ns = a.t_ns + 2_500_000
    assert a.elapsed_time(b) == 2.5
