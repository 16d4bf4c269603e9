"""Test doubles shared by the test modules (importable by name, unlike conftest)."""

from __future__ import annotations

import time
from typing import Any

import torch

from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.record import SourceSample


class ConstantSource(PowerSource):
    """A measured-looking source of exactly `watts`, for tests with a known energy."""

    name = "constant"
    kind = "measured"

    def __init__(self, watts: float = 10.0, fail_after: int | None = None) -> None:
        self.watts = watts
        self.fail_after = fail_after
        self.polls = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "a constant power for tests")

    def poll(self) -> list[SourceSample]:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise OSError("injected sampler failure")
        return [SourceSample(t_s=time.monotonic(), power_w={"cpu": self.watts})]


def tiny_llama(vocab_size: int = 49152, max_positions: int = 256, layers: int = 2):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


class HostEvent:
    """Stand-in for `torch.Event` on CPU, whose backend has none in torch 2.13 ("cpu backend
    doesn't support events" on record). CPU work and copies are synchronous, so there is
    nothing to wait for: recording and synchronizing do nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, *args: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass
