"""When not even the estimate can run, `auto` says so instead of naming a source it cannot open."""

from __future__ import annotations

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.errors import SourceUnavailableError
from llm_energy_widget.power import get_source
from llm_energy_widget.power.registry import explain_auto


def test_auto_with_no_source_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ENERGY_TDP_W", "abc")  # the estimate is unavailable: bad figure
    assert explain_auto().splitlines()[0].startswith("auto -> none:")
    with pytest.raises(
        SourceUnavailableError, match=r"estimate: LLM_ENERGY_TDP_W must be a number"
    ):
        get_source("auto")


def test_cli_sources_never_claims_an_unavailable_estimate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_ENERGY_TDP_W", "abc")
    assert main(["sources"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("auto -> none")
    monkeypatch.delenv("LLM_ENERGY_TDP_W")
    assert main(["sources"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("auto -> ")
