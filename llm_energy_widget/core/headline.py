"""Headline decode figures from the bare tokens, and the profiler's measured overhead.

With sampled instrumentation (`profiling.sampling`) a run has two kinds of decode tokens: bare
ones, which ran at plain speed with none of the profiler's wrappers in the call path, and
instrumented ones, which carry the layer heatmap and the profiler's own time. J/token and
tokens/s come from the bare ones whenever there are any, so they are the model's figures, not
the model's plus ours; the instrumented tokens' extra time is reported on its own
(`profiling_overhead`). Every figure says which tokens it rests on (`figure_basis`).
"""

from __future__ import annotations

import statistics
from typing import Any

from .schema import TokenRecord

__all__ = [
    "decode_figures",
    "decode_tokens",
    "prefill_step_energy_j",
    "profiling_overhead",
    "step_ms",
]


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def decode_tokens(tokens: list[TokenRecord]) -> list[TokenRecord]:
    """The tokens after the prefill step: index >= 1 for one prompt, >= B for a batch of B
    (the prefill step chose one token per sequence)."""
    first = int(tokens[0].get("step_tokens", 1)) if tokens else 1
    return tokens[first:]


def prefill_step_energy_j(tokens: list[TokenRecord]) -> float | None:
    """The prefill step's energy: its one token's, or the sum of a batch's B equal shares."""
    first = tokens[: len(tokens) - len(decode_tokens(tokens))]
    shares = [t["energy_j"] for t in first]
    return float(sum(shares)) if first and None not in shares else None  # type: ignore[arg-type]


def step_ms(t: TokenRecord) -> float | None:
    """The token's share of its step's time (the step's time for a lone token), so shares of
    a batched step's tokens add up to the step once."""
    d = t["duration_ms"]
    return None if d is None else d / int(t.get("step_tokens", 1))


def _split(tokens: list[TokenRecord]) -> tuple[list[TokenRecord], list[TokenRecord]]:
    """Decode tokens (after the prefill step) that ran bare, and those that ran instrumented."""
    decode = decode_tokens(tokens)
    bare = [t for t in decode if t.get("instrumented") is False]
    inst = [t for t in decode if t.get("instrumented") is True]
    return bare, inst


def decode_figures(tokens: list[TokenRecord], level: str) -> dict[str, Any]:
    """decode J/token, decode tokens/s and decode energy, from bare tokens where there are any.

    Returns the figures and `figure_basis` (figure -> the tokens it rests on). Decode energy
    with a mix of bare and instrumented tokens is the bare J/token x all decode tokens: what the
    decode would have cost bare (`decode_energy_measured_j` keeps the phase as measured).
    """
    decode = decode_tokens(tokens)
    bare, inst = _split(tokens)
    n_dec = len(decode)
    use = bare if bare else decode
    with_e = [t for t in use if t["energy_j"] is not None]
    timed = [t for t in use if t["duration_ms"] is not None]
    jpt = sum(t["energy_j"] for t in with_e) / len(with_e) if with_e else None  # type: ignore[misc]
    ms = sum(step_ms(t) for t in timed)  # type: ignore[misc]
    tps = len(timed) / (ms / 1000.0) if timed and ms > 0 else None
    if bare and inst:
        on = f"the {_plural(len(bare), 'bare decode token')} of {n_dec} (not the instrumented)"
    elif bare:
        on = f"all {_plural(n_dec, 'decode token')}, bare"
    elif level == "token":
        on = f"all {_plural(n_dec, 'decode token')} (level='token': no layer instrumentation)"
    elif inst:
        on = (
            f"all {_plural(n_dec, 'decode token')}, instrumented: includes the profiler's "
            "overhead (sample='all')"
        )
    else:
        on = "all decode tokens"
    out: dict[str, Any] = {
        "decode_j_per_token": jpt,
        "decode_tokens_per_s": tps,
        "decode_energy_scaled": bool(bare and inst),
    }
    basis = {"decode_j_per_token": on, "decode_tokens_per_j": on, "decode_tokens_per_s": on}
    if bare and inst and jpt is not None:
        out["decode_energy_j"] = jpt * n_dec
        basis["decode_energy_j"] = (
            f"bare decode J/token x {_plural(n_dec, 'decode token')} (as measured, with the "
            "instrumented tokens: decode_energy_measured_j)"
        )
    else:
        basis["decode_energy_j"] = "the decode phase as measured" + (
            ", instrumented" if inst and not bare else ""
        )
    first = tokens[0].get("instrumented") if tokens else None
    basis["prefill_energy_j"] = basis["prefill_j_per_prompt_token"] = basis["ttft_ms"] = (
        "the prefill, instrumented: includes the profiler's overhead"
        if first
        else "the prefill, bare"
        if first is False
        else "the prefill"
    )
    every = (
        "every token, prefill and instrumented ones included"
        if level != "token"
        else "every token, prefill included"
    )
    for key in ("tokens_per_s", "generation_energy_j", "avg_power_w", "peak_power_w"):
        basis[key] = every
    whole = "the whole run (tokenize to detokenize)" + (
        ", instrumented tokens included" if inst else ""
    )
    for key in ("total_energy_j", "net_energy_j", "duration_ms", "edp_js", "cost_usd", "co2_g"):
        basis[key] = whole
    out["figure_basis"] = basis
    return out


def profiling_overhead(tokens: list[TokenRecord], level: str) -> dict[str, Any]:
    """The in-run slowdown of instrumented decode tokens against bare ones.

    `fraction`: median instrumented / median bare decode token time - 1 (None without both
    kinds); `added_fraction`: the time the instrumented tokens added above bare speed, as a
    fraction of the decode time (what an overhead budget bounds).
    """
    bare, inst = _split(tokens)
    out: dict[str, Any] = {
        "fraction": None,
        "added_fraction": None,
        "instrumented_tokens": len(inst),
        "bare_tokens": len(bare),
        "basis": "median decode token time, instrumented against bare, in this run",
    }
    b_ms = [t["duration_ms"] for t in bare if t["duration_ms"] is not None]
    i_ms = [t["duration_ms"] for t in inst if t["duration_ms"] is not None]
    if level == "token":
        out["why_none"] = "level='token': no layer instrumentation"
        return out
    if not b_ms or not i_ms:
        out["why_none"] = (
            "no bare decode tokens to compare with (sample='all')"
            if not b_ms
            else "no instrumented decode tokens"
        )
        return out
    bare_ms = statistics.median(b_ms)
    if bare_ms <= 0:
        return out
    out["fraction"] = statistics.median(i_ms) / bare_ms - 1.0
    decode_ms = sum(b_ms) + sum(i_ms)
    out["added_fraction"] = sum(max(x - bare_ms, 0.0) for x in i_ms) / decode_ms
    return out
