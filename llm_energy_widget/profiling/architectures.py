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
Whatever else runs between hooked modules (views, residual adds) is "other". Unknown models get
the generic discovery: the longest ModuleList of same-class blocks and their Linear/Conv1D/norm
leaves, in registration order.
"""

from __future__ import annotations

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

REGISTRY: dict[str, ArchSpec] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gemma": _LLAMA,
    "stablelm": _LLAMA,
    "qwen3": ArchSpec(("model.layers",), _QK_NORM_ATTN + _GATED_MLP, _LLAMA_GAPS, _GATED_ACT),
    "gemma2": ArchSpec(("model.layers",), _LLAMA_ATTN + _GEMMA2_MLP, _LLAMA_GAPS, _GATED_ACT),
    "gemma3_text": ArchSpec(
        ("model.layers", "model.language_model.layers"),
        _GEMMA3_ATTN + _GEMMA2_MLP,
        (("attention", "k_norm", "o_proj"), ("mlp_act", "up_proj", "down_proj")),
        _GATED_ACT,
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
    "gpt2": ArchSpec(
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
    ),
    "gpt_neox": ArchSpec(
        ("gpt_neox.layers",),
        (
            ("input_layernorm", "input_layernorm"),
            ("attention.query_key_value", "query_key_value"),
            ("attention.dense", "dense"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            ("mlp.dense_h_to_4h", "dense_h_to_4h"),
            ("mlp.dense_4h_to_h", "dense_4h_to_h"),
        ),
        (("attention", "query_key_value", "dense"), ("mlp_act", "dense_h_to_4h", "dense_4h_to_h")),
        attention="attention",
        gate="mlp.dense_h_to_4h",
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
    gaps = [g for g in spec.gaps if g[1] in present and g[2] in present]
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
    return cls == "Conv1D" or cls.endswith(("RMSNorm", "LayerNorm", "Norm"))


def _generic(model: nn.Module, mtype: str, registry_miss: bool) -> Discovery:
    found = find_block_list(model)
    if found is None:
        raise InvalidInputError(
            f"cannot profile layers of {type(model).__name__}: no repeated block list "
            "(nn.ModuleList of same-class modules) found; use level='token'"
        )
    path, layers = found
    rels: list[str] = []  # union over layers, first-seen order
    per_layer: list[dict[str, nn.Module]] = []
    for layer in layers:
        row = {}
        for rel, mod in layer.named_modules():
            if rel and _is_leaf_component(mod):
                row[rel] = mod
                if rel not in rels:
                    rels.append(rel)
        per_layer.append(row)
    if not rels:
        raise InvalidInputError(
            f"cannot profile components of {type(model).__name__}: its blocks "
            f"({type(layers[0]).__name__}) have no Linear/Conv1D/norm children; use level='layer'"
        )
    display = _short_names(rels)
    comps = [{display[rel]: mod for rel, mod in row.items()} for row in per_layer]
    skipped = []
    if registry_miss:
        skipped.append({"what": "registry", "reason": f"{mtype} entry did not match this model"})
    attn_rel = next((n for n in _ATTENTION_NAMES if _get(layers[0], n) is not None), None)
    gate_rel = next((n for n in _GATE_NAMES if _get(layers[0], n) is not None), None)
    return Discovery(
        architecture=type(model).__name__,
        how="generic",
        layers_path=path,
        layers=list(layers),
        component_names=[display[r] for r in rels],
        components=comps,
        gaps=[],
        gap_modules=[[] for _ in layers],
        attention=[_get(la, attn_rel) if attn_rel else None for la in layers],
        gates=[_get(la, gate_rel) if gate_rel else None for la in layers],
        gate_first_half=False,
        routers=[None for _ in layers],
        skipped=skipped,
    )


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
