"""Where the decoder layers and their components live, per architecture, plus a generic fallback.

A registry entry lists components in execution order, so the heatmap reads top to bottom like the
forward pass; `gaps` name the work between two hooked components that no hooked module owns,
timed from timestamps we take anyway:
- "attention": from the last of q/k/v (or the fused qkv projection, or q/k norms) to the output
  projection: the rotary embedding applied to q and k, the KV-cache update, the attention kernel
  (scores, mask, softmax, weighted sum) and the reshapes around it. The rotary cos/sin table
  is computed once per forward outside the layers, so it is in no layer;
- "mlp_act": the MLP's activation function and, in gated MLPs, the multiply by the up
  projection. In a gated MLP, down_proj(act_fn(gate_proj(x)) * up_proj(x)), the activation runs
  between gate_proj and up_proj, outside the up_proj -> down_proj gap, so `gap_modules` times
  the act_fn module itself into the same cell; ungated MLPs (fc1 -> act -> fc2) and fused
  gate_up projections (act and multiply after it) have both inside the gap.
Whatever else runs between hooked modules (views, residual adds) is "other". MoE blocks list
their router (its logits give the routing, `moe`) and their fused experts (transformers v5 keeps
every expert's weights in one module of 3-D parameters) as one component each.

Unknown models get the generic discovery: the longest ModuleList of same-class blocks; in each,
the Linear/Conv1D/norm modules, routers, fused experts and shared experts, in the order the
block's `forward` source calls them (`_call_order`: read statically, so discovery runs nothing
on the model and leaves no hook; the matrix test checks the order against a real forward for
every architecture it builds). The attention block (`self_attn`/`attn`/`attention`/
`self_attention`) and the MLP (`mlp`/`feed_forward`/`ffn`/`block_sparse_moe`, or fc1/fc2 on the
layer) are found by name, and their gaps by the registry's rules (`_gaps_of`). Run on every
registered architecture, the generic discovery finds exactly its entry (tested); entries stay
because they are explicit, reviewed and trusted (`LayerProfiler._trusted`).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError

__all__ = [
    "REGISTRY",
    "ArchSpec",
    "Discovery",
    "discover",
    "find_block_list",
    "first_tensor",
    "model_type",
]


@dataclass(frozen=True)
class ArchSpec:
    """Module paths relative to one decoder layer, in execution order."""

    layers_paths: tuple[str, ...]
    components: tuple[tuple[str, str], ...]  # (relative path, display name)
    gaps: tuple[tuple[str, str, str], ...] = ()  # (display name, after component, before component)
    gap_modules: tuple[tuple[str, str], ...] = ()  # (relative path, gap): timed into that gap
    attention: str | None = "self_attn"
    gate: str | None = "mlp.gate_proj"  # pre-activation of the MLP gate (for the kill ratio)
    gate_first_half: bool = False  # fused gate_up projection: the gate is the first half
    router: str | None = None  # MoE router (gate) module


_LLAMA_ATTN = (
    ("input_layernorm", "input_layernorm"),
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.k_proj", "k_proj"),
    ("self_attn.v_proj", "v_proj"),
    ("self_attn.o_proj", "o_proj"),
    ("post_attention_layernorm", "post_attention_layernorm"),
)
_GATED_MLP = (
    ("mlp.gate_proj", "gate_proj"),
    ("mlp.up_proj", "up_proj"),
    ("mlp.down_proj", "down_proj"),
)
_LLAMA_GAPS = (("attention", "v_proj", "o_proj"), ("mlp_act", "up_proj", "down_proj"))
_GATED_ACT = (("mlp.act_fn", "mlp_act"),)  # runs before up_proj, outside the gap (docstring)
_QK_NORM_ATTN = (
    ("input_layernorm", "input_layernorm"),
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.q_norm", "q_norm"),
    ("self_attn.k_proj", "k_proj"),
    ("self_attn.k_norm", "k_norm"),
    ("self_attn.v_proj", "v_proj"),
    ("self_attn.o_proj", "o_proj"),
    ("post_attention_layernorm", "post_attention_layernorm"),
)
_GEMMA3_ATTN = (
    ("input_layernorm", "input_layernorm"),
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.k_proj", "k_proj"),
    ("self_attn.v_proj", "v_proj"),
    ("self_attn.q_norm", "q_norm"),
    ("self_attn.k_norm", "k_norm"),
    ("self_attn.o_proj", "o_proj"),
    ("post_attention_layernorm", "post_attention_layernorm"),
)
_GEMMA2_MLP = (
    ("pre_feedforward_layernorm", "pre_feedforward_layernorm"),
    *_GATED_MLP,
    ("post_feedforward_layernorm", "post_feedforward_layernorm"),
)
_LLAMA = ArchSpec(("model.layers",), _LLAMA_ATTN + _GATED_MLP, _LLAMA_GAPS, _GATED_ACT)
_UNGATED_MLP = (("mlp.up_proj", "up_proj"), ("mlp.down_proj", "down_proj"))
# up_proj -> act -> down_proj: the activation runs inside the gap, so no gap module
_LLAMA_UNGATED = ArchSpec(
    ("model.layers",), _LLAMA_ATTN + _UNGATED_MLP, _LLAMA_GAPS, gate="mlp.up_proj"
)
_POST_NORM = (  # olmo2/olmo3: norms after attention and after the MLP, q/k norms on whole q, k
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.q_norm", "q_norm"),
    ("self_attn.k_proj", "k_proj"),
    ("self_attn.k_norm", "k_norm"),
    ("self_attn.v_proj", "v_proj"),
    ("self_attn.o_proj", "o_proj"),
    ("post_attention_layernorm", "post_attention_layernorm"),
    *_GATED_MLP,
    ("post_feedforward_layernorm", "post_feedforward_layernorm"),
)
_FUSED_GATE_UP = (("mlp.gate_up_proj", "gate_up_proj"), ("mlp.down_proj", "down_proj"))
_FUSED_GATE_UP_GAPS = (("attention", "v_proj", "o_proj"), ("mlp_act", "gate_up_proj", "down_proj"))
_GPT2 = ArchSpec(
    ("transformer.h",),
    (
        ("ln_1", "ln_1"),
        ("attn.c_attn", "c_attn"),
        ("attn.c_proj", "attn.c_proj"),
        ("ln_2", "ln_2"),
        ("mlp.c_fc", "c_fc"),
        ("mlp.c_proj", "mlp.c_proj"),
    ),
    (("attention", "c_attn", "attn.c_proj"), ("mlp_act", "c_fc", "mlp.c_proj")),
    attention="attn",
    gate="mlp.c_fc",
)
_OPT_LIKE = (  # opt, xglm, biogpt: fc1/fc2 directly on the layer
    ("self_attn_layer_norm", "self_attn_layer_norm"),
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.k_proj", "k_proj"),
    ("self_attn.v_proj", "v_proj"),
    ("self_attn.out_proj", "out_proj"),
    ("final_layer_norm", "final_layer_norm"),
    ("fc1", "fc1"),
    ("fc2", "fc2"),
)
_OPT_GAPS = (("attention", "v_proj", "out_proj"), ("mlp_act", "fc1", "fc2"))
_GPTJ_MLP = (("mlp.fc_in", "fc_in"), ("mlp.fc_out", "fc_out"))
_H_TO_4H = (("mlp.dense_h_to_4h", "dense_h_to_4h"), ("mlp.dense_4h_to_h", "dense_4h_to_h"))
_H_TO_4H_GAPS = (
    ("attention", "query_key_value", "dense"),
    ("mlp_act", "dense_h_to_4h", "dense_4h_to_h"),
)
_MLA_ATTN = (  # deepseek v2/v3 multi-head latent attention (q_proj when q_lora_rank is None)
    ("input_layernorm", "input_layernorm"),
    ("self_attn.q_proj", "q_proj"),
    ("self_attn.q_a_proj", "q_a_proj"),
    ("self_attn.q_a_layernorm", "q_a_layernorm"),
    ("self_attn.q_b_proj", "q_b_proj"),
    ("self_attn.kv_a_proj_with_mqa", "kv_a_proj_with_mqa"),
    ("self_attn.kv_a_layernorm", "kv_a_layernorm"),
    ("self_attn.kv_b_proj", "kv_b_proj"),
    ("self_attn.o_proj", "o_proj"),
    ("post_attention_layernorm", "post_attention_layernorm"),
)
# Fused experts (one module holding every expert's weights as 3-D parameters, transformers v5)
# are timed as one block; `shared_experts` likewise. Dense layers of the same model (first_k_dense,
# mlp_only_layers) keep their gated MLP components and its gap.
_ROUTED = (("mlp.gate", "router"), ("mlp.experts", "experts"))
_ROUTED_SHARED = (*_ROUTED, ("mlp.shared_experts", "shared_experts"))


def _moe(
    attn: tuple[tuple[str, str], ...],
    moe: tuple[tuple[str, str], ...],
    router: str = "mlp.gate",
    attention_gap: tuple[str, str] = ("v_proj", "o_proj"),
    dense: bool = True,
) -> ArchSpec:
    """An MoE architecture: attention, the routed block, and (`dense`) the gated MLP of its
    dense layers."""
    return ArchSpec(
        ("model.layers",),
        (*attn, *moe, *(_GATED_MLP if dense else ())),
        (("attention", *attention_gap), *((("mlp_act", "up_proj", "down_proj"),) if dense else ())),
        _GATED_ACT if dense else (),
        gate="mlp.gate_proj" if dense else None,
        router=router,
    )


_MLA_MOE = _moe(_MLA_ATTN, _ROUTED_SHARED, attention_gap=("kv_b_proj", "o_proj"))
# MLA caches the compressed latent: the rotary embedding and the cache update run between
# kv_a_layernorm and kv_b_proj, which then expands the whole cached latent (in `expand_kv`), so
# they get a gap of their own (measured: 30 % of a tiny MoE layer's time was in "other")
_MLA = ArchSpec(
    _MLA_MOE.layers_paths,
    _MLA_MOE.components,
    (("rope_kv_cache", "kv_a_layernorm", "kv_b_proj"), *_MLA_MOE.gaps),
    _MLA_MOE.gap_modules,
    gate=_MLA_MOE.gate,
    router=_MLA_MOE.router,
)

REGISTRY: dict[str, ArchSpec] = {
    **dict.fromkeys(
        (
            "llama",
            "mistral",
            "qwen2",
            "gemma",
            "stablelm",
            "olmo",
            "granite",
            "cohere",  # parallel attention and MLP from one norm: no post_attention_layernorm
            "cohere2",
            "smollm3",
            "ernie4_5",
            "seed_oss",
            "helium",
            "internlm3",
        ),
        _LLAMA,
    ),
    "qwen3": ArchSpec(("model.layers",), _QK_NORM_ATTN + _GATED_MLP, _LLAMA_GAPS, _GATED_ACT),
    "gemma2": ArchSpec(("model.layers",), _LLAMA_ATTN + _GEMMA2_MLP, _LLAMA_GAPS, _GATED_ACT),
    "vaultgemma": ArchSpec(("model.layers",), _LLAMA_ATTN + _GEMMA2_MLP, _LLAMA_GAPS, _GATED_ACT),
    "gemma3_text": ArchSpec(
        ("model.layers", "model.language_model.layers"),
        _GEMMA3_ATTN + _GEMMA2_MLP,
        (("attention", "k_norm", "o_proj"), ("mlp_act", "up_proj", "down_proj")),
        _GATED_ACT,
    ),
    "olmo2": ArchSpec(("model.layers",), _POST_NORM, _LLAMA_GAPS, _GATED_ACT),
    "olmo3": ArchSpec(("model.layers",), _POST_NORM, _LLAMA_GAPS, _GATED_ACT),
    "exaone4": ArchSpec(
        ("model.layers",),
        (
            ("self_attn.q_proj", "q_proj"),
            ("self_attn.k_proj", "k_proj"),
            ("self_attn.v_proj", "v_proj"),
            ("self_attn.q_norm", "q_norm"),
            ("self_attn.k_norm", "k_norm"),
            ("self_attn.o_proj", "o_proj"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_GATED_MLP,
            ("post_feedforward_layernorm", "post_feedforward_layernorm"),
        ),
        (("attention", "k_norm", "o_proj"), ("mlp_act", "up_proj", "down_proj")),
        _GATED_ACT,
    ),
    "bitnet": ArchSpec(
        ("model.layers",),
        (
            *_LLAMA_ATTN[:4],
            ("self_attn.attn_sub_norm", "attn_sub_norm"),
            *_LLAMA_ATTN[4:],
            ("mlp.gate_proj", "gate_proj"),
            ("mlp.up_proj", "up_proj"),
            ("mlp.ffn_sub_norm", "ffn_sub_norm"),
            ("mlp.down_proj", "down_proj"),
        ),
        (("attention", "v_proj", "attn_sub_norm"), ("mlp_act", "up_proj", "ffn_sub_norm")),
        _GATED_ACT,
    ),
    "arcee": _LLAMA_UNGATED,
    "nemotron": _LLAMA_UNGATED,
    "apertus": ArchSpec(
        ("model.layers",),
        (
            ("attention_layernorm", "attention_layernorm"),
            ("self_attn.q_proj", "q_proj"),
            ("self_attn.k_proj", "k_proj"),
            ("self_attn.v_proj", "v_proj"),
            ("self_attn.q_norm", "q_norm"),
            ("self_attn.k_norm", "k_norm"),
            ("self_attn.o_proj", "o_proj"),
            ("feedforward_layernorm", "feedforward_layernorm"),
            *_UNGATED_MLP,
        ),
        (("attention", "k_norm", "o_proj"), ("mlp_act", "up_proj", "down_proj")),
        gate="mlp.up_proj",
    ),
    "glm": ArchSpec(
        ("model.layers",),
        _LLAMA_ATTN + _FUSED_GATE_UP,
        _FUSED_GATE_UP_GAPS,
        gate="mlp.gate_up_proj",
        gate_first_half=True,
    ),
    "glm4": ArchSpec(
        ("model.layers",),
        (
            *_LLAMA_ATTN[:5],
            ("post_self_attn_layernorm", "post_self_attn_layernorm"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_FUSED_GATE_UP,
            ("post_mlp_layernorm", "post_mlp_layernorm"),
        ),
        _FUSED_GATE_UP_GAPS,
        gate="mlp.gate_up_proj",
        gate_first_half=True,
    ),
    "starcoder2": ArchSpec(
        ("model.layers",),
        (*_LLAMA_ATTN, ("mlp.c_fc", "c_fc"), ("mlp.c_proj", "c_proj")),
        (("attention", "v_proj", "o_proj"), ("mlp_act", "c_fc", "c_proj")),
        gate="mlp.c_fc",
    ),
    "mixtral": ArchSpec(
        ("model.layers",),
        (*_LLAMA_ATTN, ("mlp.gate", "router"), ("mlp.experts", "experts")),
        (("attention", "v_proj", "o_proj"),),
        gate=None,
        router="mlp.gate",
    ),
    "qwen2_moe": ArchSpec(
        ("model.layers",),
        (
            *_LLAMA_ATTN,
            ("mlp.shared_expert", "shared_expert"),
            ("mlp.gate", "router"),
            ("mlp.experts", "experts"),
            ("mlp.shared_expert_gate", "shared_expert_gate"),
            *_GATED_MLP,  # dense layers (mlp_only_layers / decoder_sparse_step)
        ),
        _LLAMA_GAPS,
        _GATED_ACT,
        router="mlp.gate",
    ),
    "qwen3_moe": _moe(_QK_NORM_ATTN, _ROUTED),
    "olmoe": _moe(_QK_NORM_ATTN, _ROUTED, dense=False),
    "granitemoe": _moe(
        _LLAMA_ATTN,
        (("block_sparse_moe.router", "router"), ("block_sparse_moe.experts", "experts")),
        router="block_sparse_moe.router",
        dense=False,
    ),
    "granitemoeshared": _moe(
        _LLAMA_ATTN,
        (
            ("block_sparse_moe.router", "router"),
            ("block_sparse_moe.experts", "experts"),
            ("shared_mlp", "shared_mlp"),
        ),
        router="block_sparse_moe.router",
        dense=False,
    ),
    "phimoe": _moe(
        _LLAMA_ATTN,
        (("mlp.router", "router"), ("mlp.experts", "experts")),
        router="mlp.router",
        dense=False,
    ),
    "gpt_oss": _moe(
        _LLAMA_ATTN,
        (("mlp.router", "router"), ("mlp.experts", "experts")),
        router="mlp.router",
        dense=False,
    ),
    "deepseek_v2": _MLA,
    "deepseek_v3": _MLA,
    "glm4_moe": _moe(_QK_NORM_ATTN, _ROUTED_SHARED),  # q_norm/k_norm only with use_qk_norm
    # llama4: the rotary embedding runs after v_proj, then the parameter-free qk_norm; both sit
    # in the attention gap (v_proj -> o_proj) with the kernel. MoE and dense layers interleave.
    "llama4_text": ArchSpec(
        ("model.layers",),
        (
            *_LLAMA_ATTN,
            ("feed_forward.router", "router"),
            ("feed_forward.experts", "experts"),
            ("feed_forward.shared_expert", "shared_expert"),
            ("feed_forward.gate_proj", "gate_proj"),
            ("feed_forward.up_proj", "up_proj"),
            ("feed_forward.down_proj", "down_proj"),
        ),
        _LLAMA_GAPS,
        (("feed_forward.activation_fn", "mlp_act"),),
        attention="self_attn",
        gate="feed_forward.gate_proj",
        router="feed_forward.router",
    ),
    "ernie4_5_moe": _moe(_LLAMA_ATTN, (("mlp.shared_experts", "shared_experts"), *_ROUTED)),
    "phi": ArchSpec(
        ("model.layers",),
        (
            ("input_layernorm", "input_layernorm"),
            ("self_attn.q_proj", "q_proj"),
            ("self_attn.k_proj", "k_proj"),
            ("self_attn.v_proj", "v_proj"),
            ("self_attn.dense", "dense"),
            ("mlp.fc1", "fc1"),
            ("mlp.fc2", "fc2"),
        ),
        (("attention", "v_proj", "dense"), ("mlp_act", "fc1", "fc2")),
        gate="mlp.fc1",
    ),
    "phi3": ArchSpec(
        ("model.layers",),
        (
            ("input_layernorm", "input_layernorm"),
            ("self_attn.qkv_proj", "qkv_proj"),
            ("self_attn.o_proj", "o_proj"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            ("mlp.gate_up_proj", "gate_up_proj"),
            ("mlp.down_proj", "down_proj"),
        ),
        (("attention", "qkv_proj", "o_proj"), ("mlp_act", "gate_up_proj", "down_proj")),
        gate="mlp.gate_up_proj",
        gate_first_half=True,
    ),
    "gpt2": _GPT2,
    "gpt_bigcode": _GPT2,
    "gptj": ArchSpec(  # attention and MLP in parallel from ln_1
        ("transformer.h",),
        (
            ("ln_1", "ln_1"),
            ("attn.q_proj", "q_proj"),
            ("attn.k_proj", "k_proj"),
            ("attn.v_proj", "v_proj"),
            ("attn.out_proj", "out_proj"),
            *_GPTJ_MLP,
        ),
        (("attention", "v_proj", "out_proj"), ("mlp_act", "fc_in", "fc_out")),
        attention="attn",
        gate="mlp.fc_in",
    ),
    "codegen": ArchSpec(
        ("transformer.h",),
        (
            ("ln_1", "ln_1"),
            ("attn.qkv_proj", "qkv_proj"),
            ("attn.out_proj", "out_proj"),
            *_GPTJ_MLP,
        ),
        (("attention", "qkv_proj", "out_proj"), ("mlp_act", "fc_in", "fc_out")),
        attention="attn",
        gate="mlp.fc_in",
    ),
    "opt": ArchSpec(("model.decoder.layers",), _OPT_LIKE, _OPT_GAPS, gate="fc1"),
    "xglm": ArchSpec(("model.layers",), _OPT_LIKE, _OPT_GAPS, gate="fc1"),
    "biogpt": ArchSpec(("biogpt.layers",), _OPT_LIKE, _OPT_GAPS, gate="fc1"),
    "gpt_neox": ArchSpec(
        ("gpt_neox.layers",),
        (
            ("input_layernorm", "input_layernorm"),
            ("attention.query_key_value", "query_key_value"),
            ("attention.dense", "dense"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_H_TO_4H,
        ),
        _H_TO_4H_GAPS,
        attention="attention",
        gate="mlp.dense_h_to_4h",
    ),
    "bloom": ArchSpec(
        ("transformer.h",),
        (
            ("input_layernorm", "input_layernorm"),
            ("self_attention.query_key_value", "query_key_value"),
            ("self_attention.dense", "dense"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_H_TO_4H,
        ),
        _H_TO_4H_GAPS,
        attention="self_attention",
        gate="mlp.dense_h_to_4h",
    ),
    "falcon": ArchSpec(  # ln_attn/ln_mlp: new_decoder_architecture; else input_layernorm
        ("transformer.h",),
        (
            ("ln_attn", "ln_attn"),
            ("ln_mlp", "ln_mlp"),
            ("input_layernorm", "input_layernorm"),
            ("self_attention.query_key_value", "query_key_value"),
            ("self_attention.dense", "dense"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_H_TO_4H,
        ),
        _H_TO_4H_GAPS,
        attention="self_attention",
        gate="mlp.dense_h_to_4h",
    ),
    "persimmon": ArchSpec(
        ("model.layers",),
        (
            ("input_layernorm", "input_layernorm"),
            ("self_attn.query_key_value", "query_key_value"),
            ("self_attn.q_layernorm", "q_layernorm"),
            ("self_attn.k_layernorm", "k_layernorm"),
            ("self_attn.dense", "dense"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            *_H_TO_4H,
        ),
        (  # the first gap whose ends exist wins (qk_layernorm is optional)
            ("attention", "k_layernorm", "dense"),
            ("attention", "query_key_value", "dense"),
            ("mlp_act", "dense_h_to_4h", "dense_4h_to_h"),
        ),
        gate="mlp.dense_h_to_4h",
    ),
    "mpt": ArchSpec(
        ("transformer.blocks",),
        (
            ("norm_1", "norm_1"),
            ("attn.Wqkv", "Wqkv"),
            ("attn.out_proj", "out_proj"),
            ("norm_2", "norm_2"),
            ("ffn.up_proj", "up_proj"),
            ("ffn.down_proj", "down_proj"),
        ),
        (("attention", "Wqkv", "out_proj"), ("mlp_act", "up_proj", "down_proj")),
        attention="attn",
        gate="ffn.up_proj",
    ),
}

_LEAF_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LayerNorm, nn.Embedding)
_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
_GATE_NAMES = ("mlp.gate_proj", "mlp.c_fc", "mlp.fc1", "mlp.dense_h_to_4h", "fc1")


@dataclass
class Discovery:
    """What one model exposes for profiling (modules are live references into the model)."""

    architecture: str
    how: str  # "registry:<model_type>" or "generic"
    layers_path: str
    layers: list[nn.Module]
    component_names: list[str]
    components: list[dict[str, nn.Module]]  # per layer: display name -> module
    gaps: list[tuple[str, str, str]]
    gap_modules: list[list[tuple[str, nn.Module]]]  # per layer: (gap, module timed into it)
    attention: list[nn.Module | None]
    gates: list[nn.Module | None]
    gate_first_half: bool
    routers: list[nn.Module | None]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "discovered_by": self.how,
            "layers_path": self.layers_path,
            "n_layers": self.n_layers,
            "component_names": list(self.component_names),
            "component_modules": _component_classes(self),
            "gaps": [
                {"name": g, "after": a, "before": b, "plus": self._gap_plus(g)}
                for g, a, b in self.gaps
            ],
            "skipped": list(self.skipped),
        }

    def _gap_plus(self, gap: str) -> list[str]:
        """Classes of the modules whose own time is added to `gap` (e.g. the act_fn)."""
        return sorted({type(m).__name__ for row in self.gap_modules for g, m in row if g == gap})


def model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or type(model).__name__)


def discover(model: nn.Module) -> Discovery:
    """Registry entry for the model type if it matches the model, else the generic discovery."""
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    mtype = model_type(model)
    spec = REGISTRY.get(mtype)
    if spec is not None:
        found = _from_spec(model, mtype, spec)
        if found is not None:
            return found
    return _generic(model, mtype, registry_miss=spec is not None)


def _get(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _from_spec(model: nn.Module, mtype: str, spec: ArchSpec) -> Discovery | None:
    for path in spec.layers_paths:
        layers = _get(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            break
    else:
        return None
    comps: list[dict[str, nn.Module]] = []
    present: set[str] = set()
    for layer in layers:
        row = {}
        for rel, name in spec.components:
            mod = _get(layer, rel)
            if mod is not None:
                row[name] = mod
                present.add(name)
        comps.append(row)
    if not present:
        return None
    names = [name for _, name in spec.components if name in present]
    skipped = [
        {"what": rel, "reason": f"not in this {mtype} model (optional)"}
        for rel, name in spec.components
        if name not in present
    ]
    gaps: list[tuple[str, str, str]] = []
    for g in spec.gaps:  # the first entry of a gap whose ends exist wins (optional components)
        if g[1] in present and g[2] in present and g[0] not in {x[0] for x in gaps}:
            gaps.append(g)
    ends = {g: (a, b) for g, a, b in gaps}
    gap_modules = [
        [
            (gap, mod)
            for rel, gap in spec.gap_modules
            if gap in ends
            and all(c in row for c in ends[gap])  # this layer has the gap (dense vs MoE layers)
            and (mod := _get(layer, rel)) is not None
        ]
        for layer, row in zip(layers, comps, strict=True)
    ]
    return Discovery(
        architecture=type(model).__name__,
        how=f"registry:{mtype}",
        layers_path=path,
        layers=list(layers),
        component_names=names,
        components=comps,
        gaps=gaps,
        gap_modules=gap_modules,
        attention=[_get(la, spec.attention) if spec.attention else None for la in layers],
        gates=[_get(la, spec.gate) if spec.gate else None for la in layers],
        gate_first_half=spec.gate_first_half,
        routers=[_get(la, spec.router) if spec.router else None for la in layers],
        skipped=skipped,
    )


def find_block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The longest ModuleList whose children all share one class: the repeated decoder blocks."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(m) for m in mod}) != 1 or isinstance(mod[0], _LEAF_TYPES):
            continue
        if best is None or len(mod) > len(best[1]):
            best = (name, mod)
    return best


def _is_leaf_component(mod: nn.Module) -> bool:
    if isinstance(mod, _LEAF_TYPES):
        return True
    cls = type(mod).__name__
    return cls == "Conv1D" or "Norm" in cls


def _generic(model: nn.Module, mtype: str, registry_miss: bool) -> Discovery:
    found = find_block_list(model)
    if found is None:
        raise InvalidInputError(
            f"cannot profile layers of {type(model).__name__}: no repeated block list "
            "(nn.ModuleList of same-class modules) found; use level='token'"
        )
    path, layers = found
    walks = [_walk(layer) for layer in layers]
    rels = _merge_orders([[p.rel for p in w if p.kind != "act"] for w in walks])
    if not rels:
        raise InvalidInputError(
            f"cannot profile components of {type(model).__name__}: its blocks "
            f"({type(layers[0]).__name__}) have no Linear/Conv1D/norm children; use level='layer'"
        )
    display = _short_names(rels)
    for w in walks:  # the router and the fused experts keep the registry's names where unique
        for p in w:
            if p.kind in ("router", "experts") and p.kind not in display.values():
                display[p.rel] = p.kind
    comps = [{display[p.rel]: p.mod for p in w if p.kind != "act"} for w in walks]
    skipped: list[dict[str, str]] = []
    if registry_miss:
        skipped.append({"what": "registry", "reason": f"{mtype} entry did not match this model"})
    if not _call_order(layers[0]):
        skipped.append(
            {"what": "order", "reason": "forward source unavailable: registration order"}
        )
    for w in walks[:1]:
        skipped.extend(
            {"what": p.rel, "reason": "experts as a ModuleList: their time is in 'other'"}
            for p in w
            if p.kind == "expert_list"
        )
    gaps: list[tuple[str, str, str]] = []
    gap_modules: list[list[tuple[str, nn.Module]]] = []
    for w in walks:
        row_gaps = _gaps_of(w)
        row_mods: list[tuple[str, nn.Module]] = []
        for gname, after, before, acts in row_gaps:
            g = (gname, display[after], display[before])
            if gname not in {x[0] for x in gaps}:
                gaps.append(g)
            if g in gaps:
                row_mods.extend((gname, m) for m in acts)
        gap_modules.append(row_mods)
    attn_rel = next((n for n in _ATTENTION_NAMES if _get(layers[0], n) is not None), None)
    gates: list[nn.Module | None] = []
    first_half = False
    for w in walks:
        lin = [p for p in w if p.block == "mlp" and p.kind == "leaf" and p.linear]
        routed = any(p.kind == "router" for p in w)
        gates.append(lin[0].mod if lin and not routed else None)
        first_half = first_half or bool(lin and "gate_up" in lin[0].rel)
    return Discovery(
        architecture=type(model).__name__,
        how="generic",
        layers_path=path,
        layers=list(layers),
        component_names=[display[r] for r in rels],
        components=comps,
        gaps=gaps,
        gap_modules=gap_modules,
        attention=[_get(la, attn_rel) if attn_rel else None for la in layers],
        gates=gates,
        gate_first_half=first_half,
        routers=[_router_of(w) for w in walks],
        skipped=skipped,
    )


# -- generic discovery: what a block holds, in execution order --------------------------------
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe", "moe")
_ROUTER_NAMES = ("gate", "router")
_SHARED_NAMES = ("shared_expert", "shared_experts", "shared_mlp")
_SKIP_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity)
# an attention input projection (q/k/v, fused qkv, latent a/b projections, q/k norms): the
# attention gap starts after the last of these
_ATTN_INPUT = re.compile(
    r"(^|[._])(q|k|v|qk|kv|qkv|query|key|value)([._]|$)|query_key_value|c_attn|wqkv|kv_|q_",
    re.IGNORECASE,
)


# activations with parameters of their own (apertus' xIELU) are still activations
_ACTIVATION = re.compile(r"activation|gelu|silu|relu|swish|glu|tanh|sigmoid|xielu", re.IGNORECASE)


@dataclass(frozen=True)
class _Part:
    """One thing the generic discovery found in a decoder block."""

    rel: str  # path relative to the block
    mod: nn.Module
    kind: str  # leaf | router | experts | block | act | expert_list
    block: str  # "attn", "mlp" or "" (directly on the layer)
    linear: bool = False


def _walk(layer: nn.Module) -> list[_Part]:
    """The block's components in execution order (see `_call_order`), descending into
    sub-modules until a Linear/Conv1D/norm, a router, fused experts or a shared expert."""
    out: list[_Part] = []

    def visit(mod: nn.Module, prefix: str, block: str) -> None:
        names = dict(mod.named_children())
        for name in _ordered(mod, list(names)):
            child = names[name]
            rel = f"{prefix}{name}"
            here = block or (
                "attn" if name in _ATTENTION_NAMES else "mlp" if name in _MLP_NAMES else ""
            )
            kind = _kind_of(name, child, names)
            if kind == "descend":
                visit(child, rel + ".", here)
            elif kind != "skip":
                linear = isinstance(child, nn.Linear) or type(child).__name__ == "Conv1D"
                out.append(_Part(rel, child, kind, here, linear))

    visit(layer, "", "")
    if not any(p.block == "mlp" for p in out):  # fc1/fc2 right on the layer (opt, xglm)
        attn_end = max((i for i, p in enumerate(out) if p.block == "attn"), default=-1)
        out = [
            _Part(p.rel, p.mod, p.kind, "mlp", p.linear)
            if i > attn_end and not p.block and (p.linear or p.kind == "act")
            else p
            for i, p in enumerate(out)
        ]
    return out


def _kind_of(name: str, mod: nn.Module, siblings: dict[str, nn.Module]) -> str:
    if name in _ROUTER_NAMES and any(
        n == "experts" or _fused_experts(m) for n, m in siblings.items() if n != name
    ):
        return "router"
    if _fused_experts(mod):
        return "experts"
    if name == "experts" and isinstance(mod, nn.ModuleList):
        return "expert_list"
    if name in _SHARED_NAMES:
        return "block"
    if _is_leaf_component(mod):
        return "leaf"
    if isinstance(mod, (*_SKIP_TYPES, nn.ModuleList, nn.ModuleDict)):
        return "skip"  # a ModuleList is never called itself
    children = any(True for _ in mod.children())
    if children:
        return "descend"
    if any(True for _ in mod.parameters(recurse=False)) and not _ACTIVATION.search(
        type(mod).__name__
    ):
        return "leaf"  # a custom projection (FalconLinear is a Linear; others are not)
    return "act"  # parameter-free: an activation (timed into mlp_act where it runs outside)


def _router_of(parts: list[_Part]) -> nn.Module | None:
    """The MLP's router (a layer may also route attention heads, as JetMoE's MoA does)."""
    routers = [p for p in parts if p.kind == "router"]
    mlp = [p for p in routers if p.block == "mlp"]
    return (mlp or routers)[0].mod if routers else None


def _fused_experts(mod: nn.Module) -> bool:
    """Every expert's weights in one module (3-D parameters, transformers v5): one block."""
    return any(p.dim() >= 3 for p in mod.parameters(recurse=False))


def _gaps_of(parts: list[_Part]) -> list[tuple[str, str, str, list[nn.Module]]]:
    """(gap, after, before, modules timed into it) for one block, by the registry's rules: the
    attention gap from the last attention input projection to what runs next (the output
    projection, or a norm on the attention output); the MLP gap from the up (or fused gate_up,
    fc1, c_fc, dense_h_to_4h) projection to what runs next (the down projection). A gated
    MLP's activation runs before the up projection, outside that gap, so it is timed into it."""
    comps = [p for p in parts if p.kind != "act"]
    out: list[tuple[str, str, str, list[nn.Module]]] = []
    attn = [p for p in comps if p.block == "attn"]
    lin = [i for i, p in enumerate(attn) if p.linear]
    if len(attn) >= 2 and lin and lin[-1] > 0:
        cands = [i for i in range(lin[-1]) if _ATTN_INPUT.search(attn[i].rel.split(".")[-1])]
        a = cands[-1] if cands else lin[-1] - 1
        out.append(("attention", attn[a].rel, attn[a + 1].rel, []))
    if any(p.kind == "router" for p in comps):
        return out  # a routed block: the activation is inside the fused experts
    mlp = [p for p in comps if p.block == "mlp"]
    mlin = [i for i, p in enumerate(mlp) if p.linear]
    if len(mlin) >= 2:
        a = mlin[-2]
        after, before = mlp[a], mlp[a + 1]
        pos = {p.rel: i for i, p in enumerate(parts)}
        acts = [  # run before the gap starts (a gated MLP's act_fn on the gate projection)
            p.mod
            for p in parts
            if p.kind == "act" and p.block == "mlp" and pos[p.rel] < pos[after.rel]
        ]
        out.append(("mlp_act", after.rel, before.rel, acts))
    return out


def _ordered(mod: nn.Module, names: list[str]) -> list[str]:
    """Children in the order `forward` uses them; the rest after, in registration order."""
    used = _call_order(mod)
    rank = {n: i for i, n in enumerate(used)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def _call_order(mod: nn.Module) -> tuple[str, ...]:
    """The `self.<name>` attributes `mod.forward` uses, in the order they run.

    Read from the source, not from a forward: discovery runs nothing on the model, registers
    no hook, and costs nothing per token. Calls are ordered as Python evaluates them: a call
    after its arguments (`down(act(gate(x)) * up(x))` runs gate, act, up, down), an assignment's
    value before its target; methods that forward calls (`self._attn(...)`) are read in place.
    A branch on the module's own settings (`if self.use_parallel_residual:`, `if self.x is
    None:`) follows the instance's value; other branches count in source order. An empty tuple
    when the source is unavailable (then the caller keeps registration order).
    """
    cls = type(mod)
    order: list[str] = []
    seen_methods: set[str] = set()

    def read(fn: Any) -> None:
        node = _source_tree(fn)
        if node is not None:
            visit(node, node.args.args[0].arg)

    def record(name: str) -> None:
        attr = inspect.getattr_static(cls, name, None)
        if inspect.isfunction(attr):
            if name not in seen_methods:
                seen_methods.add(name)
                read(attr)
        elif name not in order:
            order.append(name)

    def visit(node: ast.AST, me: str) -> None:
        if isinstance(node, ast.Call):
            callee = node.func
            own = isinstance(callee, ast.Attribute) and _is_name(callee.value, me)
            if not own:
                visit(callee, me)
            for arg in node.args:
                visit(arg, me)
            for kw in node.keywords:
                visit(kw.value, me)
            if isinstance(callee, ast.Attribute) and own:
                record(callee.attr)
            return
        if isinstance(node, ast.Attribute) and _is_name(node.value, me):
            record(node.attr)
            return
        if isinstance(node, (ast.If, ast.IfExp)):
            taken = _static_truth(node.test, me, mod)
            if taken is None:
                visit(node.test, me)
            branches = [node.body, node.orelse]
            if taken is not None:
                branches = [branches[0] if taken else branches[1]]
            for branch in branches:
                for child in branch if isinstance(branch, list) else [branch]:
                    visit(child, me)
            return
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            if node.value is not None:
                visit(node.value, me)
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                visit(t, me)
            return
        for sub in ast.iter_child_nodes(node):
            visit(sub, me)

    forward = getattr(cls, "forward", None)
    if forward is not None:
        read(inspect.unwrap(forward))
    return tuple(order)


@functools.cache
def _source_tree(fn: Any) -> ast.FunctionDef | None:
    """The parsed definition of a function (cached: discovery reads each class once)."""
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    return node if isinstance(node, ast.FunctionDef) and node.args.args else None


_UNKNOWN = object()


def _static_truth(test: ast.AST, me: str, mod: nn.Module) -> bool | None:
    """The value of a branch condition on the module's own settings, or None if not that."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = _static_truth(test.operand, me, mod)
        return None if v is None else not v
    if isinstance(test, ast.BoolOp):
        vals = [_static_truth(v, me, mod) for v in test.values]
        decisive = isinstance(test.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in vals:
            return decisive
        return None if None in vals else not decisive
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], (ast.Is, ast.IsNot))
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    ):
        obj = _static_value(test.left, me, mod)
        if obj is _UNKNOWN:
            return None
        return (obj is None) == isinstance(test.ops[0], ast.Is)
    obj = _static_value(test, me, mod)
    if obj is None or isinstance(obj, (bool, int, str, nn.Module)):
        return bool(obj)
    return None


def _static_value(node: ast.AST, me: str, mod: nn.Module) -> Any:
    """`self.a.b` read off the instance (no call evaluated), or _UNKNOWN."""
    if _is_name(node, me):
        return mod
    if isinstance(node, ast.Attribute):
        owner = _static_value(node.value, me, mod)
        if owner is _UNKNOWN:
            return _UNKNOWN
        try:
            return getattr(owner, node.attr, _UNKNOWN)
        except Exception:  # a property that fails: not a setting we can read
            return _UNKNOWN
    return _UNKNOWN


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _merge_orders(orders: list[list[str]]) -> list[str]:
    """One order holding every layer's components: each new one right after its predecessor in
    the layer that has it (dense and MoE layers of one model differ)."""
    merged: list[str] = []
    for order in orders:
        prev: str | None = None
        for rel in order:
            if rel not in merged:
                merged.insert(merged.index(prev) + 1 if prev is not None else 0, rel)
            prev = rel
    return merged


def _short_names(rels: list[str]) -> dict[str, str]:
    """Last path segment, or more segments where that alone would be ambiguous."""
    out: dict[str, str] = {}
    depth = 1
    pending = list(rels)
    while pending:
        cand = {r: ".".join(r.split(".")[-depth:]) for r in pending}
        counts = Counter(cand.values())
        pending = [r for r in pending if counts[cand[r]] > 1 and cand[r] != r]
        for r, c in cand.items():
            if r not in pending:
                out[r] = c
        depth += 1
    return out


def _component_classes(d: Discovery) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in d.components:
        for name, mod in row.items():
            out.setdefault(name, type(mod).__name__)
    return out


def first_tensor(x: Any) -> torch.Tensor | None:
    """A module's main output: the tensor itself or the first tensor of a tuple/list."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            if isinstance(v, torch.Tensor):
                return v
    return None
