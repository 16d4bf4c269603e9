"""The test harness itself: the thread-leak check and the warnings-as-errors filter
(tests/conftest.py, `[tool.pytest.ini_options]` in pyproject.toml)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pytest

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.power.streams import SkippedSampleWarning, warn_skipped
from llm_energy_widget.testing import new_synthetic_run
from llm_energy_widget.view.widget import EnergyWidget
from support.runs import hand_run
from support.threads import leftover_threads


def test_a_thread_left_running_is_reported_by_name() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="energy-widget-test", daemon=True)
    t.start()
    try:
        assert leftover_threads(before, grace_s=0.1) == ["energy-widget-test (daemon)"]
    finally:
        stop.set()
        t.join()
    assert leftover_threads(before, grace_s=0.1) == []


def test_a_package_thread_is_seen_until_it_ends() -> None:
    """A widget following an unfinished run has a flusher thread (`energy-widget-<id>`), which
    the check sees until the run finishes."""
    before = set(threading.enumerate())
    run = new_synthetic_run(n_layers=2)
    Recorder(run).status("running")
    w = EnergyWidget()
    try:
        w.attach(run)
        assert leftover_threads(before, grace_s=0.1) == [f"energy-widget-{run.run_id} (daemon)"]
    finally:
        Recorder(run).finish("completed", "test done")
    assert leftover_threads(before) == []
    w.close()


def test_long_lived_workers_are_not_leaks() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="lew-generate-99", daemon=True)
    t.start()
    try:
        assert leftover_threads(before, grace_s=0.1) == []
    finally:
        stop.set()
        t.join()


def test_an_expected_package_warning_passes_under_pytest_warns() -> None:
    with pytest.warns(SkippedSampleWarning, match="skipped malformed sample #3"):
        warn_skipped("test", 3, "a reason")


def test_an_unexpected_package_warning_is_an_error() -> None:
    with pytest.raises(SkippedSampleWarning):
        warn_skipped("test", 3, "a reason")


def test_a_warning_raised_from_a_package_module_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The missing-bundle warning of `view.report.to_html` (stacklevel 2) is attributed to
    `llm_energy_widget.run` when called as `Run.to_html`: the module filter makes it an error."""
    monkeypatch.setattr("llm_energy_widget.view.report.BUNDLE_JS", tmp_path / "missing.js")
    run = hand_run()
    with pytest.raises(UserWarning, match="missing"):
        run.to_html(tmp_path / "a.html")
    with pytest.warns(UserWarning, match="missing"):
        run.to_html(tmp_path / "b.html")
    assert (tmp_path / "b.html").is_file()


def test_other_modules_warnings_stay_warnings() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("from a test module", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["from a test module"]
