"""The derived columns hold what their names say: a known sleep put into the MLP activation,
the rotary embedding or the attention kernel lands in "mlp_act" / "attention", not in "other"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import pytest
import torch
from support.archs import build, config_of, prompt_ids
from torch import nn

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.profiling.layer_profiler import LayerProfiler

SLEEP_MS = 20.0  # far above a tiny layer's own time (< 1 ms) and above its noise
TI = METRICS.index("time_ms")
# where each registered architecture with an MLP activation keeps it, relative to a layer
ACT_PATHS = {
    **dict.fromkeys(
        ("llama", "mistral", "qwen2", "gemma", "stablelm", "qwen3", "gemma2", "gemma3_text"),
        "mlp.act_fn",  # gated: down_proj(act_fn(gate_proj(x)) * up_proj(x))
    ),
    "phi": "mlp.activation_fn",  # fc2(act(fc1(x)))
    "phi3": "mlp.activation_fn",  # down_proj(up * act(gate)), gate and up from one gate_up_proj
    "gpt2": "mlp.act",
    "gpt_neox": "mlp.act",
}


class Sleepy(nn.Module):
    """`inner` (a module or function) after a sleep of SLEEP_MS: same output, known extra time."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(SLEEP_MS / 1000.0)
        return self.inner(*args, **kwargs)


def _layers(model: nn.Module) -> list[nn.Module]:
    from llm_energy_widget.profiling.architectures import discover

    return discover(model).layers


@pytest.fixture
def sleepy_act(request: pytest.FixtureRequest) -> Iterator[nn.Module]:
    """The session's tiny model of `request.param` with every layer's activation sleeping."""
    model = build(request.param)
    parent_path, _, attr = ACT_PATHS[request.param].rpartition(".")
    saved = []
    for layer in _layers(model):
        parent = layer.get_submodule(parent_path)
        saved.append((parent, getattr(parent, attr)))
        setattr(parent, attr, Sleepy(getattr(parent, attr)))
    try:
        yield model
    finally:
        for parent, act in saved:
            setattr(parent, attr, act)


def _one_forward(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """Logits without and with profiling, and each column's time per layer (ms)."""
    ids = prompt_ids()
    with torch.inference_mode():
        plain = model(ids).logits
        with LayerProfiler(model, "component") as prof:
            profiled = model(ids).logits
            values, _ = prof.collect()
    cols = {n: values[:, i, TI] for i, n in enumerate(prof.component_names)}
    return plain, profiled, cols


@pytest.mark.parametrize("sleepy_act", list(ACT_PATHS), indirect=True)
def test_mlp_act_holds_the_activation(sleepy_act: nn.Module) -> None:
    plain, profiled, cols = _one_forward(sleepy_act)
    assert torch.equal(plain, profiled)  # profiling changes no output
    assert (cols["mlp_act"] >= SLEEP_MS).all(), cols["mlp_act"]
    assert (cols["other"] < SLEEP_MS / 2).all(), cols["other"]


def test_attention_holds_rotary_and_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Llama: a sleep in apply_rotary_pos_emb and one in the sdpa kernel, both in "attention"."""
    from transformers.modeling_utils import AttentionInterface
    from transformers.models.llama import modeling_llama

    model = build("llama")
    assert config_of(model)._attn_implementation == "sdpa"
    monkeypatch.setattr(
        modeling_llama, "apply_rotary_pos_emb", Sleepy(modeling_llama.apply_rotary_pos_emb)
    )
    # transformers types the mapping's values as `function`, which is no Callable to mypy
    sdpa = cast("Callable[..., Any]", AttentionInterface._global_mapping["sdpa"])
    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", Sleepy(sdpa))
    plain, profiled, cols = _one_forward(model)
    assert torch.equal(plain, profiled)
    assert (cols["attention"] >= 2 * SLEEP_MS).all(), cols["attention"]
    assert (cols["other"] < SLEEP_MS / 2).all(), cols["other"]
    assert (cols["mlp_act"] < SLEEP_MS / 2).all(), cols["mlp_act"]


def test_gap_modules_are_registered_for_gated_mlps_only() -> None:
    from llm_energy_widget.profiling.architectures import discover

    for arch, path in ACT_PATHS.items():
        d = discover(build(arch))
        gaps = {g["name"]: g for g in d.to_dict()["gaps"]}
        gated = path == "mlp.act_fn"
        assert [bool(row) for row in d.gap_modules] == [gated] * d.n_layers, arch
        assert bool(gaps["mlp_act"]["plus"]) == gated, (arch, gaps)
