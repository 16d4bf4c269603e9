"""Mixture-of-experts routing per token: which experts fired and how sure the router was.

Read from a forward hook on each router (the `gate` of the sparse MoE block). transformers v5
routers return (logits, scores, top-k indices); older ones return only the logits, and then the
top-k is taken from the logits (the same ranking as from the softmax). The row used is the last
position of the forward: the one that produces the next token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .architectures import first_tensor

__all__ = ["RouterTap", "router_n_experts", "router_top_k"]


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
    ):
        v = getattr(owner, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    w = getattr(router, "weight", None)
    return int(w.shape[0]) if isinstance(w, torch.Tensor) else None


class RouterTap:
    """Device buffers [layers, top_k] (expert ids, -1 = not routed) and [layers] (entropy, nats)."""

    def __init__(self, n_layers: int, top_k: int, device: torch.device) -> None:
        self.top_k = top_k
        self.experts = torch.full((n_layers, top_k), -1, dtype=torch.long, device=device)
        self.entropy = torch.full((n_layers,), float("nan"), device=device)

    def hook(self, layer: int) -> Any:
        experts, entropy, k = self.experts, self.entropy, self.top_k

        def on_router(module: nn.Module, args: Any, out: Any) -> None:
            logits = first_tensor(out)
            if logits is None:
                return
            with torch.no_grad():
                last = logits.reshape(-1, logits.shape[-1])[-1].float()
                p = torch.softmax(last, dim=-1)
                entropy[layer : layer + 1].copy_(-torch.special.xlogy(p, p).sum(-1, keepdim=True))
                idx = out[2] if isinstance(out, tuple) and len(out) >= 3 else None
                if isinstance(idx, torch.Tensor) and idx.dtype in (torch.long, torch.int32):
                    ids = idx.reshape(-1, idx.shape[-1])[-1]
                else:
                    ids = torch.topk(last, min(k, last.shape[-1])).indices
                experts[layer, : ids.shape[0]].copy_(ids[:k])

        return on_router

    def reset(self) -> None:
        self.experts.fill_(-1)
        self.entropy.fill_(float("nan"))
