"""Per-head attention statistics without changing what the model computes.

sdpa never materializes attention probabilities, and switching to eager attention can change the
outputs. So we register, in transformers' AttentionInterface, a wrapper that calls the model's
original attention function (bit-identical outputs) and computes softmax(QK^T * scale + mask) on
the side, for this forward's query rows only. The mask function registered for the wrapper is the
original one, so the masks the model builds are unchanged too. `uninstall` restores everything.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["ATTN_STAT_NAMES", "SMALL_WEIGHT", "AttentionTap", "attention_stats"]

log = logging.getLogger(__name__)

ATTN_STAT_NAMES = ("attn_entropy", "attn_max_weight", "attn_sparsity")
SMALL_WEIGHT = 0.01  # an attention weight below this counts as "ignored" for sparsity
_ids = itertools.count()


def attention_stats(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None,
    softcap: float | None = None,
) -> torch.Tensor:
    """[heads, 3]: entropy (nats), max weight, fraction of allowed weights < 0.01; mean over rows.

    query [b, h, q, d], key [b, h_kv, kv, d] (GQA: KV heads are repeated like `repeat_kv`).
    """
    h, q_len, d = query.shape[1], query.shape[2], query.shape[3]
    kv_len = key.shape[2]
    if key.shape[1] != h:
        key = key.repeat_interleave(h // key.shape[1], dim=1)
    scale = scaling if scaling is not None else 1.0 / math.sqrt(d)
    logits = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    allowed: torch.Tensor | None = None
    if mask is not None:
        m = mask[..., :kv_len]
        if m.dtype == torch.bool:
            allowed = m
        else:
            allowed = m > torch.finfo(m.dtype).min / 2
            logits = logits + m.float().clamp(min=-1e30)
    elif q_len > 1:  # sdpa skipped the causal mask: rebuild it (query i sits at kv_len - q_len + i)
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=logits.device).tril(
            kv_len - q_len
        )
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    entropy = -torch.special.xlogy(p, p).sum(-1)
    max_w = p.amax(-1)
    small = p < SMALL_WEIGHT
    if allowed is None:
        sparsity = small.float().mean(-1)
    else:
        allowed_b = allowed.expand_as(p)
        sparsity = (small & allowed_b).sum(-1).float() / allowed_b.sum(-1).clamp(min=1).float()
    return torch.stack((entropy, max_w, sparsity), dim=-1).mean(dim=(0, 2))


class AttentionTap:
    """Installs the stats-computing attention wrapper for one model; writes [layers, heads, 3]."""

    def __init__(self, model: nn.Module, attention: list[nn.Module | None], n_heads: int) -> None:
        self.model = model
        self.layer_of = {id(m): i for i, m in enumerate(attention) if m is not None}
        self.n_layers = len(attention)
        self.n_heads = n_heads
        self.buffer: torch.Tensor | None = None
        self.name: str | None = None
        self.original: str | None = None
        self.error: str | None = None  # first failure inside the tap (stats then stay NaN)
        self._configs: list[Any] = []  # configs that name our implementation (pause/resume)

    def unavailable_reason(self) -> str | None:
        """Why this model cannot be tapped, or None."""
        if not self.layer_of:
            return "no attention module found in the decoder layers"
        config = getattr(self.model, "config", None)
        impl = getattr(config, "_attn_implementation", None)
        if not isinstance(impl, str) or impl == "":
            return "model has no config._attn_implementation (not a transformers model?)"
        can_set = getattr(self.model, "_can_set_attn_implementation", None)
        if not callable(can_set) or not can_set():
            return f"{type(self.model).__name__} does not dispatch attention via AttentionInterface"
        if impl not in ("eager", "sdpa"):
            return f"attention implementation {impl!r} is not supported for deep statistics"
        if impl == "eager" and self._eager_fn() is None:
            return "no eager_attention_forward found next to the attention class"
        if impl == "eager" and any(
            getattr(m, "reorder_and_upcast_attn", False) for m in self._modules()
        ):
            return "reorder_and_upcast_attn takes a different code path under a custom name"
        return None

    def _modules(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if id(m) in self.layer_of]

    def _eager_fn(self) -> Callable[..., Any] | None:
        mods = self._modules()
        if not mods:
            return None
        fn = getattr(sys.modules.get(type(mods[0]).__module__), "eager_attention_forward", None)
        return fn if callable(fn) else None

    def install(self, device: torch.device) -> None:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        config: Any = self.model.config
        original = str(config._attn_implementation)
        found = self._eager_fn() if original == "eager" else None
        fn: Callable[..., Any] = found or AttentionInterface._global_mapping[original]  # type: ignore[assignment]
        self.buffer = torch.full(
            (self.n_layers, self.n_heads, len(ATTN_STAT_NAMES)),
            float("nan"),
            device=device,
        )
        name = f"llm_energy_tap_{next(_ids)}"
        AttentionInterface.register(name, self._wrap(fn))
        AttentionMaskInterface.register(name, AttentionMaskInterface._global_mapping[original])  # type: ignore[arg-type]
        self.name, self.original = name, original
        self.model.set_attn_implementation(name)  # type: ignore[operator]
        if config._attn_implementation != name:
            self.uninstall()
            raise RuntimeError(f"model refused attention implementation {name!r}")
        seen: dict[int, Any] = {}
        for m in self.model.modules():
            c = getattr(m, "config", None)
            if getattr(c, "_attn_implementation_internal", None) == name:
                seen.setdefault(id(c), c)
        self._configs = list(seen.values())

    def pause(self) -> None:
        """The original attention for the next forwards (bare tokens): one attribute per
        config, microseconds, where `set_attn_implementation` walks the model (~0.6 ms)."""
        if self.name is not None:
            for c in self._configs:
                c._attn_implementation_internal = self.original

    def resume(self) -> None:
        """The tapped attention again, after `pause`."""
        if self.name is not None:
            for c in self._configs:
                c._attn_implementation_internal = self.name

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        layer_of = self.layer_of

        def tapped(
            module: nn.Module,
            query: torch.Tensor,
            key: torch.Tensor,
            value: torch.Tensor,
            attention_mask: torch.Tensor | None,
            **kwargs: Any,
        ) -> Any:
            out = fn(module, query, key, value, attention_mask, **kwargs)
            layer = layer_of.get(id(module))
            if layer is not None and self.buffer is not None and self.error is None:
                try:
                    with torch.no_grad():
                        res = attention_stats(
                            query, key, attention_mask, kwargs.get("scaling"), kwargs.get("softcap")
                        )
                        self.buffer[layer, : res.shape[0]].copy_(res)
                except Exception as exc:  # statistics must never break generation
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.warning("attention statistics disabled: %s", self.error)
            return out

        return tapped

    def take(self) -> torch.Tensor | None:
        """The device buffer to read this token; call `reset` after copying it."""
        return self.buffer

    def reset(self) -> None:
        if self.buffer is not None:
            self.buffer.fill_(float("nan"))

    def uninstall(self) -> None:
        """Restore the original implementation and drop the registered names. Idempotent."""
        if self.name is None:
            return
        self.resume()  # so set_attn_implementation below sees our name and undoes it all
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        config: Any = self.model.config
        try:
            if config._attn_implementation == self.name:
                self.model.set_attn_implementation(self.original)  # type: ignore[operator]
        finally:
            if config._attn_implementation == self.name:  # set it back by hand if refused
                config._attn_implementation_internal = self.original
            AttentionInterface._global_mapping.pop(self.name, None)
            AttentionMaskInterface._global_mapping.pop(self.name, None)
            self.name = None
