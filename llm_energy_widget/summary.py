"""Run-level figures derived from the columns of a Run (never stored separately from them)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .run import Run

DEFAULT_PRICE_PER_KWH = 0.15
"""USD per kWh; override with LLM_ENERGY_PRICE_PER_KWH or the profiler's `price_per_kwh`."""
DEFAULT_CARBON_G_PER_KWH = 400.0
"""gCO2e per kWh (roughly a world-average grid); override with LLM_ENERGY_CARBON_G_PER_KWH."""


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def price_per_kwh(run: Run) -> float:
    v = run.settings.get("price_per_kwh")
    return float(
        v if v is not None else os.environ.get("LLM_ENERGY_PRICE_PER_KWH", DEFAULT_PRICE_PER_KWH)
    )


def carbon_g_per_kwh(run: Run) -> float:
    v = run.settings.get("carbon_g_per_kwh")
    return float(
        v
        if v is not None
        else os.environ.get("LLM_ENERGY_CARBON_G_PER_KWH", DEFAULT_CARBON_G_PER_KWH)
    )


def compute_summary(run: Run) -> dict[str, Any]:
    """Totals, rates and splits; `None` where a figure cannot be known (e.g. no tokens yet)."""
    phases = run.phases()
    by_name: dict[str, dict[str, Any]] = {}
    for ph in phases:
        by_name.setdefault(ph["name"], ph)
    curve = run.curve()
    pw = run.power_arrays()
    tokens = run.tokens()
    n_out = len(tokens)

    # The run's window: from the first non-baseline phase start to the last phase end.
    work = [p for p in phases if p["name"] != "baseline"]
    t_start = work[0]["start_ms"] if work else (float(pw["t_ms"][0]) if pw["t_ms"].size else None)
    ends = [p["end_ms"] for p in work if p["end_ms"] is not None]
    ends += [t["end_ms"] for t in tokens if t["end_ms"] is not None]
    t_end = max(ends) if ends else (float(pw["t_ms"][-1]) if pw["t_ms"].size else None)
    if t_end is not None and pw["t_ms"].size:
        # a run cut short (killed, failed) is summed over what the energy curve covers
        t_end = min(t_end, curve.covers_until_ms)
    total_e = None
    duration_ms = None
    if t_start is not None and t_end is not None and t_end > t_start:
        duration_ms = t_end - t_start
        total_e = _num(curve.energy_between(t_start, t_end))  # type: ignore[arg-type]

    baseline_w = run.baseline_w
    net_e = None
    if total_e is not None and baseline_w is not None and duration_ms is not None:
        net_e = total_e - baseline_w * duration_ms / 1000.0

    def phase_e(name: str) -> float | None:
        return (
            _num(by_name[name]["energy_j"])
            if name in by_name and by_name[name]["energy_j"] is not None
            else None
        )

    prefill_e, decode_e = phase_e("prefill"), phase_e("decode")
    timed = bool(tokens) and all(t["end_ms"] is not None for t in tokens)
    gen_ms = None
    prefill_start = by_name["prefill"]["start_ms"] if "prefill" in by_name else None
    if prefill_start is not None and tokens:
        last_end = tokens[-1]["end_ms"] if timed else by_name.get("decode", {}).get("end_ms")
        gen_ms = last_end - prefill_start if last_end is not None else None
    ttft_ms = tokens[0]["end_ms"] - prefill_start if timed and prefill_start is not None else None
    decode_tokens = max(n_out - 1, 0)
    decode_ms = (tokens[-1]["end_ms"] - tokens[0]["end_ms"]) if timed and n_out > 1 else None

    peak: dict[str, float | None] = {}
    for col in ("cpu_w", "gpu_w", "ane_w", "dram_w", "total_w"):
        arr = pw.get(col, np.zeros(0))
        arr = arr[~np.isnan(arr)] if arr.size else arr
        peak[col] = float(arr.max()) if arr.size else None
    avg_power = total_e / (duration_ms / 1000.0) if total_e is not None and duration_ms else None

    kwh = total_e / 3.6e6 if total_e is not None else None
    known = [t["energy_j"] for t in tokens if t["energy_j"] is not None]
    gen_e = float(sum(known)) if known else None
    # over the tokens whose energy is known (all of them, unless the run was cut short)
    j_per_token = gen_e / len(known) if gen_e is not None else None
    inputs = run.prompt_tokens

    return {
        "status": run.status,
        "input_tokens": inputs,
        "output_tokens": n_out,
        "tokens_with_energy": len(known),
        "duration_ms": _num(duration_ms),
        "total_energy_j": total_e,
        "net_energy_j": _num(net_e),
        "baseline_w": _num(baseline_w),
        "generation_energy_j": gen_e,
        "j_per_token": _num(j_per_token),
        "tokens_per_j": _num(1.0 / j_per_token) if j_per_token else None,
        "tokens_per_s": _num(n_out / (gen_ms / 1000.0)) if gen_ms else None,
        "decode_tokens_per_s": _num(decode_tokens / (decode_ms / 1000.0)) if decode_ms else None,
        "ttft_ms": _num(ttft_ms),
        "prefill_energy_j": prefill_e,
        "decode_energy_j": decode_e,
        "energy_per_input_token_j": _num(prefill_e / inputs)
        if prefill_e is not None and inputs
        else None,
        "energy_per_output_token_j": _num(decode_e / decode_tokens)
        if decode_e is not None and decode_tokens
        else None,
        "edp_js": _num(total_e * duration_ms / 1000.0)
        if total_e is not None and duration_ms
        else None,
        "avg_power_w": _num(avg_power),
        "peak_power_w": peak,
        "cost_usd": _num(kwh * price_per_kwh(run)) if kwh is not None else None,
        "co2_g": _num(kwh * carbon_g_per_kwh(run)) if kwh is not None else None,
        "price_per_kwh": price_per_kwh(run),
        "carbon_g_per_kwh": carbon_g_per_kwh(run),
        "energy_kind": run.power_info.get("kind"),
        "energy_source": run.power_info.get("source"),
        "energy_resolution_ms": run.power_info.get("interval_ms"),
    }
