"""The core's vocabulary in one place: run constants, column lists, the TypedDicts of every record
and event payload, and the names every view shows for the run's figures.

The widget, the static view, the report, the CLI and the exports all label a figure by these
strings, so one number never carries two names, nor one name two numbers (the audit found
"J / token" meaning decode-only in one view and prefill-included in another, and "tokens/s" two
different rates).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, get_args

import numpy as np

from ..power.record import POWER_COLUMNS, RAIL_COLUMNS, RAILS

__all__ = [
    "ESTIMATE_UNCERTAINTY",
    "EVENTS",
    "FIGURE_ORIGINS",
    "KIND_DEFINITIONS",
    "LEVELS",
    "METRICS",
    "METRIC_LABELS",
    "METRIC_UNITS",
    "PHASES",
    "POWER_COLUMNS",
    "RAILS",
    "RAIL_COLUMNS",
    "STATUSES",
    "SUMMARY_DEFINITIONS",
    "SUMMARY_LABELS",
    "TOKEN_COLUMNS",
    "ErrorPayload",
    "EventName",
    "LayersPayload",
    "PhasePayload",
    "PhaseRecord",
    "PhaseRow",
    "PowerPayload",
    "StatusPayload",
    "StoreErrorPayload",
    "TokenEnergyPayload",
    "TokenPayload",
    "TokenRecord",
]

STATUSES = ("pending", "queued", "running", "completed", "cancelled", "failed", "incomplete")
"""`queued`: waiting for the runs ahead of it in this process (`end_reason` says how many)."""
PHASES = ("baseline", "tokenize", "to_device", "prefill", "decode", "tail", "detokenize")
METRICS = ("time_ms", "energy_j", "act_mean", "act_std", "act_max", "sparsity")
LEVELS = ("token", "layer", "component", "deep")
TOKEN_COLUMNS = (
    "index", "token_id", "text", "phase", "start_ms", "end_ms", "instrumented", "sequence",
)  # fmt: skip
"""The columns a run keeps per generated token (energies are derived from the curve).
`instrumented`: the layer instrumentation ran during the token (False: a bare token, timed at
plain speed; None: a token-level run, nothing to instrument). `sequence`: which row of the batch
chose it (0 for a single prompt); the tokens of one decoding step share its start and end."""

EventName = Literal[
    "power",
    "power_info",
    "phase",
    "token",
    "token_energy",
    "layers",
    "status",
    "done",
    "error",
    "store_error",
]
EVENTS: tuple[EventName, ...] = get_args(EventName)
"""Event names sent to a run's listeners; each payload's shape is the TypedDict below
(`power_info`: the run's power info dict once the source is open; `done`: the run summary)."""


class PowerPayload(TypedDict, total=False):
    """A power reading (`power.record.READING_FIELDS`) plus the phase it fell in."""

    t_ms: float
    cpu_w: float | None
    gpu_w: float | None
    ane_w: float | None
    dram_w: float | None
    total_w: float
    energy_j: float
    source: str | None
    kind: str | None
    phase: str | None
    rails: dict[
        str, float
    ]  # per-device rails (`gpu1_w`, `gpu1_energy_j`), where the source has them


class PhaseRecord(TypedDict):
    name: str
    start_ms: float
    end_ms: float | None


class PhasePayload(PhaseRecord):
    state: Literal["start", "end"]


class PhaseRow(PhaseRecord):
    """`Run.phases()`: the record plus its duration and its energy and power from the curve
    (None where the phase is open or the power readings do not cover it)."""

    duration_ms: float | None
    energy_j: float | None
    avg_power_w: float | None


class TokenPayload(TypedDict):
    index: int
    token_id: int
    text: str
    phase: str
    start_ms: float
    end_ms: float
    duration_ms: float
    instrumented: bool | None
    sequence: int


class TokenRecord(TypedDict, total=False):
    """`Run.tokens()`: the payload plus energies from the curve and the layer coverage.

    `step_tokens`: how many tokens its decoding step chose (the batch rows still running);
    `energy_j` is the step's energy / step_tokens, `energy_kind` the source's kind for a lone
    token, "modeled" where a step's energy was split among several (`core.batch`)."""

    index: int
    token_id: int
    text: str
    phase: str
    start_ms: float | None
    end_ms: float | None
    duration_ms: float | None
    instrumented: bool | None
    sequence: int
    step_tokens: int
    energy_j: float | None
    energy_kind: str | None
    avg_power_w: float | None
    below_resolution: bool
    layers_ms: float | None
    layer_coverage: float | None
    outside_layers_j: float | None


class TokenEnergyPayload(TypedDict):
    index: int
    energy_j: float
    avg_power_w: float | None


class LayersPayload(TypedDict):
    """One token's [layers, components, metrics] float32 array, NaN where not measured."""

    index: int
    values: np.ndarray[Any, Any]


class StatusPayload(TypedDict):
    status: str
    reason: str | None


class StoreErrorPayload(TypedDict):
    """The run could not be stored: the message (also in `run.warnings`) and the store's path."""

    message: str
    path: str


class ErrorPayload(TypedDict):
    message: str | None
    type: str


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
    "decode_energy_measured_j": "decode energy (as measured)",
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
    "profiling_overhead": "profiling overhead",
}
"""Headline first: decode J/token is energy per generated token after the first, the prefill is
reported per prompt token on its own."""

SUMMARY_DEFINITIONS: dict[str, str] = {
    "decode_j_per_token": "energy of the decode tokens (2nd to last) / their count; with sampled "
    "instrumentation, of the bare ones only (they ran at plain speed); a batch: every "
    "sequence's generated tokens, each step's energy split equally among them",
    "prefill_j_per_prompt_token": "prefill energy (prompt to first token) / prompt tokens",
    "decode_tokens_per_s": "decode tokens / time from the first to the last token; with sampled "
    "instrumentation, bare decode tokens / their time",
    "decode_energy_j": "the decode phase's energy; with sampled instrumentation, bare decode "
    "J/token x decode tokens (what the decode cost bare)",
    "decode_energy_measured_j": "the decode phase's energy as measured, instrumented tokens "
    "included",
    "profiling_overhead": "median instrumented / median bare decode token time - 1, in this run "
    "(the layer instrumentation's slowdown of the tokens it ran on)",
    "tokens_per_s": "all output tokens / time from prefill start to the last token (a batch: "
    "every sequence's tokens)",
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
