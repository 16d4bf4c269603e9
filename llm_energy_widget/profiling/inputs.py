"""Checks of a run's prompt and generate arguments, made before the run exists.

Transformers finds many of these problems itself, but late: inside the chat template (a raw
Jinja error for a message without a role), inside `generate` after the run started (an
out-of-vocabulary id is an index error in the embedding; an unknown keyword fails in the
warm-up), leaving a `failed` run in the history for a typo. Each check here fails with one
line naming the problem, before the run is created.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = [
    "ROLES",
    "batch_kind",
    "check_attention_mask",
    "check_generate_kwargs",
    "check_input_ids",
    "check_messages",
    "pad_left",
    "padding_id",
]

ROLES = ("system", "user", "assistant", "tool", "developer", "ipython")
"""Chat roles chat templates know (ipython: Llama 3's tool output)."""

_POSITIVE_INTS = ("num_beams", "num_return_sequences", "num_beam_groups", "max_length")
_NON_NEGATIVE_INTS = ("min_new_tokens", "min_length", "top_k", "no_repeat_ngram_size")
_POSITIVE_FLOATS = ("temperature", "repetition_penalty")
_UNIT_FLOATS = ("top_p", "typical_p")  # (0, 1]
_FRACTIONS = ("min_p", "epsilon_cutoff", "eta_cutoff")  # [0, 1]
_PROFILER_KEYWORDS = (
    "power", "level", "interval_ms", "baseline_s", "store", "price_per_kwh",
    "carbon_g_per_kwh", "warmup", "overlap", "sample", "overhead_budget",
)  # fmt: skip


def check_messages(messages: list[Any]) -> None:
    """Each chat message a dict with a known role and text content."""
    for i, m in enumerate(messages):
        where = f"chat message {i}"
        if not isinstance(m, dict):
            raise InvalidInputError(
                f"{where} is a {type(m).__name__}, not a {{'role', 'content'}} dict"
            )
        role = m.get("role")
        if role is None:
            raise InvalidInputError(f"{where} has no 'role' (one of {', '.join(ROLES)})")
        if role not in ROLES:
            raise InvalidInputError(
                f"{where} has an unknown role {role!r}: use one of {', '.join(ROLES)}"
            )
        content = m.get("content")
        parts_ok = isinstance(content, list) and all(isinstance(p, dict) for p in content)
        if not isinstance(content, str) and not parts_ok:
            raise InvalidInputError(
                f"{where} ({role}) has content {content!r}: it must be text (a string)"
            )


def batch_kind(prompt: Any) -> str | None:
    """ "texts" or "chats" when `prompt` is a batch (a list of texts, or of chat-message lists);
    None for one prompt (a text, one chat, input ids). Mixed batches fail with one line."""
    if not isinstance(prompt, (list, tuple)) or not prompt:
        return None
    if all(isinstance(p, dict) for p in prompt) or all(
        isinstance(p, int) and not isinstance(p, bool) for p in prompt
    ):
        return None  # one chat, or one prompt's ids
    first = prompt[0]
    want: tuple[type, ...]
    if isinstance(first, str):
        want, kind = (str,), "texts"
    elif isinstance(first, (list, tuple)):
        want, kind = (list, tuple), "chats"
    else:
        return None  # not a batch: the single-prompt checks name the type
    for i, p in enumerate(prompt):
        if not isinstance(p, want):
            what = "texts" if kind == "texts" else "chat-message lists"
            raise InvalidInputError(
                f"a batch of prompts must be all texts or all chat-message lists: prompt 0 is "
                f"a {type(first).__name__}, prompt {i} a {type(p).__name__} (expected {what})"
            )
    return kind


def check_attention_mask(mask: Any, ids: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask of the ids' shape, each row with at least one token to attend to."""
    if not isinstance(mask, torch.Tensor):
        raise InvalidInputError(
            f"attention_mask must be a tensor like input_ids, got {type(mask).__name__}"
        )
    m = mask if mask.dim() == 2 else mask.reshape(1, -1)
    if tuple(m.shape) != tuple(ids.shape):
        raise InvalidInputError(
            f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}: "
            "they must match"
        )
    if m.dtype.is_floating_point or m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
        raise InvalidInputError("attention_mask must hold only 0 and 1 (integers or booleans)")
    empty = (m.sum(dim=1) == 0).nonzero()
    if empty.numel():
        raise InvalidInputError(f"attention_mask row {int(empty[0, 0])} masks every token")
    return m.to(torch.long)


def padding_id(tokenizer: Any) -> int:
    """The id a batch is padded with: the tokenizer's pad token, else its end token."""
    for name in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, name, None)
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, int):
            return v
    raise InvalidInputError(
        "this tokenizer has neither a pad nor an end token to pad a batch of prompts with: "
        "pass input_ids and attention_mask instead"
    )


def pad_left(rows: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Encoded prompts (1 x n_i each) as one batch padded on the LEFT, with its mask.

    A decoder-only model continues each row from its last position, so padding goes before the
    prompt (what `tokenizer(..., padding_side="left")` makes; done here so the shared tokenizer
    is never changed while another thread may use it).
    """
    n = max(int(r["input_ids"].shape[1]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for b, r in enumerate(rows):
        row = r["input_ids"].reshape(-1)
        m = r.get("attention_mask")
        k = row.numel()
        ids[b, n - k :] = row
        mask[b, n - k :] = 1 if m is None else m.reshape(-1)
    return {"input_ids": ids, "attention_mask": mask}


def check_input_ids(ids: torch.Tensor, vocab_size: int | None) -> None:
    """Whole numbers in [0, vocab_size): an id outside is an index error deep in the model."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise InvalidInputError(f"input ids must be integers, got a {ids.dtype} tensor")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise InvalidInputError(f"input ids must be >= 0, got {lo}")
    if vocab_size is not None and hi >= vocab_size:
        raise InvalidInputError(
            f"input id {hi} is outside the model's vocabulary of {vocab_size} tokens (0 to "
            f"{vocab_size - 1})"
        )


def _number(kw: dict[str, Any], name: str) -> float | None:
    v = kw.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _check_values(kw: dict[str, Any]) -> None:
    for name in (*_POSITIVE_INTS, *_NON_NEGATIVE_INTS):
        v = kw.get(name)
        low = 1 if name in _POSITIVE_INTS else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            what = "a positive integer" if low else "an integer >= 0"
            raise InvalidInputError(f"{name} must be {what}, got {v!r}")
    for name in _POSITIVE_FLOATS:
        x = _number(kw, name)
        if x is not None and x <= 0:
            raise InvalidInputError(f"{name} must be > 0, got {kw[name]!r}")
    for name in _UNIT_FLOATS:
        x = _number(kw, name)
        if x is not None and not 0 < x <= 1:
            raise InvalidInputError(f"{name} must be in (0, 1], got {kw[name]!r}")
    for name in _FRACTIONS:
        x = _number(kw, name)
        if x is not None and not 0 <= x <= 1:
            raise InvalidInputError(f"{name} must be in [0, 1], got {kw[name]!r}")


def _params(fn: Any) -> set[str] | None:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _known_keywords(model: Any) -> set[str] | None:
    """What generate accepts for this model, the way its own `_validate_model_kwargs` decides
    (which runs only inside generate); None where that cannot be known (not a transformers
    model)."""
    from transformers import GenerationConfig, GenerationMixin

    prepare = getattr(model, "prepare_inputs_for_generation", None)
    model_args = _params(prepare) if prepare is not None else None
    if model_args is None:
        return None
    if "kwargs" in model_args or "model_kwargs" in model_args:
        model_args |= _params(model.forward) or set()
    try:
        from transformers.utils import TransformersKwargs

        model_args |= set(TransformersKwargs.__optional_keys__)
    except ImportError:  # pragma: no cover - older transformers
        pass
    known = set(GenerationConfig().to_dict()) | model_args
    return known | (_params(GenerationMixin.generate) or set())


def check_generate_kwargs(kw: dict[str, Any], model: Any) -> None:
    """Values in range, keywords generate knows, and a generation config it accepts."""
    _check_values(kw)
    known = _known_keywords(model)
    if known is not None:
        for name, value in kw.items():
            if name in known or value is None:
                continue
            if name in _PROFILER_KEYWORDS:
                raise InvalidInputError(
                    f"{name}= is a setting of the profiler, not of generate: pass it to "
                    f"EnergyProfiler(model, tokenizer, {name}=...)"
                )
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInputError(f"generate() has no argument {name!r}{hint}")
    base = getattr(model, "generation_config", None)
    if base is None:
        return
    config = copy.deepcopy(base)
    fields = set(config.to_dict())
    for name, value in kw.items():
        if name in fields:
            setattr(config, name, value)
    try:
        config.validate()
    except ValueError as exc:
        raise InvalidInputError(f"generate arguments: {exc}") from None
