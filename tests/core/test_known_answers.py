"""Known-answer traces: every figure a user sees, against an answer worked out by hand.

Each run here is built from an analytic power trace P(t) whose integral, peak and shares are
computed in the test from the formula (never from the code under test): constant, ramp, square
wave, a spike inside the idle baseline, a slow counter polled fast. The numbers in the comments
are the hand calculations. Runs are built through `Run.from_dict` (the public loading path, the
same one the store uses), or through the profiler with a replay trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.runs import num

from llm_energy_widget.core.attribution import OUTSIDE_LAYERS, window_readings
from llm_energy_widget.core.schema import METRIC_LABELS, METRICS, SUMMARY_LABELS
from llm_energy_widget.run import Run

Power = Callable[[float], float]
Energy = Callable[[float], float]  # analytic cumulative energy in J at t_ms


def make_run(
    power_w: Power,
    energy_j: Energy,
    *,
    until_ms: float,
    step_ms: float = 10.0,
    phases: list[tuple[str, float, float]],
    tokens: list[tuple[float, float]],
    rows: list[np.ndarray] | None = None,
    power: dict[str, Any] | None = None,
    baseline_w: float | None = None,
    prompt_tokens: int = 10,
    settings: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> Run:
    """A finished run whose readings sample P(t) and carry the exact integral E(t)."""
    t = np.arange(0.0, until_ms + step_ms / 2, step_ms)
    samples = [
        {"t_ms": float(x), "total_w": power_w(float(x)), "energy_j": energy_j(float(x))} for x in t
    ]
    n_layers, n_comp = (rows[0].shape[0], rows[0].shape[1]) if rows else (0, 0)
    d: dict[str, Any] = {
        "run_id": "known",
        "status": "completed",
        "level": "component" if rows else "token",
        "prompt_tokens": prompt_tokens,
        "power": {"source": "replay", "kind": "measured", "interval_ms": step_ms, **(power or {})},
        "baseline_w": baseline_w,
        "settings": settings
        if settings is not None
        else {"price_per_kwh": 0.2, "carbon_g_per_kwh": 300.0},
        "power_samples": samples,
        "phases": [{"name": n, "start_ms": a, "end_ms": b} for n, a, b in phases],
        "tokens": [
            {
                "index": i,
                "token_id": 100 + i,
                "text": f" t{i}",
                "phase": "prefill" if i == 0 else "decode",
                "start_ms": a,
                "end_ms": b,
            }
            for i, (a, b) in enumerate(tokens)
        ],
        "layers": {
            "layer_names": [str(i) for i in range(n_layers)],
            "component_names": [f"c{j}" for j in range(n_comp)],
            "metric_names": list(METRICS),
            "values": [r.tolist() for r in rows] if rows else [],
        },
        "summary": summary or {},
    }
    return Run.from_dict(d)  # the cells' modeled energies are derived on load


def const(w: float) -> tuple[Power, Energy]:
    return (lambda t: w), (lambda t: w * t / 1000.0)


def row(times_ms: list[list[float]]) -> np.ndarray:
    """A layer row with these times (ms) and NaN elsewhere."""
    arr = np.full((len(times_ms), len(times_ms[0]), len(METRICS)), np.nan, dtype=np.float32)
    arr[:, :, METRICS.index("time_ms")] = times_ms
    return arr


# A run at constant 10 W: prefill 0-200 ms, three 100 ms decode tokens, a 20 ms tail.
PHASES = [
    ("tokenize", -30.0, -10.0),
    ("to_device", -10.0, 0.0),
    ("prefill", 0.0, 200.0),
    ("decode", 200.0, 500.0),
    ("tail", 500.0, 520.0),
    ("detokenize", 520.0, 530.0),
]
TOKENS = [(0.0, 200.0), (200.0, 300.0), (300.0, 400.0), (400.0, 500.0)]


def ten_watt_run(**kw: Any) -> Run:
    p, e = const(10.0)
    kw.setdefault("phases", [(n, a + 100, b + 100) for n, a, b in PHASES])
    kw.setdefault("tokens", [(a + 100, b + 100) for a, b in TOKENS])
    return make_run(p, e, until_ms=800.0, **kw)


# -- 1. layer x component energy is each cell's share of the TOKEN's time ------------------------
def test_cells_are_shares_of_token_time_and_the_rest_is_outside_layers() -> None:
    # decode token 1 lasts 100 ms at 10 W = 1.000 J; its 2 layers x 3 cells take 75 ms in all
    decode = row([[10.0, 15.0, 12.5], [10.0, 15.0, 12.5]])
    prefill = row([[40.0, 40.0, 40.0], [10.0, 10.0, 10.0]])  # 150 of 200 ms
    run = ten_watt_run(rows=[prefill, decode, decode, decode])
    ei = METRICS.index("energy_j")
    cells = run.layers[1, :, :, ei]
    # 10 W x cell time: 0.100, 0.150, 0.125 J per layer (the old code gave each / 0.75)
    assert cells == pytest.approx(np.array([[0.1, 0.15, 0.125], [0.1, 0.15, 0.125]]), rel=1e-5)
    tok = run.tokens()[1]
    assert tok["energy_j"] == pytest.approx(1.0, rel=1e-9)
    assert tok["layers_ms"] == pytest.approx(75.0)
    assert tok["layer_coverage"] == pytest.approx(0.75)
    assert tok["outside_layers_j"] == pytest.approx(0.25, rel=1e-6)
    assert cells.sum() + tok["outside_layers_j"] == pytest.approx(tok["energy_j"], rel=1e-6)
    s = run.summary()
    # coverage over the run: (150 + 3 x 75) / (200 + 3 x 100) = 375 / 500 = 0.75
    assert s["layer_coverage"] == pytest.approx(0.75)
    # outside the layers: 0.5 J of the 2 J prefill + 3 x 0.25 J = 1.25 J
    assert s["outside_layers_energy_j"] == pytest.approx(1.25, rel=1e-6)
    assert OUTSIDE_LAYERS == "outside layers"


def test_cells_never_exceed_the_token_when_clocks_disagree() -> None:
    # device-event times can add up to a little more than the host's token time: shares <= 1
    over = row([[60.0, 50.0]])  # 110 ms of layers in a 100 ms token
    run = ten_watt_run(rows=[over, over, over, over])
    cells = run.layers[1, :, :, METRICS.index("energy_j")]
    assert cells.sum() == pytest.approx(1.0, rel=1e-6)  # the token's 1 J, no more
    assert run.tokens()[1]["layer_coverage"] == pytest.approx(1.0)
    assert run.tokens()[1]["outside_layers_j"] == pytest.approx(0.0, abs=1e-9)


# -- 2 and 12. peak and average over the generation window; a spike inside the baseline --------
def spike_in_baseline() -> Run:
    # 100 W for the first 250 ms of a 500 ms baseline, 10 W afterwards; generation 600-1100 ms
    def p(t: float) -> float:
        return 100.0 if t < 250.0 else 10.0

    def e(t: float) -> float:
        return 100.0 * min(t, 250.0) / 1e3 + 10.0 * max(t - 250.0, 0.0) / 1e3

    phases = [
        ("baseline", 0.0, 500.0),
        ("tokenize", 500.0, 550.0),
        ("to_device", 550.0, 600.0),
        ("prefill", 600.0, 800.0),
        ("decode", 800.0, 1100.0),
        ("detokenize", 1100.0, 1110.0),
    ]
    tokens = [(600.0, 800.0), (800.0, 900.0), (900.0, 1000.0), (1000.0, 1100.0)]
    # the baseline average, by hand: (250 ms x 100 W + 250 ms x 10 W) / 500 ms = 55 W
    return make_run(p, e, until_ms=3000.0, phases=phases, tokens=tokens, baseline_w=55.0)


def test_peak_and_average_power_ignore_the_baseline_and_readings_after_the_run() -> None:
    run = spike_in_baseline()
    s = run.summary()
    assert max(r["total_w"] for r in run.power_records()) == 100.0  # what the old peak showed
    assert s["peak_power_w"]["total_w"] == 10.0
    assert s["avg_power_w"] == pytest.approx(10.0, rel=1e-9)
    # readings at 600, 610, ..., 1100 ms: 51 of them
    assert s["peak_power_readings"] == 51


def test_a_baseline_above_the_run_makes_net_energy_unreliable_with_a_warning() -> None:
    s = spike_in_baseline().summary()
    # run window 500-1110 ms at 10 W = 6.1 J; minus 55 W x 0.61 s = 33.55 J -> net -27.45 J
    assert s["total_energy_j"] == pytest.approx(6.1, rel=1e-9)
    assert s["net_energy_j"] == pytest.approx(6.1 - 33.55, rel=1e-9)
    assert s["net_energy_reliable"] is False
    assert any("net energy is unreliable" in w for w in s["warnings"])
    # a quiet baseline below the run's power: net is kept and reliable
    quiet = ten_watt_run(baseline_w=4.0).summary()
    assert quiet["net_energy_reliable"] is True
    assert not quiet["warnings"]
    assert quiet["net_energy_j"] == pytest.approx(quiet["total_energy_j"] * 0.6, rel=1e-9)


def test_a_window_shorter_than_the_sampling_interval_uses_the_reading_that_covers_it() -> None:
    t = np.array([0.0, 100.0, 200.0, 300.0])
    assert window_readings(t, 120.0, 150.0).tolist() == [False, False, True, False]
    assert window_readings(t, 100.0, 200.0).tolist() == [False, True, True, False]


# -- 4. a token shorter than the resolution is flagged, and interpolated, never a bare 0 J -----
def test_tokens_below_the_resolution_are_flagged_and_interpolated() -> None:
    # readings every 100 ms (the source's resolution), 30 ms decode tokens at 10 W: 0.3 J each
    p, e = const(10.0)
    phases = [("prefill", 0.0, 200.0), ("decode", 200.0, 290.0)]
    tokens = [(0.0, 200.0), (200.0, 230.0), (230.0, 260.0), (260.0, 290.0)]
    run = make_run(
        p,
        e,
        until_ms=1000.0,
        step_ms=100.0,
        phases=phases,
        tokens=tokens,
        power={"interval_ms": 20.0, "resolution_ms": 100.0},
    )
    toks = run.tokens()
    assert [t["below_resolution"] for t in toks] == [False, True, True, True]
    assert [t["energy_j"] for t in toks[1:]] == pytest.approx([0.3, 0.3, 0.3], rel=1e-9)
    s = run.summary()
    assert s["energy_resolution_ms"] == 100.0  # the resolution, not the 20 ms poll interval
    assert s["tokens_below_resolution"] == 3
    assert any("shorter than the power source's resolution (100 ms)" in w for w in s["warnings"])


# -- 6. decode J/token is the headline; the prefill is per prompt token, apart -----------------
def test_decode_j_per_token_excludes_the_prefill() -> None:
    s = ten_watt_run(prompt_tokens=10).summary()
    # prefill token 200 ms = 2 J; decode tokens 3 x 100 ms = 1 J each
    assert s["decode_j_per_token"] == pytest.approx(1.0, rel=1e-9)  # was (2 + 3) / 4 = 1.25
    assert s["decode_tokens_per_j"] == pytest.approx(1.0, rel=1e-9)
    assert s["prefill_j_per_prompt_token"] == pytest.approx(2.0 / 10, rel=1e-9)
    assert s["prefill_energy_j"] == pytest.approx(2.0, rel=1e-9)
    assert s["decode_energy_j"] == pytest.approx(3.0, rel=1e-9)
    assert "j_per_token" not in s
    assert SUMMARY_LABELS["decode_j_per_token"] == "decode J/token"


# -- 7. one definition per tokens/s name ------------------------------------------------------
def test_tokens_per_second_names_hold_one_definition_each() -> None:
    s = ten_watt_run().summary()
    # all 4 tokens over prefill start -> last token (500 ms): 8 tokens/s
    assert s["tokens_per_s"] == pytest.approx(8.0, rel=1e-9)
    # 3 decode tokens between the first token's end and the last's (300 ms): 10 tokens/s
    assert s["decode_tokens_per_s"] == pytest.approx(10.0, rel=1e-9)
    assert SUMMARY_LABELS["tokens_per_s"] != SUMMARY_LABELS["decode_tokens_per_s"]
    assert len(set(SUMMARY_LABELS.values())) == len(SUMMARY_LABELS)


# -- 10. the activation statistics are named as what they are ---------------------------------
def test_activation_statistics_are_named_as_absolute_values() -> None:
    assert METRIC_LABELS["act_mean"] == "mean |x|"
    assert METRIC_LABELS["act_max"] == "max |x|"


# -- 16. a stored run keeps its price; re-pricing is explicit ---------------------------------
def test_a_stored_run_keeps_its_price_whatever_the_viewers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = ten_watt_run()
    total_j = run.summary()["total_energy_j"]  # 10 W x 560 ms = 5.6 J
    assert total_j == pytest.approx(5.6, rel=1e-9)
    monkeypatch.setenv("LLM_ENERGY_PRICE_PER_KWH", "99")
    monkeypatch.setenv("LLM_ENERGY_CARBON_G_PER_KWH", "9999")
    loaded = Run.from_dict(run.to_dict())
    s = loaded.summary()
    assert s["price_per_kwh"] == 0.2
    assert s["carbon_g_per_kwh"] == 300.0
    assert s["cost_usd"] == pytest.approx(5.6 / 3.6e6 * 0.2, rel=1e-9)
    assert s["co2_g"] == pytest.approx(5.6 / 3.6e6 * 300.0, rel=1e-9)
    again = loaded.reprice(price_per_kwh=0.5)
    assert again["cost_usd"] == pytest.approx(5.6 / 3.6e6 * 0.5, rel=1e-9)
    assert loaded.summary()["price_per_kwh"] == 0.5


def test_a_run_saved_before_prices_were_kept_uses_its_saved_summary_not_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_ENERGY_PRICE_PER_KWH", "99")
    run = ten_watt_run(settings={}, summary={"price_per_kwh": 0.3, "carbon_g_per_kwh": 250.0})
    assert run.summary()["price_per_kwh"] == 0.3
    assert run.summary()["carbon_g_per_kwh"] == 250.0


# -- 17. tokens + named phases sum to the run's energy exactly -------------------------------
def test_tokens_and_named_phases_sum_to_the_total() -> None:
    run = ten_watt_run()
    s = run.summary()
    by = {p["name"]: num(p["energy_j"]) for p in run.phases()}
    tokens_j = sum(num(t["energy_j"]) for t in run.tokens())
    rest = by["tokenize"] + by["to_device"] + by["tail"] + by["detokenize"]
    assert tokens_j + rest == pytest.approx(s["total_energy_j"], rel=1e-12)
    assert s["tail_energy_j"] == pytest.approx(10.0 * 0.020, rel=1e-9)  # 20 ms at 10 W
    assert s["tail_ms"] == pytest.approx(20.0)
    assert s["decode_energy_j"] == pytest.approx(sum(num(t["energy_j"]) for t in run.tokens()[1:]))


# -- the energy integral itself, on a ramp and a square wave ----------------------------------
@pytest.mark.parametrize(
    ("power_w", "energy_j", "t0", "t1", "expected_j"),
    [
        # ramp P = t/100 W (t in ms): E = t^2 / 200,000 J; 200-500 ms: (0.25 - 0.04) / 0.2 J
        (lambda t: t / 100.0, lambda t: t * t / 2e5, 200.0, 500.0, (500**2 - 200**2) / 2e5),
        # 70 ms square wave 0/20 W (on for the first 35 ms of each period): E(t) exact
        (
            lambda t: 20.0 if (t % 70.0) < 35.0 else 0.0,
            lambda t: 20.0 * (35.0 * (t // 70.0) + min(t % 70.0, 35.0)) / 1e3,
            0.0,
            700.0,
            20.0 * 350.0 / 1e3,
        ),
    ],
)
def test_token_energy_on_analytic_traces(
    power_w: Power, energy_j: Energy, t0: float, t1: float, expected_j: float
) -> None:
    run = make_run(
        power_w,
        energy_j,
        until_ms=1000.0,
        step_ms=5.0,
        phases=[("prefill", 0.0, t0), ("decode", t0, t1)],
        tokens=[(0.0, t0), (t0, t1)],
    )
    assert run.tokens()[1]["energy_j"] == pytest.approx(expected_j, rel=1e-9)
    assert math.isfinite(run.summary()["decode_j_per_token"])


def replay_trace(path: Path, power_w: Power, until_ms: float, step_ms: float = 10.0) -> Path:
    """A CSV trace of P(t) for `replay:PATH` (the sampler integrates it)."""
    lines = ["t_ms,total_w"]
    t = 0.0
    while t <= until_ms:
        lines.append(f"{t:g},{power_w(t):g}")
        t += step_ms
    path.write_text("\n".join(lines) + "\n")
    return path


# -- through the profiler: a real tiny model, power sources with known answers ----------------
def _profile(model: Any, tok: Any, power: Any, **kw: Any) -> Run:
    from llm_energy_widget.profiler import EnergyProfiler

    prof = EnergyProfiler(
        model,
        tok,
        power=power,
        level=kw.pop("level", "component"),
        interval_ms=kw.pop("interval_ms", 20),
        baseline_s=kw.pop("baseline_s", 0.2),
        sample=kw.pop("sample", "all"),
        store=False,
    )
    run = prof.generate("Energy is the capacity to do work", do_sample=False, pad_token_id=0, **kw)
    assert run.wait(120), run.end_reason
    assert run.status == "completed", run.end_reason
    return run


# -- 3. token boundaries where the step that chose the token ends, deferred stop check too ----
def test_deferred_stop_check_tokens_get_their_own_forward(
    tiny_model: Any, smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.models import HostEvent
    from support.sources import ConstantSource
    from transformers.generation import utils as gen_utils

    ordinary = _profile(tiny_model, smollm_tokenizer, ConstantSource(10.0), max_new_tokens=8)
    # transformers' deferred path (MPS today) streams each token one forward late: force it
    monkeypatch.setattr(
        gen_utils.DeferredStopCheck, "is_supported", staticmethod(lambda *a, **k: True)
    )
    monkeypatch.setattr(torch, "Event", HostEvent)
    deferred = _profile(tiny_model, smollm_tokenizer, ConstantSource(10.0), max_new_tokens=8)
    assert [t["token_id"] for t in deferred.tokens()] == [t["token_id"] for t in ordinary.tokens()]
    toks = deferred.tokens()
    ti = METRICS.index("time_ms")
    assert deferred.layers.shape[0] == len(toks)  # the last token has its row (it had none)
    for i, t in enumerate(toks):
        hooked = float(np.nansum(deferred.layers[i, :, :, ti]))
        # each token's layers ran inside its own interval (the old one held the next forward)
        assert 0 < hooked <= num(t["duration_ms"]) * 1.05 + 0.5, (i, hooked, t["duration_ms"])
        # 10 W constant: energy = 10 W x duration, the last token included (it read ~0 J)
        assert num(t["energy_j"]) == pytest.approx(10.0 * num(t["duration_ms"]) / 1e3, rel=1e-6)
    assert num(toks[-1]["duration_ms"]) > 0.5 * min(num(t["duration_ms"]) for t in toks[1:-1])
    s = deferred.summary()
    assert s["ttft_ms"] == pytest.approx(toks[0]["duration_ms"])


# -- 4, 5 and 9. a slow counter polled fast: NVML updating every 100 ms, polled every 20 ms -----
def test_slow_nvml_counter_polled_fast_through_the_profiler(
    tiny_model: Any, smollm_tokenizer: Any
) -> None:
    import time

    from power.fake_nvml import FakeGpu, make_fake_nvml

    from llm_energy_widget.power.nvml import NvmlSource

    # a 300 W load; the counter takes a new value only every 100 ms (real time); no instant
    # field, so power is nvmlDeviceGetPowerUsage's 1-second average
    gpu = FakeGpu(
        instant_mw=None,
        energy_fn=lambda t_s: 300.0 * t_s,
        power_fn=lambda t_s: 300.0,
        update_ms=100.0,
        phase_ms=7.0,
        clock=time.monotonic,
    )
    run = _profile(
        tiny_model, smollm_tokenizer, NvmlSource(nvml=make_fake_nvml([gpu])), max_new_tokens=12
    )
    info = run.power_info
    # described after opening: what open() measured and chose
    assert info["native_interval_ms"] == pytest.approx(100.0, abs=5.0)
    assert info["resolution_ms"] == pytest.approx(100.0, abs=5.0)  # not the 20 ms poll
    assert info["power_window_ms"] == 1000.0
    assert "1-second average" in info["description"]
    assert info["scope"] == "GPU 0"
    s = run.summary()
    assert s["energy_resolution_ms"] == info["resolution_ms"]
    assert s["energy_scope"] == "GPU 0"
    assert s["power_window_ms"] == 1000.0
    toks = run.tokens()
    # readings placed at the counter's updates: every token, however short, gets 300 W x its
    # time (stamped at poll time, 70 % of 10 ms tokens read exactly 0 J)
    for t in toks:
        assert num(t["energy_j"]) == pytest.approx(300.0 * num(t["duration_ms"]) / 1e3, rel=0.05), t
    short = [t for t in toks if t["duration_ms"] < info["resolution_ms"]]
    assert short
    assert all(t["below_resolution"] for t in short)
    assert s["tokens_below_resolution"] == len(short)
    assert s["total_energy_j"] == pytest.approx(300.0 * s["duration_ms"] / 1e3, rel=0.01)


# -- 8. the estimate's scope, by name, wherever its kind shows ----------------------------------
@pytest.mark.parametrize("scope", ["process", "system"])
def test_estimate_scope_is_chosen_by_name_and_carried_by_the_run(
    scope: str, tiny_model: Any, smollm_tokenizer: Any
) -> None:
    run = _profile(tiny_model, smollm_tokenizer, f"estimate:{scope}", max_new_tokens=3)
    assert run.power_info["scope"] == scope
    assert run.summary()["energy_scope"] == scope
    text = run.power_info["description"]
    if scope == "system":  # it counts other programs: it must not say it ignores them
        assert "every process counted" in text
        assert "other processes" not in text
    else:
        assert "this process's CPU time only" in text
        assert "not other programs" in text


# -- 13. instant power aliases a periodic load; a counter never does -----------------------------
def test_square_wave_counter_is_exact_and_sampled_power_aliases(tmp_path: Path) -> None:
    from llm_energy_widget.power.replay import ReplaySource
    from llm_energy_widget.power.sampler import PowerSampler

    # 70 ms period, 300 W for the first 35 ms, 100 W after: 200 W on average, 1400 J in 7 s
    def p(t: float) -> float:
        return 300.0 if (t % 70.0) < 35.0 else 100.0

    def e(t: float) -> float:
        n, r = divmod(t, 70.0)
        return n * (300.0 * 35.0 + 100.0 * 35.0) + 300.0 * min(r, 35.0) + 100.0 * max(r - 35.0, 0)

    def total_j(with_counter: bool) -> float:
        rows = ["t_ms,total_w" + (",energy_j" if with_counter else "")]
        for k in range(71):  # a reading every 100 ms, 0..7000 ms
            t = 100.0 * k
            rows.append(f"{t:g},{p(t):g}" + (f",{e(t) / 1e3:.9f}" if with_counter else ""))
        path = tmp_path / f"sq{int(with_counter)}.csv"
        path.write_text("\n".join(rows) + "\n")
        sampler = PowerSampler(ReplaySource(path, speed=0), 100.0).start()
        sampler.wait(10)
        sampler.stop()
        energy = sampler.arrays()["energy_j"]
        return float(energy[-1] - energy[0])

    assert total_j(with_counter=True) == pytest.approx(1400.0, rel=1e-9)
    # sampled every 100 ms the wave is seen at phases 0, 30, 60, 20, 50, 10, 40 ms: 4 of 7 on
    # the high level, so the trapezoid reads 200 W x (1 + 1/14) over most of the 7 s
    sampled = total_j(with_counter=False)
    assert sampled != pytest.approx(1400.0, rel=0.01)
    assert sampled / 1400.0 - 1 == pytest.approx(1 / 14, abs=0.01)
