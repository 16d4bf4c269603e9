"""Tiny random models built from configs (no downloads), and torch doubles for CPU runs.

The per-architecture builders of the profiling tests are in support/archs.py."""

from __future__ import annotations

from typing import Any

import torch


def tiny_llama(
    vocab_size: int = 49152,
    max_positions: int = 256,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
) -> Any:
    """A random Llama of `layers` layers, hidden size 32 (seeded: the same weights each call).
    The default vocabulary is the SmolLM2 tokenizer's."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
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
