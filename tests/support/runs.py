"""A run small enough to work out by hand, for tests of the figures, exports and CLI.

Constant 10 W (8 W CPU + 2 W DRAM), so energy = 10 W x time. Three tokens and a tail:

    token  phase    ms        J     hooked ms  coverage  layer cells (J)        outside layers
    0      prefill  0-100     1.0   60         0.60      .2 .2 / .1 .1 = 0.6    0.4 J
    1      decode   100-150   0.5   40         0.80      .1 .1 / .05 .15 = 0.4  0.1 J
    2      decode   150-250   1.0   80         0.80      .2 .2 / .2 .2 = 0.8    0.2 J
    tail            250-300   0.5   (after the last token, in no token)

Run: tokens 2.5 J, layers 1.8 J, outside layers 0.7 J, coverage 180 / 250 ms = 0.72; phases
prefill 1.0 + decode 1.5 + tail 0.5 = 3.0 J. decode J/token (0.5 + 1.0) / 2 = 0.75 J; prefill
J/prompt token 1.0 J / 4 prompt tokens = 0.25 J. mean |x|: 10 in the prefill token, 1 and 3 in the
decode tokens, so the mean over the decode tokens is 2 (4.67 with the prefill token).
The source polls every 50 ms but resolves 75 ms, so tokens 1 (50 ms) is below resolution and
tokens 0 and 2 (100 ms) are not; at the poll interval none would be.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.run import Run

WATTS = 10.0
TOKENS = ((0.0, 100.0, "prefill"), (100.0, 150.0, "decode"), (150.0, 250.0, "decode"))
# hooked ms per token: [layer][component]
TIMES_MS = (((20.0, 20.0), (10.0, 10.0)), ((10.0, 10.0), (5.0, 15.0)), ((20.0, 20.0), (20.0, 20.0)))
MEAN_ABS_X = (10.0, 1.0, 3.0)
TOKEN_J = (1.0, 0.5, 1.0)
OUTSIDE_J = (0.4, 0.1, 0.2)
CELLS_J = 1.8
COVERAGE = 0.72
TAIL_J = 0.5
DECODE_J_PER_TOKEN = 0.75
PREFILL_J_PER_PROMPT_TOKEN = 0.25


def hand_run(power: dict[str, Any] | None = None, baseline_w: float | None = None) -> Run:
    """The run of the module docstring; `power` overrides its power info."""
    run = Run(
        model={"name": "hand"},
        prompt="four token prompt",
        power={
            "source": "hand",
            "kind": "measured",
            "scope": "device",
            "interval_ms": 50.0,
            "resolution_ms": 75.0,
            **(power or {}),
        },
        layer_names=["model.layers.0", "model.layers.1"],
        component_names=["attn", "mlp"],
    )
    run.prompt_tokens = 4
    run.baseline_w = baseline_w
    Recorder(run).status("running")
    for t in np.arange(0.0, 401.0, 50.0):
        Recorder(run).power(
            {
                "t_ms": float(t),
                "cpu_w": 0.8 * WATTS,
                "gpu_w": None,
                "ane_w": None,
                "dram_w": 0.2 * WATTS,
                "total_w": WATTS,
                "energy_j": WATTS * float(t) / 1000.0,
                "source": "hand",
                "kind": "measured",
            },
            None,
        )
    Recorder(run).phase_start("prefill", 0.0)
    Recorder(run).phase_end("prefill", 100.0)
    Recorder(run).phase_start("decode", 100.0)
    for i, (start, end, phase) in enumerate(TOKENS):
        Recorder(run).token(100 + i, f" t{i}", phase, start, end)
        vals = np.full((2, 2, len(METRICS)), np.nan, dtype=np.float32)
        vals[:, :, METRICS.index("time_ms")] = TIMES_MS[i]
        vals[:, :, METRICS.index("act_mean")] = MEAN_ABS_X[i]
        vals[:, :, METRICS.index("act_std")] = 0.5
        vals[:, :, METRICS.index("act_max")] = 2 * MEAN_ABS_X[i]
        vals[:, :, METRICS.index("sparsity")] = 0.25
        Recorder(run).layers(i, vals)
    Recorder(run).phase_end("decode", 250.0)
    Recorder(run).phase_start("tail", 250.0)
    Recorder(run).phase_end("tail", 300.0)
    Recorder(run).finish("completed", "hand-made run")
    return run


def num(x: float | None) -> float:
    """`x`, asserted measured: a record's optional figure (`float | None`) where a test needs it."""
    assert x is not None
    return x
