"""Synthetic runs for tests, demos of the widget and benchmarks (no model, no power source).

The numbers are generated, so a synthetic run says so: power source `synthetic`, kind `modeled`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .core.recorder import Recorder
from .core.schema import METRICS
from .run import Run

__all__ = [
    "DEFAULT_COMPONENTS",
    "LAYER_COVERAGE",
    "apply_event",
    "new_synthetic_run",
    "synthetic_events",
    "synthetic_run",
]

DEFAULT_COMPONENTS = (
    "input_layernorm",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "post_attention_layernorm",
    "gate_proj",
    "up_proj",
    "down_proj",
)

LAYER_COVERAGE = 0.75
"""Share of each synthetic token's time inside its decoder layers (real decode tokens: 72-79 %)."""


def synthetic_events(
    n_tokens: int = 32,
    n_layers: int = 4,
    components: tuple[str, ...] = DEFAULT_COMPONENTS,
    token_ms: float = 60.0,
    prefill_ms: float = 200.0,
    interval_ms: float = 100.0,
    seed: int = 0,
    texts: list[str] | None = None,
) -> Iterator[tuple[str, Any]]:
    """Producer calls, in time order, as (method name, args) for `core.recorder.Recorder`."""
    rng = np.random.default_rng(seed)
    energy = 0.0
    last_p = None
    pi = 0

    def power_until(t: float) -> Iterator[tuple[str, Any]]:
        nonlocal pi, energy, last_p
        while pi * interval_ms <= t:
            tt = pi * interval_ms
            p = 20.0 + 8.0 * math.sin(tt / 400.0) + float(rng.normal(0, 0.5))
            if last_p is not None:
                energy += 0.5 * (p + last_p) * interval_ms / 1000.0
            last_p = p
            yield (
                "power",
                (
                    {
                        "t_ms": tt,
                        "cpu_w": p * 0.8,
                        "gpu_w": None,
                        "ane_w": None,
                        "dram_w": p * 0.2,
                        "total_w": p,
                        "energy_j": energy,
                        "source": "synthetic",
                        "kind": "modeled",
                    },
                    "prefill" if tt < prefill_ms else "decode",
                ),
            )
            pi += 1

    yield ("phase_start", ("prefill", 0.0))
    t = 0.0
    for i in range(n_tokens):
        start = t
        t = prefill_ms if i == 0 else t + token_ms * (1.0 + 0.2 * float(rng.random()))
        if i == 1:
            yield ("phase_end", ("prefill", start))
            yield ("phase_start", ("decode", start))
        yield from power_until(t)
        text = texts[i % len(texts)] if texts else f" tok{i}"
        yield ("token", (1000 + i, text, "prefill" if i == 0 else "decode", start, t))
        vals = np.full((n_layers, len(components), len(METRICS)), np.nan, dtype=np.float32)
        # the hooked layers cover LAYER_COVERAGE of the token; lm_head, sampling etc. the rest
        shares = rng.gamma(2.0, 1.0, (n_layers, len(components)))
        if shares.size:
            shares *= LAYER_COVERAGE * (t - start) / shares.sum()
        vals[:, :, METRICS.index("time_ms")] = shares
        vals[:, :, METRICS.index("act_mean")] = rng.random((n_layers, len(components)))
        vals[:, :, METRICS.index("act_std")] = rng.random((n_layers, len(components)))
        vals[:, :, METRICS.index("act_max")] = 1 + 5 * rng.random((n_layers, len(components)))
        vals[:, :, METRICS.index("sparsity")] = rng.random((n_layers, len(components))) * 0.1
        yield ("layers", (i, vals))
    yield ("phase_end", ("decode" if n_tokens > 1 else "prefill", t))
    yield from power_until(t + interval_ms)  # the curve covers the last token


def new_synthetic_run(
    n_layers: int = 4, components: tuple[str, ...] = DEFAULT_COMPONENTS, **kw: Any
) -> Run:
    run = Run(
        model={"name": "synthetic", "features": {"layers": n_layers}},
        prompt="synthetic prompt",
        power={
            "source": "synthetic",
            "kind": "modeled",
            "interval_ms": kw.get("interval_ms", 100.0),
        },
        layer_names=[f"layers.{i}" for i in range(n_layers)],
        component_names=list(components),
    )
    run.prompt_tokens = 8
    return run


def apply_event(run: Run, name: str, args: Any) -> None:
    getattr(Recorder(run), name)(*args)


def synthetic_run(n_tokens: int = 32, n_layers: int = 4, finish: bool = True, **kw: Any) -> Run:
    """A complete (or, with finish=False, still running) synthetic Run."""
    components = kw.pop("components", DEFAULT_COMPONENTS)
    run = new_synthetic_run(n_layers=n_layers, components=components, **kw)
    Recorder(run).status("running")
    for name, args in synthetic_events(
        n_tokens=n_tokens, n_layers=n_layers, components=components, **kw
    ):
        apply_event(run, name, args)
    if finish:
        Recorder(run).finish("completed", "synthetic run complete")
    return run
