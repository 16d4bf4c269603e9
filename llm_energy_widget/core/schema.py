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
