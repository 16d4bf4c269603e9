"""Run-level figures derived from the columns of a Run (never stored separately from them)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .attribution import window_peak_w, window_readings
from .batch import sequence_figures
from .headline import decode_figures, decode_tokens, prefill_step_energy_j, profiling_overhead
from .jsonsafe import finite_or_none as _num
from .schema import RAIL_COLUMNS, PhaseRow
from .uncertainty import with_uncertainty
from .validation import finite_number

if TYPE_CHECKING:
    from .run import RunData as Run

__all__ = [
    "DEFAULT_CARBON_G_PER_KWH",
    "DEFAULT_PRICE_PER_KWH",
    "PEAK_COLUMNS",
    "carbon_g_per_kwh",
    "compute_summary",
    "env_carbon_g_per_kwh",
    "env_price_per_kwh",
    "price_per_kwh",
]

DEFAULT_PRICE_PER_KWH = 0.15
"""USD per kWh; override with LLM_ENERGY_PRICE_PER_KWH or the profiler's `price_per_kwh`."""
DEFAULT_CARBON_G_PER_KWH = 400.0
"""gCO2e per kWh (roughly a world-average grid); override with LLM_ENERGY_CARBON_G_PER_KWH."""
PEAK_COLUMNS = (*RAIL_COLUMNS, "total_w")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return finite_number(float(raw), name, minimum=0.0)
    except ValueError:
        raise InvalidInputError(f"{name}={raw!r} is not a finite number >= 0") from None


def env_price_per_kwh() -> float:
    """The price a new run is measured with: LLM_ENERGY_PRICE_PER_KWH or the default."""
    return _env_number("LLM_ENERGY_PRICE_PER_KWH", DEFAULT_PRICE_PER_KWH)


def env_carbon_g_per_kwh() -> float:
    """The carbon intensity a new run is measured with: LLM_ENERGY_CARBON_G_PER_KWH or default."""
    return _env_number("LLM_ENERGY_CARBON_G_PER_KWH", DEFAULT_CARBON_G_PER_KWH)


def price_per_kwh(run: Run) -> float:
    """The price the run was measured with (kept in its settings); never the viewer's env.

    A run from before prices were kept falls back to what its stored summary said, then to the
    default: re-pricing is explicit (`Run.reprice`).
    """
    v = run.settings.get("price_per_kwh")
    if v is None:
        v = run.stored_summary_value("price_per_kwh")
    return float(v) if v is not None else DEFAULT_PRICE_PER_KWH


def carbon_g_per_kwh(run: Run) -> float:
    """The carbon intensity the run was measured with (see `price_per_kwh`)."""
    v = run.settings.get("carbon_g_per_kwh")
    if v is None:
        v = run.stored_summary_value("carbon_g_per_kwh")
    return float(v) if v is not None else DEFAULT_CARBON_G_PER_KWH


def compute_summary(run: Run) -> dict[str, Any]:
    """Totals, rates and splits; `None` where a figure cannot be known (e.g. no tokens yet).

    Every figure is over a stated window: the run (first non-baseline phase to the last),
    generation (prefill start to the last token), prefill (to the first token) or decode (the
    tokens after the first). Names and definitions: `core.schema`.
    """
    phases = run.phases()
    by_name: dict[str, PhaseRow] = {}
    for ph in phases:
        by_name.setdefault(ph["name"], ph)
    curve = run.curve()
    pw = run.power_arrays()
    tokens = run.tokens()
    n_out = len(tokens)
    warnings: list[str] = list(run.warnings)  # the run's own first: the views show this list

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
        total_e = _num(curve.energy_between(t_start, t_end))

    baseline_w = run.baseline_w
    net_e = None
    net_reliable: bool | None = None
    if total_e is not None and baseline_w is not None and duration_ms is not None:
        net_e = total_e - baseline_w * duration_ms / 1000.0
        run_avg_w = total_e / (duration_ms / 1000.0)
        net_reliable = net_e >= 0 and baseline_w <= run_avg_w
        if not net_reliable:
            warnings.append(
                f"net energy is unreliable: the idle baseline ({baseline_w:.3g} W) is higher than "
                f"the run's average power ({run_avg_w:.3g} W), so something else was drawing "
                "power during the baseline (net "
                f"{net_e:.3g} J)"
            )

    def phase_e(name: str) -> float | None:
        return (
            _num(by_name[name]["energy_j"])
            if name in by_name and by_name[name]["energy_j"] is not None
            else None
        )

    prefill_e, decode_e, tail_e = phase_e("prefill"), phase_e("decode"), phase_e("tail")
    tail_ms = by_name["tail"]["duration_ms"] if "tail" in by_name else None
    tok_ends = [t.get("end_ms") for t in tokens]
    # the first and last token's ends, where every token is timed (None: a non-streaming run)
    first_end, last_end = (
        (tok_ends[0], tok_ends[-1]) if tok_ends and None not in tok_ends else (None, None)
    )
    gen_ms = None
    gen_end: float | None = None
    prefill_start = by_name["prefill"]["start_ms"] if "prefill" in by_name else None
    if prefill_start is not None and tokens:
        decode_end = by_name["decode"]["end_ms"] if "decode" in by_name else None
        gen_end = last_end if last_end is not None else decode_end
        gen_ms = gen_end - prefill_start if gen_end is not None else None
    ttft_ms = (
        first_end - prefill_start if first_end is not None and prefill_start is not None else None
    )
    n_decode = len(decode_tokens(tokens))
    decode_ms = (
        last_end - first_end
        if first_end is not None and last_end is not None and n_decode > 0
        else None
    )

    # Power figures over the generation window only: never the idle baseline nor readings after.
    peak: dict[str, float | None] = {}
    in_window = 0
    if prefill_start is not None and gen_end is not None and pw["t_ms"].size:
        mask = window_readings(pw["t_ms"], prefill_start, gen_end)
        in_window = int(mask.sum())
        for col in PEAK_COLUMNS:
            peak[col] = window_peak_w(pw[col], pw["t_ms"], prefill_start, gen_end)
    else:
        peak = dict.fromkeys(PEAK_COLUMNS)

    known = [t["energy_j"] for t in tokens if t["energy_j"] is not None]
    gen_e = float(sum(known)) if known else None
    avg_power = gen_e / (gen_ms / 1000.0) if gen_e is not None and gen_ms else None
    # decode J/token and tokens/s: over the bare decode tokens whose energy is known, where
    # there are any (`core.headline`), else all decode tokens
    head = decode_figures(tokens, run.level)
    decode_jpt = head["decode_j_per_token"]
    inputs = run.prompt_tokens
    prefill_token_e = prefill_step_energy_j(tokens)

    below = sum(1 for t in tokens if t.get("below_resolution"))
    resolution_ms = run.resolution_ms
    if below:
        warnings.append(
            f"{below} of {n_out} tokens are shorter than the power source's resolution "
            f"({resolution_ms:g} ms): their energies are interpolated between readings"
        )

    cov_ms = [(h, t.get("duration_ms")) for t in tokens if (h := t.get("layers_ms")) is not None]
    layer_cov = None
    if cov_ms:
        hooked = sum(h for h, _ in cov_ms)
        token_ms = sum(max(d or 0.0, h) for h, d in cov_ms)
        layer_cov = hooked / token_ms if token_ms > 0 else None
    outside = [e for t in tokens if (e := t.get("outside_layers_j")) is not None]

    kwh = total_e / 3.6e6 if total_e is not None else None
    price, carbon = price_per_kwh(run), carbon_g_per_kwh(run)
    info = run.power_info

    out: dict[str, Any] = {
        "status": run.status,
        "input_tokens": inputs,
        "output_tokens": n_out,
        "decode_tokens": n_decode,
        "tokens_with_energy": len(known),
        "duration_ms": _num(duration_ms),
        "total_energy_j": total_e,
        "net_energy_j": _num(net_e),
        "net_energy_reliable": net_reliable,
        "baseline_w": _num(baseline_w),
        "generation_ms": _num(gen_ms),
        "generation_energy_j": gen_e,
        "decode_j_per_token": _num(decode_jpt),
        "decode_tokens_per_j": _num(1.0 / decode_jpt) if decode_jpt else None,
        "prefill_j_per_prompt_token": _num(prefill_token_e / inputs)
        if prefill_token_e is not None and inputs
        else None,
        "tokens_per_s": _num(n_out / (gen_ms / 1000.0)) if gen_ms else None,
        "decode_tokens_per_s": _num(head["decode_tokens_per_s"]) if decode_ms else None,
        "ttft_ms": _num(ttft_ms),
        "prefill_energy_j": prefill_e,
        "decode_energy_j": _num(head["decode_energy_j"])
        if head["decode_energy_scaled"]
        else decode_e,
        "decode_energy_measured_j": decode_e,
        "tail_energy_j": tail_e,
        "tail_ms": _num(tail_ms),
        "edp_js": _num(total_e * duration_ms / 1000.0)
        if total_e is not None and duration_ms
        else None,
        "avg_power_w": _num(avg_power),
        "peak_power_w": peak,
        "peak_power_readings": in_window,
        "power_window_ms": info.get("power_window_ms"),
        "layer_coverage": _num(layer_cov),
        "outside_layers_energy_j": _num(float(sum(outside))) if outside else None,
        "cost_usd": _num(kwh * price) if kwh is not None else None,
        "co2_g": _num(kwh * carbon) if kwh is not None else None,
        "price_per_kwh": price,
        "carbon_g_per_kwh": carbon,
        "energy_kind": info.get("kind"),
        "energy_source": info.get("source"),
        "energy_scope": info.get("scope"),
        "energy_resolution_ms": resolution_ms,
        "tokens_below_resolution": below,
        "profiling_overhead": profiling_overhead(tokens, run.level),
        "figure_basis": head["figure_basis"],
        "batch_size": run.n_sequences,
        # per sequence: its tokens' shares of every step it ran in (the prefill split equally)
        "sequences": sequence_figures(tokens, run.texts, run.n_sequences),
        "warnings": warnings,
    }
    return with_uncertainty(out, info)
