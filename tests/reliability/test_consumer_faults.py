"""A consumer that raises never breaks the run, and logs one traceback, not one per event."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events


def test_a_failing_consumer_is_logged_once_counted_and_named_in_the_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = new_synthetic_run(n_layers=2)

    def broken(event: str, payload: dict[str, Any]) -> None:
        raise TypeError("consumer bug")

    seen: list[str] = []
    run.subscribe(broken)
    run.subscribe(lambda e, p: seen.append(e))  # a healthy consumer still gets everything
    Recorder(run).status("running")
    with caplog.at_level(logging.ERROR):
        for name, args in synthetic_events(n_tokens=8, n_layers=2):
            apply_event(run, name, args)
        failed_before_finish = len(seen)  # the broken consumer failed on each of these
        Recorder(run).finish("completed", "done")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # was one per event: 58 for 8 tokens
    n = seen.count("power") + seen.count("token") + seen.count("layers") + seen.count("phase")
    assert n > 20
    assert seen[-1] == "done"
    (warning,) = [w for w in run.warnings if "failed" in w]
    assert "broken" in warning
    assert "TypeError: consumer bug" in warning
    assert f"failed {failed_before_finish} time(s)" in warning
    assert run.status == "completed"
