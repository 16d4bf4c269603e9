"""Ranges, the busy-machine note and the profiler's own CPU: known answers worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from llm_energy_widget.core.uncertainty import (
    BUSY_OTHER_CORES,
    busy_machine_note,
    energy_ranges_j,
    profiler_cpu,
    with_uncertainty,
)

ESTIMATE = {"source": "estimate", "kind": "estimated", "scope": "process", "uncertainty": 0.5}
SUMMARY: dict[str, Any] = {
    "total_energy_j": 10.0,
    "net_energy_j": -2.0,  # below the baseline: keeps its sign
    "prefill_energy_j": 4.0,
    "decode_energy_j": None,  # unknown stays unknown
    "decode_j_per_token": 0.2,
    "decode_tokens_per_j": 5.0,
    "prefill_j_per_prompt_token": 0.4,
    "cost_usd": 0.001,
    "co2_g": 2.0,
    "edp_js": 30.0,
    "avg_power_w": 8.0,
    "tokens_per_s": 12.0,  # not an energy figure
    "output_tokens": 20,
    "energy_kind": "estimated",
    "net_energy_reliable": True,
}


def test_an_estimate_gets_plus_minus_its_uncertainty() -> None:
    r = energy_ranges_j(SUMMARY, ESTIMATE)
    assert r["total_energy_j"] == pytest.approx([5.0, 15.0])  # 10 x 0.5, 10 x 1.5
    assert r["net_energy_j"] == pytest.approx([-3.0, -1.0])  # -2 x 1.5, -2 x 0.5, sorted
    assert r["prefill_energy_j"] == pytest.approx([2.0, 6.0])
    assert r["decode_energy_j"] is None
    assert r["decode_j_per_token"] == pytest.approx([0.1, 0.3])
    assert r["decode_tokens_per_j"] == pytest.approx([5 / 1.5, 10.0])  # 1/0.3 .. 1/0.1 J
    assert r["prefill_j_per_prompt_token"] == pytest.approx([0.2, 0.6])
    assert r["cost_usd"] == pytest.approx([0.0005, 0.0015])
    assert r["co2_g"] == pytest.approx([1.0, 3.0])
    assert r["edp_js"] == pytest.approx([15.0, 45.0])
    assert r["avg_power_w"] == pytest.approx([4.0, 12.0])
    for key in ("tokens_per_s", "output_tokens", "energy_kind", "net_energy_reliable"):
        assert key not in r


def test_a_measurement_gets_no_invented_range() -> None:
    assert energy_ranges_j(SUMMARY, {**ESTIMATE, "kind": "measured"}) == {}
    assert energy_ranges_j(SUMMARY, {"kind": "estimated"}) == {}  # no stated uncertainty
    assert energy_ranges_j(SUMMARY, {**ESTIMATE, "uncertainty": "lots"}) == {}
    assert energy_ranges_j(SUMMARY, {**ESTIMATE, "uncertainty": float("nan")}) == {}


def test_an_uncertainty_over_100_percent_clips_at_zero() -> None:
    r = energy_ranges_j(SUMMARY, {**ESTIMATE, "uncertainty": 2.0})
    assert r["total_energy_j"] == pytest.approx([0.0, 30.0])  # 10 x -1 clipped, 10 x 3
    assert r["net_energy_j"] == pytest.approx([-6.0, 2.0])  # a negative figure is not clipped
    assert r["decode_tokens_per_j"] is None  # 5 / (1 - 2): no finite upper end


def quiet_or_busy(other: float, resolution: float = 0.02) -> dict[str, Any]:
    return {
        "wall_s": 10.0,
        "cpu_count": 2,
        "system_busy_cores": 1.0 + other,
        "process_busy_cores": 1.0,
        "other_busy_cores": other,
        "busy_resolution_cores": resolution,
    }


def test_a_busy_machine_is_noted_a_quiet_or_unknown_one_is_not() -> None:
    note = busy_machine_note(quiet_or_busy(1.3), kind="estimated")
    assert note is not None
    assert note.startswith("the machine was busy: other processes used 1.3 of 2 cores")
    assert "cannot tell spinning from work" in note
    assert "compare runs made on a quiet machine" in note
    measured = busy_machine_note(quiet_or_busy(1.3), kind="measured")
    assert measured is not None
    assert "spinning" not in measured
    assert busy_machine_note(quiet_or_busy(BUSY_OTHER_CORES)) is not None  # at the threshold
    assert busy_machine_note(quiet_or_busy(0.2)) is None
    assert busy_machine_note(quiet_or_busy(0.4, resolution=0.3)) is None  # within rounding
    assert busy_machine_note({**quiet_or_busy(1.3), "other_busy_cores": None}) is None  # macOS
    assert busy_machine_note(None) is None
    assert busy_machine_note({}) is None


def test_the_profilers_cpu_is_priced_only_under_the_estimate() -> None:
    by_role = {"reducer": 0.3, "sampler": 0.05, "store": 0.15}
    est = profiler_cpu(by_role, run_cpu_s=5.0, estimated=True, watts_per_core=10.0)
    assert est["cpu_s"] == pytest.approx(0.5)
    assert est["by_role"] == by_role
    assert est["share_of_process_cpu"] == pytest.approx(0.1)  # 0.5 of 5 CPU s
    assert est["energy_j"] == pytest.approx(5.0)  # 0.5 s x 10 W
    assert est["excluded_from_model"] is True
    meas = profiler_cpu(by_role, run_cpu_s=None, estimated=False, watts_per_core=None)
    assert meas["cpu_s"] == pytest.approx(0.5)
    assert meas["share_of_process_cpu"] is None
    assert meas["energy_j"] is None
    assert meas["excluded_from_model"] is False
    system = profiler_cpu(by_role, 5.0, True, 10.0, excluded_from_model=False)
    assert system["energy_j"] == pytest.approx(5.0)
    assert system["excluded_from_model"] is False
    empty = profiler_cpu({}, 0.0, True, 10.0)
    assert empty["cpu_s"] == 0.0
    assert empty["share_of_process_cpu"] is None


def test_a_summary_gains_ranges_the_load_the_profilers_cpu_and_the_note() -> None:
    load = {
        **quiet_or_busy(1.3),
        "process_cpu_s": 10.0,
        "profiler_cpu_s_by_role": {"reducer": 0.4, "sampler": 0.1},
    }
    info = {**ESTIMATE, "watts_per_core": 10.0, "excludes_profiler_threads": True, "load": load}
    summary = {**SUMMARY, "warnings": ["a run warning"]}
    out = with_uncertainty(summary, info)
    assert out["total_energy_j"] == 10.0  # the figures are unchanged
    assert out["energy_ranges_j"]["total_energy_j"] == pytest.approx([5.0, 15.0])
    assert out["machine_load"] == load
    assert out["profiler_cpu"]["cpu_s"] == pytest.approx(0.5)
    assert out["profiler_cpu"]["energy_j"] == pytest.approx(5.0)  # 0.5 CPU s x 10 W
    assert out["profiler_cpu"]["share_of_process_cpu"] == pytest.approx(0.05)
    assert out["profiler_cpu"]["excluded_from_model"] is True
    assert out["warnings"][0] == "a run warning"
    assert out["warnings"][1].startswith("the machine was busy: other processes used 1.3 of 2")
    assert summary["warnings"] == ["a run warning"]  # the input is left as it was
    measured = with_uncertainty(summary, {"kind": "measured", "source": "rapl"})
    assert measured["energy_ranges_j"] == {}
    assert measured["machine_load"] is None
    assert measured["profiler_cpu"] is None
    assert measured["warnings"] == ["a run warning"]
