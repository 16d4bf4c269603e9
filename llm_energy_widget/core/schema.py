"""Names every view shows for the run's figures, in one place.

The widget, the static view, the report, the CLI and the exports all label a figure by these
strings, so one number never carries two names, nor one name two numbers (the audit found
"J / token" meaning decode-only in one view and prefill-included in another, and "tokens/s" two
different rates).
"""

from __future__ import annotations

METRIC_LABELS: dict[str, str] = {
    "time_ms": "time",
    "energy_j": "energy",
    "act_mean": "mean |x|",
    "act_std": "std x",
    "act_max": "max |x|",
    "sparsity": "sparsity (|x| < 1e-4)",
}
"""Display names of the layer metrics (the stored keys stay as they are). The activation
statistics are of absolute values: `act_mean` is mean |x| and `act_max` is max |x|."""

METRIC_UNITS: dict[str, str] = {
    "time_ms": "ms",
    "energy_j": "J",
    "act_mean": "",
    "act_std": "",
    "act_max": "",
    "sparsity": "",
}

SUMMARY_LABELS: dict[str, str] = {
    "decode_j_per_token": "decode J/token",
    "decode_tokens_per_j": "decode tokens/J",
    "prefill_j_per_prompt_token": "prefill J/prompt token",
    "prefill_energy_j": "prefill energy",
    "decode_energy_j": "decode energy",
    "tail_energy_j": "tail energy (after the last token)",
    "generation_energy_j": "generation energy (all tokens)",
    "total_energy_j": "total energy",
    "net_energy_j": "net energy (above baseline)",
    "baseline_w": "baseline power",
    "avg_power_w": "avg power (generation)",
    "peak_power_w": "peak power (generation)",
    "decode_tokens_per_s": "decode tokens/s",
    "tokens_per_s": "output tokens/s (incl. prefill)",
    "ttft_ms": "TTFT",
    "edp_js": "EDP",
    "cost_usd": "cost",
    "co2_g": "CO₂",
    "layer_coverage": "layer coverage (hooked / token time)",
    "outside_layers_energy_j": "outside layers energy",
}
"""Headline first: decode J/token is energy per generated token after the first, the prefill is
reported per prompt token on its own."""

SUMMARY_DEFINITIONS: dict[str, str] = {
    "decode_j_per_token": "energy of the decode tokens (2nd to last) / their count",
    "prefill_j_per_prompt_token": "prefill energy (prompt to first token) / prompt tokens",
    "decode_tokens_per_s": "decode tokens / time from the first to the last token",
    "tokens_per_s": "all output tokens / time from prefill start to the last token",
    "avg_power_w": "generation energy / generation time (prefill start to the last token)",
    "peak_power_w": "highest reading taken during generation (baseline and after excluded)",
    "layer_coverage": "time inside hooked decoder layers / token time",
    "tail_energy_j": "from the last token to generate's return (wrap-up), in no token",
}

KIND_DEFINITIONS: dict[str, str] = {
    "measured": "measured: read from a hardware or OS counter, meter or clock",
    "estimated": "estimated: a model of power, not a measurement",
    "modeled": "modeled: computed from measured or estimated figures by the model stated",
}
"""What each kind label means, shown where a badge is hovered."""

ESTIMATE_UNCERTAINTY = (
    "±50 % or worse in absolute terms (frequency, memory traffic and the platform are ignored): "
    "compare runs on one machine, never as a measured figure"
)
"""The uncertainty of the built-in CPU-time estimate (power/estimate.py, README "Limits of the
estimate"); an estimate from elsewhere (a replay trace) has its own model's."""

FIGURE_ORIGINS: dict[str, str] = {
    "timing": "the host clock at each token boundary, after the device finished its work",
    "layers.time_ms": "timers around each hooked module's forward (device events on a GPU)",
    "layers.activations": "statistics of each hooked module's output, reduced per token",
    "layers.energy_j": "the token's energy × cell time / token time",
    "layers.outside": "the token's energy × (1 − hooked time / token time)",
    "cost": "total energy × the price per kWh",
    "co2": "total energy × the carbon intensity per kWh",
}
"""Where the figures of each `Run.labels()` family come from, besides the power source (energy,
power, phases, tokens: the source's own description says)."""
