"""Documented device figures for `predict`'s first-principles estimate (no runs to learn from).

Each entry gives the peak memory bandwidth (decode reads every weight once per step, so a step
takes at least weight bytes / bandwidth), the peak dense throughput (prefill's floor is FLOPs /
peak) and the power drawn while busy (energy = power x time). They are datasheet or rule-of-thumb
figures, not measurements, and every one can be overridden by keyword in `predict(...)`:

- CPU: `CPU_W_PER_CORE` = 10 W per busy core, the same default as the `estimate` power source
  (`power.estimate.DEFAULT_WATTS_PER_CORE`), so a cold start and an estimate-source run speak the
  same watts; `CPU_GB_S_PER_CORE` = 10 GB/s streamed per core (a few cores saturate a desktop's
  dual-channel DDR4/DDR5, 50-90 GB/s, so it is capped at `CPU_GB_S_MAX`); `CPU_GFLOPS_PER_CORE`
  = 50 GFLOP/s fp32 per core (AVX2 FMA at ~3 GHz peaks near 100; BLAS reaches about half).
- NVIDIA (datasheet: HBM bandwidth, board TDP, dense BF16 tensor throughput without sparsity):
  H200 SXM 4.8 TB/s, 700 W, 989 TFLOPS; H100 SXM 3.35 TB/s, 700 W, 989 TFLOPS; H100 PCIe
  2.0 TB/s, 350 W, 756 TFLOPS; A100 SXM 80 GB 2.039 TB/s, 400 W, 312 TFLOPS; A100 40 GB
  1.555 TB/s, 400 W, 312 TFLOPS. A decoding GPU rarely draws its TDP, so the power figure errs
  high; the interval (x0.3 to x3) is there for that.
- Apple M-series (unified memory bandwidth from Apple's specifications; power is a typical SoC
  package power under GPU load, approximate, since Apple publishes no TDP; FP32 GPU TFLOPS).

Small models are not bandwidth-bound on an accelerator: eager PyTorch launches a dozen kernels per
layer from Python, and `generate` waits for them. Each device class therefore has a step overhead
per decoder layer (`STEP_OVERHEAD_MS_PER_LAYER`) added to every forward pass, drawn at a fraction
of the busy power (`OVERHEAD_POWER_FRACTION`): on an accelerator waiting for the host, a quarter of
its TDP (NVIDIA) or half its SoC power (Apple); on a CPU one core of `cores` runs the Python loop.
The GPU figure is this project's measurement: plain `generate` of SmolLM2-135M's shape (30 layers)
on an H200 ran 44 tokens/s, 22.7 ms a step, about 0.75 ms per layer (README, Benchmarks); the
CPU's 0.3 ms per layer leaves the rest of the 54 ms a step measured on the 2-core CPU machine
(18.6 tokens/s) to bandwidth below peak.

The interval of a first-principles figure is x0.3 to x3 of it (`COLD_LOW`, `COLD_HIGH`): peak
bandwidth is never fully reached and real power is neither the TDP nor zero.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..errors import InvalidInputError

__all__ = [
    "APPLE",
    "COLD_HIGH",
    "COLD_LOW",
    "CPU_GB_S_MAX",
    "CPU_GB_S_PER_CORE",
    "CPU_GFLOPS_PER_CORE",
    "CPU_W_PER_CORE",
    "NVIDIA",
    "OVERHEAD_POWER_FRACTION",
    "STEP_OVERHEAD_MS_PER_LAYER",
    "device_figures",
]

CPU_W_PER_CORE = 10.0
"""W per busy core: `power.estimate`'s default, so cold starts and estimate runs agree."""
CPU_GB_S_PER_CORE = 10.0
"""GB/s of memory bandwidth one core streams (rule of thumb; see the module docstring)."""
CPU_GB_S_MAX = 80.0
"""A desktop or VM socket's reachable memory bandwidth, the cap on cores x per-core GB/s."""
CPU_GFLOPS_PER_CORE = 50.0
"""fp32 GFLOP/s one core reaches in a BLAS matmul (about half the AVX2 FMA peak)."""
STEP_OVERHEAD_MS_PER_LAYER = {"cpu": 0.3, "cuda": 0.75, "mps": 0.75}
"""ms per decoder layer of every forward pass that no bandwidth or FLOPs figure explains
(kernel launches, Python); see the module docstring for where the figures come from."""
OVERHEAD_POWER_FRACTION = {"cuda": 0.25, "mps": 0.5}
"""Share of the busy power drawn during the step overhead (CPU: 1 / cores, one busy core)."""
COLD_LOW = 0.3
COLD_HIGH = 3.0
"""A first-principles figure's interval: x0.3 to x3 of it."""

# name -> (memory bandwidth GB/s, power W, peak dense TFLOPS); matched longest name first
NVIDIA: dict[str, tuple[float, float, float]] = {
    "H200": (4800.0, 700.0, 989.0),
    "H100 PCIe": (2000.0, 350.0, 756.0),
    "H100": (3350.0, 700.0, 989.0),
    "A100 40GB": (1555.0, 400.0, 312.0),
    "A100-SXM4-40GB": (1555.0, 400.0, 312.0),
    "A100-PCIE-40GB": (1555.0, 250.0, 312.0),
    "A100": (2039.0, 400.0, 312.0),
}
APPLE: dict[str, tuple[float, float, float]] = {
    "M1": (68.25, 20.0, 2.6),
    "M1 Pro": (200.0, 35.0, 5.2),
    "M1 Max": (400.0, 60.0, 10.4),
    "M1 Ultra": (800.0, 120.0, 21.0),
    "M2": (100.0, 22.0, 3.6),
    "M2 Pro": (200.0, 35.0, 6.8),
    "M2 Max": (400.0, 60.0, 13.6),
    "M2 Ultra": (800.0, 120.0, 27.2),
    "M3": (100.0, 22.0, 4.1),
    "M3 Pro": (150.0, 35.0, 7.4),
    "M3 Max": (400.0, 60.0, 16.4),
    "M4": (120.0, 22.0, 4.3),
    "M4 Pro": (273.0, 40.0, 9.2),
    "M4 Max": (546.0, 70.0, 18.4),
}


def _lookup(table: dict[str, tuple[float, float, float]], name: str) -> str | None:
    """The longest table key that `name` contains, ignoring case and spaces/dashes."""

    def norm(s: str) -> str:
        return s.lower().replace(" ", "").replace("-", "")

    n = norm(name)
    for key in sorted(table, key=len, reverse=True):
        if norm(key) in n:
            return key
    return None


def device_figures(
    device: str = "cpu",
    accelerator: str | None = None,
    *,
    cpu_cores: int | None = None,
    memory_bandwidth_gb_s: float | None = None,
    power_w: float | None = None,
    peak_tflops: float | None = None,
    step_overhead_ms_per_layer: float | None = None,
) -> dict[str, Any]:
    """The figures a first-principles estimate uses for a device, each one overridable.

    `device` is a torch device string ("cpu", "cuda", "cuda:1", "mps"); `accelerator` names the
    chip for cuda/mps ("NVIDIA H200", "M2 Max"; a name as `settings["machine"]["accelerator"]`
    records it works). Returns bandwidth (GB/s), power (W), peak (TFLOPS), the step overhead
    (ms per layer) and the power drawn during it (W), and where each came from.
    """
    kind = str(device).split(":", 1)[0].lower()
    figures: dict[str, Any]
    if kind == "cpu":
        cores = cpu_cores or os.cpu_count() or 1
        figures = {
            "device": "cpu",
            "name": f"CPU, {cores} cores",
            "memory_bandwidth_gb_s": min(CPU_GB_S_PER_CORE * cores, CPU_GB_S_MAX),
            "power_w": CPU_W_PER_CORE * cores,
            "peak_tflops": CPU_GFLOPS_PER_CORE * cores / 1000.0,
            "origin": (
                f"{CPU_GB_S_PER_CORE:g} GB/s, {CPU_W_PER_CORE:g} W and {CPU_GFLOPS_PER_CORE:g} "
                f"GFLOP/s per core x {cores} cores (rules of thumb; the estimate source's watts)"
            ),
        }
    elif kind in ("cuda", "mps"):
        table = NVIDIA if kind == "cuda" else APPLE
        key = _lookup(table, accelerator) if accelerator else None
        if key is None and kind == "mps" and not accelerator:
            key = "M1"
        if key is None:
            if memory_bandwidth_gb_s is None or power_w is None:
                known = ", ".join(table)
                raise InvalidInputError(
                    f"no documented figures for {accelerator or kind!r}: name it with "
                    f"accelerator= (one of {known}) or give memory_bandwidth_gb_s= and power_w="
                )
            figures = {"device": kind, "name": accelerator or kind, "origin": "given"}
            figures.update(memory_bandwidth_gb_s=None, power_w=None, peak_tflops=None)
        else:
            bw, w, tf = table[key]
            vendor = "NVIDIA" if kind == "cuda" else "Apple"
            assumed = " (assumed: name the chip with accelerator=)" if not accelerator else ""
            figures = {
                "device": kind,
                "name": f"{vendor} {key}",
                "memory_bandwidth_gb_s": bw,
                "power_w": w,
                "peak_tflops": tf,
                "origin": (
                    f"{vendor} {key} datasheet: {bw:g} GB/s, {w:g} W, {tf:g} TFLOPS{assumed}"
                    if kind == "cuda"
                    else f"Apple {key}: {bw:g} GB/s (spec), ~{w:g} W (approximate), "
                    f"{tf:g} TFLOPS{assumed}"
                ),
            }
    else:
        raise InvalidInputError(f"device must be cpu, cuda or mps; got {device!r}")
    frac = 1.0 / (cpu_cores or os.cpu_count() or 1) if kind == "cpu" else None
    figures["overhead_power_fraction"] = frac if frac is not None else OVERHEAD_POWER_FRACTION[kind]
    figures["step_overhead_ms_per_layer"] = STEP_OVERHEAD_MS_PER_LAYER[kind]
    overrides = {
        "step_overhead_ms_per_layer": step_overhead_ms_per_layer,
        "memory_bandwidth_gb_s": memory_bandwidth_gb_s,
        "power_w": power_w,
        "peak_tflops": peak_tflops,
    }
    given = []
    for k, v in overrides.items():
        if v is not None:
            low = 0 if k == "step_overhead_ms_per_layer" else 1e-300
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
                raise InvalidInputError(f"{k} must be a positive number, got {v!r}")
            figures[k] = float(v)
            given.append(f"{k}={v:g}")
    if figures.get("peak_tflops") is None:
        figures["peak_tflops"] = float("inf")  # no compute floor: bandwidth-bound only
    if given:
        figures["origin"] += "; overridden: " + ", ".join(given)
    return figures
