"""Known answers for the headline figures of a sampled run, worked out by hand.

Constant 10 W, so energy = 10 W x time. The prefill (0-100 ms) is instrumented; decode tokens
alternate as below, bare ones 50 ms and instrumented ones 80 ms:

    token   1     2     3     4     5     6
    kind    bare  inst  bare  bare  inst  bare
    ms      50    80    50    50    80    50      (decode 360 ms, 3.6 J measured)

Bare decode J/token = 10 W x 50 ms = 0.5 J; bare decode tokens/s = 4 / 0.2 s = 20; decode
energy as if bare = 0.5 J x 6 = 3.0 J; slowdown of instrumented tokens 80 / 50 - 1 = 0.6; the
time they added, 2 x 30 ms, is 60 / 360 = 1/6 of the decode time.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.run import Run

WATTS = 10.0
KINDS = (True, False, True, False, False, True, False)  # token 0 is the prefill
MS = {True: 80.0, False: 50.0}


def sampled_run(kinds: tuple[bool | None, ...] = KINDS, level: str = "component") -> Run:
    run = Run(
        model={"name": "hand"},
        prompt="p",
        power={"source": "hand", "kind": "measured", "interval_ms": 10.0, "resolution_ms": 10.0},
        level=level,
        layer_names=["0"],
        component_names=["mlp"],
    )
    run.prompt_tokens = 2
    rec = Recorder(run)
    rec.status("running")
    for t in np.arange(0.0, 701.0, 10.0):
        rec.power({"t_ms": float(t), "total_w": WATTS, "energy_j": WATTS * t / 1000.0}, None)
    rec.phase_start("prefill", 0.0)
    rec.phase_end("prefill", 100.0)
    rec.phase_start("decode", 100.0)
    t = 0.0
    for i, inst in enumerate(kinds):
        dur = 100.0 if i == 0 else MS[bool(inst)]
        rec.token(1000 + i, f" t{i}", "prefill" if i == 0 else "decode", t, t + dur, inst)
        t += dur
    rec.phase_end("decode", t)
    rec.finish("completed", "done")
    return run


def test_decode_figures_come_from_the_bare_tokens() -> None:
    s = sampled_run().summary()
    assert s["decode_j_per_token"] == pytest.approx(0.5)
    assert s["decode_tokens_per_j"] == pytest.approx(2.0)
    assert s["decode_tokens_per_s"] == pytest.approx(20.0)
    assert s["decode_energy_j"] == pytest.approx(3.0)
    assert s["decode_energy_measured_j"] == pytest.approx(3.6)
    assert s["prefill_energy_j"] == pytest.approx(1.0)
    assert s["generation_energy_j"] == pytest.approx(4.6)  # every token, as measured
    basis = s["figure_basis"]
    assert basis["decode_j_per_token"] == "the 4 bare decode tokens of 6 (not the instrumented)"
    assert "bare decode J/token x 6 decode tokens" in basis["decode_energy_j"]
    assert "instrumented" in basis["prefill_energy_j"]


def test_profiling_overhead_is_measured_in_the_run() -> None:
    o = sampled_run().summary()["profiling_overhead"]
    assert o["fraction"] == pytest.approx(0.6)
    assert o["added_fraction"] == pytest.approx(1 / 6)
    assert (o["instrumented_tokens"], o["bare_tokens"]) == (2, 4)


def test_every_token_instrumented_keeps_the_measured_figures() -> None:
    s = sampled_run(tuple([True] * 7)).summary()
    assert s["decode_j_per_token"] == pytest.approx(0.8)
    assert s["decode_energy_j"] == s["decode_energy_measured_j"] == pytest.approx(4.8)
    assert "includes the profiler's overhead" in s["figure_basis"]["decode_j_per_token"]
    assert s["profiling_overhead"]["fraction"] is None


def test_token_level_run() -> None:
    s = sampled_run(tuple([None] * 7), level="token").summary()  # every token 50 ms
    assert s["decode_j_per_token"] == pytest.approx(0.5)
    assert "level='token'" in s["figure_basis"]["decode_j_per_token"]
    assert "level='token'" in s["profiling_overhead"]["why_none"]


def test_round_trip_keeps_the_flags() -> None:
    run = sampled_run()
    again = Run.from_dict(run.to_dict())
    assert [t["instrumented"] for t in again.tokens()] == list(KINDS)
    assert again.summary()["decode_j_per_token"] == pytest.approx(0.5)
    old = run.to_dict()
    for tok in old["tokens"]:
        del tok["instrumented"]  # a run saved before sampling: every token was instrumented
    assert {t["instrumented"] for t in Run.from_dict(old).tokens()} == {True}
