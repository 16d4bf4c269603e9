"""Registry: list, get by name or spec, auto and its explanation."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_energy_widget.errors import InvalidInputError, SourceUnavailableError
from llm_energy_widget.power import (
    EstimateSource,
    PowermetricsSource,
    ReplaySource,
    explain_auto,
    get_source,
    list_sources,
)
from llm_energy_widget.power.registry import SOURCES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "power"


def test_list_sources_has_every_source_in_order() -> None:
    rows = list_sources()
    assert [r["name"] for r in rows] == [
        "nvml",
        "rapl",
        "powermetrics",
        "macmon",
        "estimate",
        "replay",
    ]
    for r in rows:
        assert set(r) == {"name", "available", "kind", "reason"}
        assert r["reason"]
    assert {r["name"]: r["kind"] for r in rows}["estimate"] == "estimated"


def test_get_source_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    est = EstimateSource()
    assert get_source(est) is est
    assert isinstance(get_source(f"replay:{FIXTURES / 'trace.csv'}"), ReplaySource)
    pm = get_source(f"powermetrics:{FIXTURES / 'powermetrics.plist'}", follow=False)
    assert isinstance(pm, PowermetricsSource)
    assert not pm.follow
    with pytest.raises(InvalidInputError, match="valid: auto, nvml, rapl"):
        get_source("joulemeter")
    with pytest.raises(InvalidInputError, match="replay needs a trace"):
        get_source("replay")
    with pytest.raises(InvalidInputError, match="take a file"):
        get_source("estimate:/tmp/x")
    for name, cls in SOURCES.items():
        if name != "replay" and not cls.availability().available:
            with pytest.raises(SourceUnavailableError, match=name):
                get_source(name)


def test_auto_falls_back_to_the_estimate_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_energy_widget.power.base import Availability

    for name in ("nvml", "rapl", "powermetrics", "macmon"):
        monkeypatch.setattr(
            SOURCES[name], "availability", classmethod(lambda cls: Availability(False, "nope"))
        )
    assert isinstance(get_source("auto"), EstimateSource)
    text = explain_auto()
    assert text.startswith("auto -> estimate")
    for name in ("nvml", "rapl", "powermetrics", "macmon"):
        assert f"not {name}: nope" in text
    monkeypatch.setattr(
        SOURCES["rapl"], "availability", classmethod(lambda cls: Availability(True, "yes"))
    )
    assert explain_auto().splitlines()[0] == "auto -> rapl: yes"
