"""Mixture-of-experts routing per token: which experts fired and how sure the router was.

Read from a forward hook on each router (the `gate`/`router` of the sparse MoE block).
transformers v5 routers return (logits, scores, top-k indices): mixtral, qwen2_moe, qwen3_moe,
olmoe, granitemoe(shared), phimoe, gpt_oss, deepseek_v2/v3, glm4_moe, ernie4_5_moe, minimax.
Older ones return only the logits, and then the top-k is taken from the logits (the same ranking
as from the softmax). A few put the logits elsewhere (`_LOGITS_AT`: llama4 returns (scores,
logits), JetMoE five tensors with the logits last). The row used is the last position of the
forward: the one that produces the next token.

The entropy is that of the router's own distribution over experts: a softmax of the logits,
or, for routers that score each expert with a sigmoid (deepseek_v3, glm4_moe, llama4), the
sigmoid scores normalized to sum to one (`_SIGMOID`); the group-limited selection of
deepseek_v3 is not applied to it, so it measures how spread the scores are, not the choice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .architectures import first_tensor

__all__ = ["RouterTap", "router_logits", "router_n_experts", "router_top_k"]

_LOGITS_AT = {"Llama4Router": 1, "JetMoeTopKGating": 4}  # router class -> index of its logits
_SIGMOID = frozenset({"DeepseekV3TopkRouter", "Glm4MoeTopkRouter", "Llama4Router"})


def router_top_k(router: nn.Module, config: Any) -> int:
    for owner, attr in ((router, "top_k"), (config, "num_experts_per_tok"), (config, "top_k")):
        v = getattr(owner, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1


def router_n_experts(router: nn.Module, config: Any) -> int | None:
    for owner, attr in (
        (router, "num_experts"),
        (config, "num_local_experts"),
        (config, "num_experts"),
        (config, "n_routed_experts"),
    ):
        v = getattr(owner, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    w = getattr(router, "weight", None)
    return int(w.shape[0]) if isinstance(w, torch.Tensor) else None


def router_logits(router: nn.Module, out: Any) -> torch.Tensor | None:
    """The router's logits in its output (the first tensor, unless `_LOGITS_AT` says)."""
    at = _LOGITS_AT.get(type(router).__name__)
    if at is not None and isinstance(out, (tuple, list)) and len(out) > at:
        v = out[at]
        return v if isinstance(v, torch.Tensor) else None
    return first_tensor(out)


class RouterTap:
    """Device buffers [layers, top_k] (expert ids, -1 = not routed) and [layers] (entropy, nats)."""

    def __init__(self, n_layers: int, top_k: int, device: torch.device) -> None:
        self.top_k = top_k
        self.experts = torch.full((n_layers, top_k), -1, dtype=torch.long, device=device)
        self.entropy = torch.full((n_layers,), float("nan"), device=device)

    def hook(self, layer: int) -> Any:
        experts, entropy, k = self.experts, self.entropy, self.top_k

        def on_router(module: nn.Module, args: Any, out: Any) -> None:
            logits = router_logits(module, out)
            if logits is None:
                return
            cls = type(module).__name__
            with torch.no_grad():
                last = logits.reshape(-1, logits.shape[-1])[-1].float()
                if cls in _SIGMOID:
                    s = torch.sigmoid(last)
                    p = s / s.sum().clamp_min(1e-30)
                else:
                    p = torch.softmax(last, dim=-1)
                entropy[layer : layer + 1].copy_(-torch.special.xlogy(p, p).sum(-1, keepdim=True))
                idx = out[2] if isinstance(out, tuple) and len(out) >= 3 else None
                if (
                    cls not in _LOGITS_AT
                    and isinstance(idx, torch.Tensor)
                    and idx.dtype in (torch.long, torch.int32)
                ):
                    ids = idx.reshape(-1, idx.shape[-1])[-1]
                else:
                    ids = torch.topk(last, min(k, last.shape[-1])).indices
                experts[layer, : ids.shape[0]].copy_(ids[:k])

        return on_router

    def reset(self) -> None:
        self.experts.fill_(-1)
        self.entropy.fill_(float("nan"))
