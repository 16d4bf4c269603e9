"""Runs that follow a known energy law, for tests of `predict` and what shows its figures.

The runs are made by hand at a constant 10 W, so a token of d seconds is 10 · d J exactly: the
prefill token lasts prefill_j / 10 s and every decode token decode_j / 10 s, and the summary's
prefill energy, decode J/token, TTFT and decode ms/token are the numbers the test chose.
`lawful(prompt, n)` follows prefill J = A · FLOPs + B, decode J/token = D · KV bytes + E with
FLOPs = 2 · PARAMS · prompt and KV bytes = (prompt + n / 2) · KV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.run import Run

WATTS = 10.0
PARAMS = 100_000_000
KV = 1000  # bytes per token
FEATURES = {"parameters": PARAMS, "dtype": "float32", "kv_cache_bytes_per_token": KV}
HOST = "box-a"


def law_run(
    prompt_tokens: int,
    n_tokens: int,
    prefill_j: float,
    decode_j: float,
    *,
    source: str = "rapl",
    kind: str = "measured",
    host: str | None = HOST,
    features: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Run:
    """A completed run whose prefill costs `prefill_j` and each decode token `decode_j`."""
    machine = {"host": host, "platform": "Linux", "cpu_count": 2, "accelerator": None}
    run = Run(
        model={"name": "law-model", "features": dict(features or FEATURES)},
        prompt="p",
        settings={
            "device": device,
            "dtype": (features or FEATURES)["dtype"],
            "batch_size": 1,
            **({"machine": machine} if host is not None else {}),
        },
        power={"source": source, "kind": kind, "scope": "device", "interval_ms": 50.0},
        level="token",
    )
    run.prompt_tokens = prompt_tokens
    rec = Recorder(run)
    rec.status("running")
    ends = [1000.0 * prefill_j / WATTS]
    for _ in range(n_tokens - 1):
        ends.append(ends[-1] + 1000.0 * decode_j / WATTS)
    t_end = ends[-1] + 100.0
    for t in np.arange(0.0, t_end + 50.0, 50.0):
        rec.power(
            {
                "t_ms": float(t), "cpu_w": WATTS, "gpu_w": None, "ane_w": None, "dram_w": None,
                "total_w": WATTS, "energy_j": WATTS * float(t) / 1000.0, "source": source,
                "kind": kind,
            },
            None,
        )  # fmt: skip
    rec.phase_start("prefill", 0.0)
    start = 0.0
    for i, end in enumerate(ends):
        if i == 1:
            rec.phase_end("prefill", start)
            rec.phase_start("decode", start)
        rec.token(100 + i, f" t{i}", "prefill" if i == 0 else "decode", start, end)
        start = end
    rec.phase_end("decode" if n_tokens > 1 else "prefill", start)
    rec.finish("completed", "hand-made run")
    return run


# the law the synthetic runs follow: prefill J = A · FLOPs + B, decode J/token = D · KV bytes + E
A, B = 2.0e-10, 0.05
D, E = 2.0e-6, 0.30


def lawful(prompt: int, n: int, noise: float = 0.0, **kw: Any) -> Run:
    flops = 2.0 * PARAMS * prompt
    kv = (prompt + n / 2.0) * KV
    return law_run(prompt, n, (A * flops + B) * (1 + noise), (D * kv + E) * (1 - noise), **kw)


SETTINGS = [(8, 16), (16, 32), (32, 24), (64, 16), (48, 40), (24, 48), (96, 20), (12, 60)]
NOISE = [0.01, -0.012, 0.008, -0.005, 0.011, -0.009, 0.004, -0.007]
