"""Which tokens run instrumented: the fixed policies, the adaptive budget on a fake clock, and
the keywords' errors."""

from __future__ import annotations

import math

import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiling.sampling import (
    DEFAULT_OVERHEAD_BUDGET,
    TokenSampling,
    sampling_from,
)


class FakeClock:
    """perf_counter_ns that the test advances by hand."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def advance_ms(self, ms: float) -> None:
        self.ns += round(ms * 1e6)


def simulate(
    sampling: TokenSampling, clock: FakeClock, n: int, bare_ms: float, inst_ms: float
) -> list[bool]:
    """n tokens (the prefill first, 100 ms) whose time depends only on being instrumented."""
    sampling.start()
    current = True
    for i in range(n):
        clock.advance_ms(100.0 if i == 0 else inst_ms if current else bare_ms)
        current = sampling.decide()
    return sampling.instrumented


def test_all_instruments_every_token() -> None:
    clock = FakeClock()
    assert simulate(TokenSampling("all", clock_ns=clock), clock, 10, 10, 20) == [True] * 10


def test_every_k_is_the_prefill_and_every_kth_decode_token() -> None:
    clock = FakeClock()
    got = simulate(TokenSampling("every", every=4, clock_ns=clock), clock, 13, 10, 20)
    assert [i for i, x in enumerate(got) if x] == [0, 4, 8, 12]


@pytest.mark.parametrize(
    ("budget", "slowdown"), [(0.05, 0.5), (0.01, 0.06), (0.02, 0.6), (0.1, 0.25)]
)
def test_budget_converges_to_budget_over_slowdown(budget: float, slowdown: float) -> None:
    """Instrumented tokens slower by a known factor s: the rate r settles where the time they
    add is the budget's share of the decode time, r s = b (1 + r s), so r = b / (s (1 - b)),
    and the time they add stays within the budget (plus at most one token's extra)."""
    clock = FakeClock()
    bare_ms, n = 10.0, 2001
    inst_ms = bare_ms * (1 + slowdown)
    sampling = TokenSampling("budget", overhead_budget=budget, clock_ns=clock)
    got = simulate(sampling, clock, n, bare_ms, inst_ms)
    decode = got[1:]
    rate = sum(decode) / len(decode)
    assert rate == pytest.approx(budget / (slowdown * (1 - budget)), rel=0.05)
    added_ms = sum(decode) * (inst_ms - bare_ms)
    decode_ms = sum(inst_ms if x else bare_ms for x in decode)
    assert added_ms <= budget * decode_ms + (inst_ms - bare_ms)
    assert sampling.slowdown() == pytest.approx(slowdown)
    assert got[0] is True  # the prefill
    assert got[1] is False
    assert got[2] is True


def test_budget_instruments_everything_when_it_costs_nothing() -> None:
    clock = FakeClock()
    got = simulate(TokenSampling("budget", overhead_budget=0.01, clock_ns=clock), clock, 50, 10, 10)
    assert got[0]
    assert not got[1]
    assert all(got[2:])


def test_budget_adapts_when_the_slowdown_changes() -> None:
    """The rate follows the run's own measurements (a window of recent tokens)."""
    clock = FakeClock()
    sampling = TokenSampling("budget", overhead_budget=0.05, clock_ns=clock)
    sampling.start()
    current = True
    for i in range(1200):
        slow = 0.5 if i < 600 else 0.1
        clock.advance_ms(100.0 if i == 0 else 10.0 * (1 + slow) if current else 10.0)
        current = sampling.decide()
    late = sampling.instrumented[900:]
    assert sum(late) / len(late) == pytest.approx(0.5, rel=0.15)


def test_keywords() -> None:
    default = sampling_from(None, None)
    assert (default.mode, default.overhead_budget) == ("budget", DEFAULT_OVERHEAD_BUDGET)
    assert sampling_from("all", None).settings() == {"mode": "all"}
    assert sampling_from(1, None).settings() == {"mode": "all"}
    assert sampling_from(3, None).settings() == {"mode": "every", "every": 3}
    assert sampling_from(None, 0.05).settings() == {"mode": "budget", "overhead_budget": 0.05}


@pytest.mark.parametrize(
    ("sample", "budget", "match"),
    [
        (0, None, "whole number k >= 1"),
        (-2, None, "whole number k >= 1"),
        (2.5, None, "whole number k >= 1"),
        (True, None, "whole number k >= 1"),
        ("some", None, "whole number k >= 1"),
        (None, 0, r"fraction in \(0, 1\)"),
        (None, 1.0, r"fraction in \(0, 1\)"),
        (None, -0.1, r"fraction in \(0, 1\)"),
        (None, math.nan, "finite"),
        (None, "2%", "must be a number"),
        (4, 0.02, "not both"),
    ],
)
def test_bad_keywords_are_clear_errors(sample: object, budget: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        sampling_from(sample, budget)
