"""Which tokens run with the layer instrumentation, so the rest run (and are measured) bare.

Every wrapper, hook and reduction the profiler adds is time, and so energy, the model did not
spend: measured against plain `generate`, the component level ran at 0.94 of plain decode speed
on the 2-core CPU machine and 0.62 on an H200. Instrumenting a subset of tokens keeps the
heatmap and lets the headline figures (J/token, tokens/s) come from the bare tokens, which
run at plain speed (`LayerProfiler.disarm` takes every wrapper out of the call path).

Policies (`TokenSampling.decide` is asked at each token boundary about the next token):
- "all": every token (the layer heatmap of every token; the figures carry the overhead);
- every k: the prefill and every k-th decode token;
- an overhead budget b: the prefill, then a rate chosen from the run's own measurements so
  that the extra time of instrumented decode tokens stays within b of the decode time
  (`_Budget`); with the instrumented tokens s slower than bare ones it settles at
  b / (s (1 - b)), about b / s.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.validation import finite_number
from ..errors import InvalidInputError

__all__ = [
    "DEFAULT_OVERHEAD_BUDGET",
    "WINDOW",
    "TokenSampling",
    "sampling_from",
]

DEFAULT_OVERHEAD_BUDGET = 0.005
"""The default: instrumented decode tokens may add at most 0.5 % to the decode time.

benchmarks/overhead.py (2-core CPU, SmolLM2, 64 tokens, paired rounds): the default must keep
>= 0.98 of plain decode speed and its J/token within 2 % of the token level's. At 1 % the
default measured 0.960 and 0.976 of plain speed (J/token +2.5 % and +1.1 %) in two 5-round
runs: the budget bounds the instrumented tokens' own extra time, and the switches and
reductions around them add about as much again; at 0.5 %, 0.990 and -0.4 % (7 rounds), with
2-3 instrumented decode tokens of 63 besides the prefill. The bare tokens carry the headline
figures whatever the rate; ask for more instrumented tokens with overhead_budget= or sample=.
"""
WINDOW = 16
"""Recent token times per kind (bare, instrumented) the adaptive rate is estimated from."""


@dataclass
class _Budget:
    """Adaptive rate: instrument the next decode token when the time the instrumented ones
    added so far, plus what this one is expected to add, stays within budget x decode time.

    A credit scheme, not a fixed period: it reacts to the slowdown as measured in this run,
    and over n decode tokens the extra time is at most budget x decode time + one token's
    extra. Until a bare and an instrumented decode token have been timed, decode token 2 is
    instrumented (token 1 runs bare: the first reference of plain speed).
    """

    budget: float
    bare_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    inst_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    decode_ms: float = 0.0  # all decode tokens' time so far
    extra_ms: float = 0.0  # the instrumented decode tokens' time above bare speed, so far

    def note(self, ms: float, instrumented: bool) -> None:
        self.decode_ms += ms
        (self.inst_ms if instrumented else self.bare_ms).append(ms)
        if instrumented and self.bare_ms:
            self.extra_ms += max(ms - statistics.median(self.bare_ms), 0.0)

    def slowdown(self) -> float | None:
        """Instrumented over bare decode token time, minus 1 (None until both are timed)."""
        if not self.bare_ms or not self.inst_ms:
            return None
        return statistics.median(self.inst_ms) / statistics.median(self.bare_ms) - 1.0

    def next_instrumented(self) -> bool:
        if not self.bare_ms:
            return False  # token 1: bare first
        s = self.slowdown()
        if s is None:
            return True  # then one instrumented, to measure the slowdown
        bare = statistics.median(self.bare_ms)
        expected_ms = max(s, 0.0) * bare
        return self.extra_ms + expected_ms <= self.budget * (self.decode_ms + bare + expected_ms)


class TokenSampling:
    """Decides, at each token boundary on the generating thread, whether the next token runs
    with the instrumentation; times the tokens itself (`clock_ns`) for the adaptive rate.

    Token 0 is the prefill: always instrumented (its heatmap is the one users ask for first),
    except by `decide`'s caller for a run without layers.
    """

    def __init__(
        self,
        mode: str,
        every: int | None = None,
        overhead_budget: float | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.mode = mode
        self.every = every
        self.overhead_budget = overhead_budget
        self._clock = clock_ns
        self._budget = _Budget(overhead_budget) if mode == "budget" and overhead_budget else None
        self._last_ns: int | None = None
        self._index = 0  # the token now running
        self._current = True  # whether it is instrumented (the prefill is)
        self.instrumented: list[bool] = []  # per finished token

    @property
    def all(self) -> bool:
        return self.mode == "all"

    def start(self) -> None:
        """The prefill starts now (instrumented)."""
        self._last_ns = self._clock()
        self._index, self._current = 0, True

    def decide(self) -> bool:
        """The running token just ended: note it; return whether the next one is instrumented."""
        now = self._clock()
        ms = (now - self._last_ns) / 1e6 if self._last_ns is not None else 0.0
        self._last_ns = now
        self.instrumented.append(self._current)
        if self._budget is not None and self._index >= 1:  # decode tokens only
            self._budget.note(ms, self._current)
        self._index += 1
        self._current = self._next(self._index)
        return self._current

    def _next(self, index: int) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "every":
            assert self.every is not None
            return index % self.every == 0
        assert self._budget is not None
        return self._budget.next_instrumented()

    def slowdown(self) -> float | None:
        """The adaptive policy's own estimate (the summary measures it from the tokens)."""
        return self._budget.slowdown() if self._budget is not None else None

    def settings(self) -> dict[str, Any]:
        """As kept in run.settings["sampling"]."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "every":
            out["every"] = self.every
        if self.mode == "budget":
            out["overhead_budget"] = self.overhead_budget
        return out


def sampling_from(sample: Any, overhead_budget: Any) -> TokenSampling:
    """The policy the profiler's keywords ask for; a clear error for anything else.

    sample="all" | an int k >= 1 (k=1 is "all"); overhead_budget a fraction in (0, 1);
    neither: the default budget (DEFAULT_OVERHEAD_BUDGET); both: an error (two answers to
    one question).
    """
    if sample is not None and overhead_budget is not None:
        raise InvalidInputError(
            f"pass sample= or overhead_budget=, not both (got sample={sample!r}, "
            f"overhead_budget={overhead_budget!r}): sample fixes which tokens are "
            "instrumented, the budget lets the profiler choose"
        )
    if overhead_budget is not None:
        b = finite_number(overhead_budget, "overhead_budget (a fraction in (0, 1))")
        if not 0.0 < b < 1.0:
            raise InvalidInputError(
                f"overhead_budget must be a fraction in (0, 1), e.g. 0.02 for 2 %; got {b!r}"
            )
        return TokenSampling("budget", overhead_budget=b)
    if sample is None:
        return TokenSampling("budget", overhead_budget=DEFAULT_OVERHEAD_BUDGET)
    if sample == "all":
        return TokenSampling("all")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise InvalidInputError(
            f'sample must be "all" or a whole number k >= 1 (every k-th decode token, plus the '
            f"prefill); got {sample!r}"
        )
    return TokenSampling("all") if sample == 1 else TokenSampling("every", every=sample)
