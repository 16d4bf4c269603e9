"""What a run's figures are worth: ranges for estimates, a busy-machine note, the profiler's cost.

Pure functions over a summary dict and the run's power info (no torch, no clocks), so a stored
run gets the same answers as a live one.

- `energy_ranges_j`: an estimated source states a relative uncertainty u (the CPU-time estimate:
  +-50 %, `power.estimate.UNCERTAINTY_FRACTION`, in power_info["uncertainty"]); every figure that
  scales with its joules gets [value x (1-u), value x (1+u)]. A measured source states none, and
  none is invented for it: its error is the meter's, which we do not know.
- `busy_machine_note`: other programs on the cores slow the model and, for an estimate, cannot
  be told apart from work; a run made on a busy machine says so.
- `profiler_cpu`: the CPU the profiler's own threads (reducer, sampler, store writer) used during
  the run, and, under the CPU-time estimate, the joules that stand for (left out of the model's).
- `with_uncertainty`: all three added to a summary (what core.summary.compute_summary returns).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BUSY_OTHER_CORES",
    "ENERGY_SCALED_KEYS",
    "INVERSE_SCALED_KEYS",
    "busy_machine_note",
    "energy_ranges_j",
    "profiler_cpu",
    "with_uncertainty",
]

ENERGY_SCALED_KEYS = (
    "decode_j_per_token",
    "prefill_j_per_prompt_token",
    "cost_usd",
    "co2_g",
    "edp_js",
    "avg_power_w",
)
"""Summary figures proportional to the energy (besides every `*_energy_j`)."""
INVERSE_SCALED_KEYS = ("decode_tokens_per_j",)
"""Summary figures inversely proportional to it: [v / (1+u), v / (1-u)]."""

BUSY_OTHER_CORES = 0.25
"""Other programs' average busy cores from which a run is called "made on a busy machine".

A quiet Linux machine's daemons keep well under a tenth of a core busy; a quarter core sustained
over the run is a real neighbour (a build, a browser, another notebook), and on the 2-core machine
this project is tested on it is an eighth of the capacity, enough to move tokens/s. Below twice
the reading's resolution (`busy_resolution_cores`: one /proc/stat tick per CPU over the run) it
cannot be told from rounding, so short runs on many-core machines need more to be called busy."""


def _uncertainty(power_info: Mapping[str, Any]) -> float | None:
    if power_info.get("kind") != "estimated":
        return None
    u = power_info.get("uncertainty")
    if isinstance(u, bool) or not isinstance(u, (int, float)) or not math.isfinite(u) or u < 0:
        return None
    return float(u)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def energy_ranges_j(
    summary: Mapping[str, Any], power_info: Mapping[str, Any]
) -> dict[str, list[float] | None]:
    """[low, high] for every energy-scaled figure of an estimated run; {} for a measured one.

    Keyed like the summary (`total_energy_j`, `decode_j_per_token`, `cost_usd`, ...); None where
    the figure itself is None. A non-negative figure's low end is clipped at 0 (for u > 1); a
    negative one (net energy below the baseline) keeps its sign, its range sorted. An inverse
    figure (tokens per J) has no finite upper end when u >= 1: None.
    """
    u = _uncertainty(power_info)
    if u is None:
        return {}
    out: dict[str, list[float] | None] = {}
    for key, raw in summary.items():
        linear = key.endswith("_energy_j") or key in ENERGY_SCALED_KEYS
        if not linear and key not in INVERSE_SCALED_KEYS:
            continue
        v = _number(raw)
        if v is None:
            out[key] = None
        elif linear:
            lo, hi = sorted((v * (1 - u), v * (1 + u)))
            out[key] = [max(0.0, lo) if v >= 0 else lo, hi]
        else:
            out[key] = [v / (1 + u), v / (1 - u)] if u < 1 else None
    return out


def busy_machine_note(load: Mapping[str, Any] | None, kind: str | None = None) -> str | None:
    """A sentence for the run when other programs kept the CPUs busy during it; None when the
    machine was quiet or its load is unknown (no /proc/stat, or no load recorded).

    `load` is what power.load.LoadWindow.stop() returned; `kind` the run's energy kind (an
    estimate adds why it suffers most).
    """
    if not load:
        return None
    other = _number(load.get("other_busy_cores"))
    if other is None:
        return None
    resolution = _number(load.get("busy_resolution_cores")) or 0.0
    if other < max(BUSY_OTHER_CORES, 2 * resolution):
        return None
    n = load.get("cpu_count")
    of = f" of {n}" if isinstance(n, int) and not isinstance(n, bool) else ""
    why = (
        "; an estimate from process CPU time cannot tell spinning from work"
        if kind == "estimated"
        else ""
    )
    return (
        f"the machine was busy: other processes used {other:.1f}{of} cores during this run"
        f"{why}, and contention slows the model: compare runs made on a quiet machine"
    )


def profiler_cpu(
    cpu_by_role: Mapping[str, float],
    run_cpu_s: float | None,
    estimated: bool,
    watts_per_core: float | None,
    excluded_from_model: bool | None = None,
) -> dict[str, Any]:
    """The profiler's own CPU during a run, and what it stands for.

    `cpu_by_role`: CPU seconds by thread role over the run (LoadWindow's
    `profiler_cpu_s_by_role`); `run_cpu_s`: this process's CPU seconds over the same window (its
    `process_cpu_s`), for the profiler's share; `estimated`: the run's energy is the CPU-time
    estimate at `watts_per_core`, so these seconds have a price in joules (for a measured source
    they have none we could state). `excluded_from_model`: whether the run's energy left them out
    (the process estimate does; the system estimate and meters cannot); default: `estimated`.
    """
    by_role = {r: float(v) for r, v in cpu_by_role.items() if _number(v) is not None}
    cpu_s = float(sum(by_role.values()))
    share = cpu_s / run_cpu_s if run_cpu_s and run_cpu_s > 0 else None
    return {
        "cpu_s": cpu_s,
        "by_role": by_role,
        "share_of_process_cpu": share,
        "energy_j": cpu_s * watts_per_core if estimated and watts_per_core is not None else None,
        "excluded_from_model": estimated if excluded_from_model is None else excluded_from_model,
    }


def with_uncertainty(summary: Mapping[str, Any], power_info: Mapping[str, Any]) -> dict[str, Any]:
    """`summary` plus `energy_ranges_j`, `machine_load` (power_info["load"], None if not
    recorded) and `profiler_cpu` (None without a load), the busy-machine note appended to its
    `warnings`. A new dict: `summary` is left as it was."""
    load = power_info.get("load")
    load = load if isinstance(load, Mapping) else None
    kind = power_info.get("kind")
    note = busy_machine_note(load, kind=kind if isinstance(kind, str) else None)
    wpc = _number(power_info.get("watts_per_core"))
    cpu = None
    if load is not None:
        by_role = load.get("profiler_cpu_s_by_role")
        cpu = profiler_cpu(
            by_role if isinstance(by_role, Mapping) else {},
            _number(load.get("process_cpu_s")),
            estimated=kind == "estimated",
            watts_per_core=wpc,
            excluded_from_model=bool(power_info.get("excludes_profiler_threads")),
        )
    warnings = list(summary.get("warnings") or [])
    return {
        **summary,
        "energy_ranges_j": energy_ranges_j(summary, power_info),
        "machine_load": dict(load) if load is not None else None,
        "profiler_cpu": cpu,
        "warnings": [*warnings, note] if note else warnings,
    }
