"""js/theme.ts holds the same colours as llm_energy_widget/view/palette.py, the one palette of
every view: the canvases draw what the SVG, the PNG and the plotly figures draw."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.analysis.figures import PHASE_COLORS as FIGURE_PHASE_COLORS
from llm_energy_widget.analysis.figures import RAIL_COLORS as FIGURE_RAIL_COLORS
from llm_energy_widget.analysis.theme import PALETTE, template
from llm_energy_widget.view import palette
from llm_energy_widget.view import static as static_view

ROOT = Path(__file__).resolve().parents[2]
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
SAMPLES = [
    float("nan"),
    -0.5,
    0.0,
    0.0625,
    0.1,
    0.125,
    1 / 3,
    0.5,
    0.6180339887,
    0.875,
    0.99,
    1.0,
    2.0,
]

PROBE = """
import * as t from "./theme.mjs";
const xs = %s;
console.log(JSON.stringify({
  RAIL_COLORS: t.RAIL_COLORS, PHASE_COLORS: t.PHASE_COLORS, PHASE_ALPHA: t.PHASE_ALPHA,
  PHASE_FILL: t.PHASE_FILL, NEUTRAL: t.NEUTRAL, SEQUENTIAL: t.SEQUENTIAL,
  colormap: xs.map((x) => t.colormap(x)),
}));
"""


@pytest.fixture(scope="module")
def theme_ts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """js/theme.ts's constants, bundled with esbuild and evaluated in node."""
    if shutil.which("node") is None or not ESBUILD.exists():
        pytest.skip("needs node and esbuild (npm install)")
    out = tmp_path_factory.mktemp("theme")
    subprocess.run(
        [str(ESBUILD), str(ROOT / "js" / "theme.ts"), "--bundle", "--format=esm",
         "--platform=neutral", f"--outfile={out / 'theme.mjs'}", "--log-level=warning"],
        check=True, timeout=60,
    )  # fmt: skip
    xs = json.dumps(["NaN" if math.isnan(x) else x for x in SAMPLES]).replace('"NaN"', "NaN")
    (out / "probe.mjs").write_text(PROBE % xs)
    done = subprocess.run(
        ["node", str(out / "probe.mjs")], check=True, capture_output=True, text=True, timeout=60
    )
    return dict(json.loads(done.stdout))


def test_theme_ts_holds_the_palette(theme_ts: dict[str, Any]) -> None:
    assert theme_ts["RAIL_COLORS"] == palette.RAIL_COLORS
    assert theme_ts["PHASE_COLORS"] == palette.PHASE_COLORS
    assert theme_ts["PHASE_ALPHA"] == palette.PHASE_ALPHA
    assert theme_ts["NEUTRAL"] == palette.NEUTRAL
    assert [tuple(c) for c in theme_ts["SEQUENTIAL"]] == list(palette.SEQUENTIAL)


def test_canvas_fills_and_colormap_are_the_palettes(theme_ts: dict[str, Any]) -> None:
    assert theme_ts["PHASE_FILL"] == {n: palette.phase_fill(n) for n in palette.PHASE_COLORS}
    assert [tuple(c) for c in theme_ts["colormap"]] == [palette.sequential_rgb(x) for x in SAMPLES]


def test_kind_colours_are_the_widget_css_ones() -> None:
    css = (ROOT / "js" / "widget.css").read_text()
    found = dict(re.findall(r"\.lew-kind-(\w+)\s*\{\s*color:\s*(#[0-9a-fA-F]{6})", css))
    assert found == palette.KIND_COLORS


def test_every_python_view_uses_the_palette() -> None:
    assert static_view.RAIL_COLORS is palette.RAIL_COLORS
    assert static_view.PHASE_COLORS is palette.PHASE_COLORS
    assert FIGURE_PHASE_COLORS == palette.PHASE_COLORS
    assert {f"{k}_w": v for k, v in palette.RAIL_COLORS.items()} == FIGURE_RAIL_COLORS
    assert tuple(PALETTE) == palette.CATEGORICAL
    scale = template()["layout"]["colorscale"]["sequential"]
    assert scale == palette.plotly_colorscale()
    assert scale[0] == [0.0, "#440154"]
    assert scale[-1] == [1.0, "#fde725"]


def test_sequential_scale_ends_and_missing() -> None:
    assert palette.sequential_hex(0.0) == "#440154"
    assert palette.sequential_hex(1.0) == "#fde725"
    assert palette.sequential_hex(-3.0) == "#440154"
    assert palette.sequential_hex(7.0) == "#fde725"
    assert palette.sequential_hex(float("nan")) == palette.NEUTRAL
