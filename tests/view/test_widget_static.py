"""The static rendering (SVG / text / HTML) and the offline HTML report, without a browser."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest
from support.widget import XSS_TEXTS, full_run

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.testing import new_synthetic_run
from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.static import render_html, render_svg, render_text

SVG = "{http://www.w3.org/2000/svg}"


def _title(e: ET.Element) -> str | None:
    """The text of `e`'s <title>, which it must have."""
    t = e.find(f"{SVG}title")
    assert t is not None
    return t.text


@pytest.fixture(scope="module")
def run() -> Any:
    return full_run(n_tokens=16, n_layers=3, texts=XSS_TEXTS)


def test_svg_is_well_formed_with_power_curve_phases_and_heatmap(run: Any) -> None:
    root = ET.fromstring(render_svg(run))
    polylines = root.findall(f".//{SVG}polyline")
    assert {_title(p) for p in polylines} == {"cpu", "dram", "total"}
    total = next(p for p in polylines if _title(p) == "total")
    points = total.get("points")
    assert points is not None
    assert len(points.split()) == len(run.power_records())
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "prefill" in titles
    assert "decode" in titles
    cells = [r for r in root.iter(f"{SVG}rect") if (r.find(f"{SVG}title") is not None)]
    heat = [r for r in cells if " · " in (_title(r) or "")]
    assert len(heat) == len(run.layer_names) * len(run.component_names)


def test_text_carries_source_kind_and_resolution(run: Any) -> None:
    text = render_text(run)
    assert "power source: synthetic (modeled, resolution 100 ms)" in text
    assert re.search(r"decode J/token: [\d.]+ m?J \(modeled\)", text)
    assert "cost: $" in text
    assert "(modeled)" in text


def test_html_escapes_token_text(run: Any) -> None:
    out = render_html(run)
    assert "<img" not in out
    assert "<script" not in out.lower()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in out


def test_static_render_of_an_empty_run_says_so() -> None:
    run = new_synthetic_run()
    assert "no power samples" in render_svg(run)
    ET.fromstring(render_svg(run))
    assert "0 out" in render_text(run)


def test_report_is_self_contained_and_escaped(run: Any, tmp_path: Path) -> None:
    path = to_html(run, tmp_path / "sub" / "report.html")
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", page, re.I)
    assert not re.search(r"url\(\s*['\"]?https?:", page, re.I)
    assert "@import" not in page
    assert page.count("<script") == 3  # data, bundle (as text), boot
    # the XSS token never appears raw, only as escaped text / JSON escapes
    assert "<img src=x" not in page
    assert "</script><script>alert(1)" not in page
    # data and bundle are deflated base64 (issue 10: the report's size); unpacked, they are the
    # run's full snapshot and the built bundle
    data = re.search(r'<script type="application/octet-stream" id="lew-data">(.*?)</script>', page)
    assert data is not None
    raw = zlib.decompress(base64.b64decode(data.group(1)))
    n = int.from_bytes(raw[:4], "little")
    parsed = json.loads(raw[4 : 4 + n])
    assert parsed["header"]["tokens"]["text"] == [t["text"] for t in run.tokens()]
    assert parsed["meta"]["run_id"] == run.run_id
    assert "layers" in parsed["header"], "full rows"
    assert "layer_means" not in parsed["header"], "full rows"
    bundle = re.search(
        r'<script type="application/octet-stream" id="lew-bundle">(.*?)</script>', page
    )
    assert bundle is not None
    assert "staticModel" in json.loads(zlib.decompress(base64.b64decode(bundle.group(1))))["js"]


def test_run_to_html_delegates(run: Any, tmp_path: Path) -> None:
    assert run.to_html(tmp_path / "r.html").is_file()


def test_report_rejects_a_folder(run: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="file path"):
        to_html(run, tmp_path)
