"""Mixture-of-experts routing per token: which experts fired and how sure the router was.

Read from a forward hook on each router (the `gate`/`router` of the sparse MoE block).
transformers v5 routers return (logits, scores, top-k indices): mixtral, qwen2_moe, qwen3_moe,
olmoe, granitemoe(shared), phimoe, gpt_oss, deepseek_v2/v3, glm4_moe, ernie4_5_moe, minimax.
Older ones return only the logits, and then the top-k is taken from the logits (the same ranking
as from the softmax). A few put the logits elsewhere (`_LOGITS_AT`: llama4 returns (scores,
logits), JetMoE five tensors with the logits last). The row used is the last position of the
forward: the one that produces the next token (a token's last forward, when several ran since the
last read).

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
    """Expert ids [layers, top_k] (-1 = not routed) and routing entropy [layers] (nats), as
    device tensors, for the forwards since the last `reset`.

    The hook only keeps a view of the router's last row (its logits and top-k ids, two view
    ops): it runs inside the layer, between the router's and the experts' timing, so its time
    would land in "other" (the softmax/entropy/top-k per layer cost ~0.2 ms there on a tiny
    CPU model, a third of its MoE layer). `experts` and `entropy` reduce every layer's row at
    once when read, at the token boundary.
    """

    def __init__(self, n_layers: int, top_k: int, device: torch.device) -> None:
        self.top_k = top_k
        self.n_layers = n_layers
        self.device = device
        self._logits: list[torch.Tensor | None] = [None] * n_layers
        self._ids: list[torch.Tensor | None] = [None] * n_layers
        self._sigmoid = False

    def hook(self, layer: int) -> Any:
        held, held_ids = self._logits, self._ids

        def on_router(module: nn.Module, args: Any, out: Any) -> None:
            logits = router_logits(module, out)
            if logits is None:
                return
            held[layer] = logits.reshape(-1, logits.shape[-1])[-1]
            cls = type(module).__name__
            self._sigmoid = cls in _SIGMOID
            idx = out[2] if isinstance(out, tuple) and len(out) >= 3 else None
            if (
                cls not in _LOGITS_AT
                and isinstance(idx, torch.Tensor)
                and idx.dtype in (torch.long, torch.int32)
            ):
                held_ids[layer] = idx.reshape(-1, idx.shape[-1])[-1]
            else:
                held_ids[layer] = None

        return on_router

    def _rows(self) -> tuple[list[int], torch.Tensor | None]:
        layers = [i for i, t in enumerate(self._logits) if t is not None]
        if not layers:
            return layers, None
        with torch.no_grad():
            return layers, torch.stack([t for t in self._logits if t is not None]).float()

    @property
    def entropy(self) -> torch.Tensor:
        out = torch.full((self.n_layers,), float("nan"), device=self.device)
        layers, rows = self._rows()
        if rows is None:
            return out
        with torch.no_grad():
            if self._sigmoid:
                s = torch.sigmoid(rows)
                p = s / s.sum(-1, keepdim=True).clamp_min(1e-30)
            else:
                p = torch.softmax(rows, dim=-1)
            out[layers] = (-torch.special.xlogy(p, p).sum(-1)).to(out.device)
        return out

    @property
    def experts(self) -> torch.Tensor:
        out = torch.full((self.n_layers, self.top_k), -1, dtype=torch.long, device=self.device)
        layers, rows = self._rows()
        if rows is None:
            return out
        k = self.top_k
        with torch.no_grad():
            top = torch.topk(rows, min(k, rows.shape[-1]), dim=-1).indices
            for j, li in enumerate(layers):
                ids = self._ids[li]
                chosen = ids[:k] if ids is not None else top[j]
                out[li, : chosen.shape[0]] = chosen.to(out.device, torch.long)
        return out

    def reset(self) -> None:
        self._logits[:] = [None] * self.n_layers
        self._ids[:] = [None] * self.n_layers
