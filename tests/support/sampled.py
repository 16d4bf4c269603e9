"""A run made with sampled instrumentation, by hand: some tokens instrumented (a layer row), the
rest bare (no row; `run.layers` NaN for them), for the views' tests (widget, static, CLI, JS).

The synthetic run's events (`llm_energy_widget.testing.synthetic_events`) with each token's
`instrumented` flag, a bare token's layer row left out and its time 20 % shorter: bare tokens run
at plain speed, so the profiling overhead is +25 % (instrumented / bare - 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.run import Run
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events

INSTRUMENTED = (0, 7, 15, 22)
"""The default run's instrumented tokens, of 24: the prefill and three decode tokens."""


def sampled_events(
    n_tokens: int = 24, instrumented: Iterable[int] = INSTRUMENTED, n_layers: int = 3
) -> Iterator[tuple[str, Any]]:
    """Producer calls (`Recorder` method, args) of the run `sampled_run` makes."""
    inst = set(instrumented)
    shift = 0.0  # how much earlier every later event is: bare tokens are 20 % shorter
    for name, raw in synthetic_events(n_tokens=n_tokens, n_layers=n_layers, token_ms=50.0):
        args = raw
        if name == "token":
            tid, text, phase, start, end = raw
            i = tid - 1000
            dur = end - start
            start -= shift
            if i not in inst and i > 0:
                shift += 0.2 * dur
                dur *= 0.8
            args = (tid, text, phase, start, start + dur, i in inst)
        elif name == "layers":
            if raw[0] not in inst:
                continue
        elif name in ("phase_start", "phase_end"):
            args = (raw[0], raw[1] - shift)
        yield name, args


def sampled_run(
    n_tokens: int = 24,
    instrumented: Iterable[int] = INSTRUMENTED,
    n_layers: int = 3,
    power: dict[str, Any] | None = None,
    finish: bool = True,
) -> Run:
    """A run of `n_tokens` whose `instrumented` tokens have layer rows and the rest ran bare;
    `power` is added to its power info (kind "estimated" with an uncertainty: ranges)."""
    run = new_synthetic_run(n_layers=n_layers)
    run.settings["sampling"] = {"mode": "budget", "overhead_budget": 0.005}
    if power:
        run.power_info.update(power)
    Recorder(run).status("running")
    for name, args in sampled_events(n_tokens, instrumented, n_layers):
        apply_event(run, name, args)
    if finish:
        Recorder(run).finish("completed", "synthetic sampled run")
    return run
