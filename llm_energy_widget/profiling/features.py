"""What a model is, from its config and weights: size, attention layout, MoE, dtype, KV cache.

All of it is read or derived, not measured: `kv_cache_bytes_per_token` is the modeled size of one
token's keys and values (2 x layers x kv_heads x head_dim x bytes per element), the figure that
decides how much memory a context of n tokens needs. `weight_bytes` counts what the weights take
as stored, packed quantized weights included (torch dynamic int8 keeps a Linear's weight in
`_packed_params`, not among the parameters: 1 byte each), and `bytes_per_param` = weight_bytes /
parameters is what a decode step reads per weight (`analysis.predict`'s memory-bound term).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .architectures import find_block_list, model_type

__all__ = [
    "attention_type",
    "kv_cache_bytes",
    "machine_description",
    "model_features",
    "model_name",
    "weight_counts",
]


def _text_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        return None
    get = getattr(config, "get_text_config", None)
    if callable(get):
        try:
            return get()
        except Exception:  # some configs raise when there is no single text config
            return config
    return config


def _first_int(config: Any, *names: str) -> int | None:
    for name in names:
        v = getattr(config, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        return p.dtype
    return None


def _quantization(config: Any, given: str | None) -> str | None:
    if given:
        return given
    q = getattr(config, "quantization_config", None)
    if q is None:
        return None
    if isinstance(q, dict):
        method = q.get("quant_method") or q.get("quantization_method")
        bits = q.get("bits") or (
            4 if q.get("load_in_4bit") else 8 if q.get("load_in_8bit") else None
        )
    else:
        method = getattr(q, "quant_method", None)
        bits = getattr(q, "bits", None)
    method = getattr(method, "value", method)
    return f"{method}" + (f" {bits}-bit" if bits else "") if method else "unknown"


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """(weights, bytes): the parameters (shared ones once) plus the packed weights and biases of
    quantized modules, each at its stored element size."""
    n = b = 0
    for p in model.parameters():
        n += p.numel()
        b += p.numel() * p.element_size()
    for m in model.modules():
        if not hasattr(m, "_packed_params") or not callable(getattr(m, "weight", None)):
            continue
        q: Any = m  # a quantized module: weight() and bias() unpack its packed params
        w = q.weight()  # the packed int8 weight as a quantized tensor
        bias = q.bias() if callable(getattr(q, "bias", None)) else None
        for t in (w, bias):
            if isinstance(t, torch.Tensor):
                n += t.numel()
                b += t.numel() * t.element_size()
    return n, b


def attention_type(heads: int | None, kv_heads: int | None) -> str | None:
    """MHA (one KV head per query head), MQA (one KV head), GQA (in between)."""
    if not heads or not kv_heads:
        return None
    if kv_heads == heads:
        return "MHA"
    if kv_heads == 1:
        return "MQA"
    return "GQA"


def model_features(model: nn.Module, quantization: str | None = None) -> dict[str, Any]:
    """JSON-serializable description of a causal LM (label: modeled where derived)."""
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    cfg = _text_config(model)
    blocks = find_block_list(model)
    layers = _first_int(cfg, "num_hidden_layers", "n_layer", "num_layers") or (
        len(blocks[1]) if blocks else None
    )
    hidden = _first_int(cfg, "hidden_size", "n_embd", "d_model")
    heads = _first_int(cfg, "num_attention_heads", "n_head", "num_heads")
    kv_heads = _first_int(cfg, "num_key_value_heads", "n_kv_heads", "num_kv_heads")
    if kv_heads is None and getattr(cfg, "multi_query", False):
        kv_heads = 1
    kv_heads = kv_heads or heads
    head_dim = _first_int(cfg, "head_dim") or (hidden // heads if hidden and heads else None)
    experts = _first_int(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    top_k = _first_int(cfg, "num_experts_per_tok", "moe_top_k", "top_k")
    dtype = _dtype(model)
    n_weights, weight_bytes = weight_counts(model)
    elem_bytes = torch.empty((), dtype=dtype).element_size() if dtype is not None else None
    kv_per_token = (
        2 * layers * kv_heads * head_dim * elem_bytes
        if layers and kv_heads and head_dim and elem_bytes
        else None
    )
    return {
        "architecture": type(model).__name__,
        "model_type": model_type(model),
        "parameters": n_weights,
        "weight_bytes": weight_bytes,
        "bytes_per_param": weight_bytes / n_weights if n_weights else None,
        "layers": layers,
        "hidden_size": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "attention_type": attention_type(heads, kv_heads),
        "intermediate_size": _first_int(cfg, "intermediate_size", "n_inner", "ffn_dim"),
        "moe": bool(experts and experts > 1),
        "experts": experts,
        "experts_top_k": top_k if experts else None,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "quantization": _quantization(cfg, quantization),
        "vocab_size": _first_int(cfg, "vocab_size"),
        "max_context": _first_int(
            cfg, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"
        ),
        "kv_cache_bytes_per_token": kv_per_token,
        "labels": {
            "kv_cache_bytes_per_token": "modeled",
            "parameters": "counted",
            "weight_bytes": "counted",
        },
    }


def kv_cache_bytes(features: dict[str, Any], n_tokens: int) -> int | None:
    """Modeled KV-cache size for a context of `n_tokens` (None when the model does not say)."""
    if not isinstance(n_tokens, int) or n_tokens < 0:
        raise InvalidInputError(f"n_tokens must be an integer >= 0, got {n_tokens!r}")
    per = features.get("kv_cache_bytes_per_token")
    return None if per is None else int(per) * n_tokens


def model_name(model: Any) -> str:
    """The model's name: a name given by the loader, its hub id or path, else its class name."""
    cfg = getattr(model, "config", None)
    for attr in ("_llm_energy_name", "name_or_path", "_name_or_path"):
        v = getattr(cfg, attr, None)
        if v:
            return str(v)
    return type(model).__name__


def machine_description(device: Any) -> dict[str, Any]:
    """Which machine a run was measured on, so runs of different machines are never fitted or
    compared as one (`analysis.predict`): host, platform, CPU count and the accelerator's name."""
    import os
    import platform

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    accel = None
    try:
        if dev.type == "cuda":
            accel = torch.cuda.get_device_name(dev)
        elif dev.type == "mps":
            accel = "Apple MPS"
    except Exception:  # descriptive only
        accel = None
    return {
        "host": platform.node(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerator": accel,
    }
