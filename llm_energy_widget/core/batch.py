"""How a batched decoding step's energy is shared among the sequences that produced a token in it.

With a batch of B prompts, one decoding step (one forward of the whole batch) chooses a token for
every sequence still running, and the power source sees only the step. The step's energy (from
the cumulative curve over the step, measured or estimated like any token's) is split EQUALLY among
the tokens the step chose; a sequence that has finished (emitted its end token) gets none. The
split is a model (padded rows, longer contexts and finished rows cost the step different amounts),
so a token whose step was shared is labelled "modeled"; a lone token keeps the source's kind.
The prefill step is split the same way: each sequence's first token carries 1/B of it.

Tokens of one step are recorded together and share the step's start and end, so a step is a
run of consecutive tokens with equal start and end times (untimed tokens stand alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .schema import TokenRecord

__all__ = ["SPLIT_KIND", "sequence_figures", "step_sizes", "token_kind"]

SPLIT_KIND = "modeled"
"""The kind of a token's energy where its step's energy was split among several tokens."""


def step_sizes(start_ms: npt.ArrayLike, end_ms: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """For each token, how many tokens its step chose (1 for a lone or untimed token)."""
    s = np.asarray(start_ms, dtype=np.float64).reshape(-1)
    e = np.asarray(end_ms, dtype=np.float64).reshape(-1)
    n = s.size
    out = np.ones(n, dtype=np.int64)
    if n < 2:
        return out
    same = (s[1:] == s[:-1]) & (e[1:] == e[:-1])  # NaN never equals: untimed tokens stand alone
    # a new group starts wherever a token is not the same step as the one before it
    group = np.concatenate(([0], np.cumsum(~same)))
    counts = np.bincount(group)
    return counts[group].astype(np.int64)


def token_kind(step_tokens: int, source_kind: str | None) -> str | None:
    """The kind of one token's energy: the source's for a lone token, modeled for a share."""
    return SPLIT_KIND if step_tokens > 1 else source_kind


def sequence_figures(
    tokens: Sequence[TokenRecord], texts: Sequence[str], n_sequences: int
) -> list[dict[str, Any]]:
    """Per sequence: its tokens, its energy (its shares of the steps it ran in) and its text.

    The sequences' energies sum to the energy of all tokens (prefill and decode): every step's
    energy is split among its tokens, and each token belongs to one sequence.
    """
    n = max(n_sequences, 1 + max((int(t.get("sequence", 0)) for t in tokens), default=0))
    out: list[dict[str, Any]] = []
    for b in range(n):
        mine = [t for t in tokens if int(t.get("sequence", 0)) == b]
        known = [float(e) for t in mine if (e := t.get("energy_j")) is not None]
        pre = [
            float(e)
            for t in mine
            if t["phase"] == "prefill" and (e := t.get("energy_j")) is not None
        ]
        dec = [
            float(e)
            for t in mine
            if t["phase"] == "decode" and (e := t.get("energy_j")) is not None
        ]
        out.append(
            {
                "sequence": b,
                "tokens": len(mine),
                "energy_j": float(sum(known)) if known else None,
                "prefill_energy_j": float(sum(pre)) if pre else None,
                "decode_energy_j": float(sum(dec)) if dec else None,
                "text": texts[b] if b < len(texts) else "",
            }
        )
    return out
