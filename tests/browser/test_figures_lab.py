"""`run.figures` and `compare()` in a real JupyterLab, in the saved notebook, and in nbconvert HTML.

Two synthetic runs of a 30-layer x 12-component model, the first ending in a 12-ms tail and a
2-ms detokenize. What the user sees: every figure's plot at least 300 px tall and as wide as its
output, no scroll box inside the outputs, text readable (contrast >= 3:1 against the page) on the
light and on the dark theme, figures still full size after the theme changes; the notebook as
JupyterLab saves it (with the PNG its plotly extension adds) holding plotly.js once and every
figure output under 300 KB, even after the cell holding plotly.js runs again; the saved notebook
reopened renders without running anything; nbconvert's HTML draws every figure offline.

Run: PYTHONPATH=$PWD flock /tmp/lew-browser.lock .venv/bin/python -m pytest
tests/browser/test_figures_lab.py -q. Screenshots land in test-artifacts/browser/; with
LLM_ENERGY_UPDATE_SCREENSHOTS=1 they are also copied to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # mypy's `conftest` is tests/conftest.py; pytest's, here, is this folder's
    from browser.conftest import LabPage, open_page, save_artifacts
else:
    from conftest import LabPage, open_page, save_artifacts
from support.lab import ARTIFACTS, JUPYTER, REPO, LabServer, write_notebook
from support.lab_page import cell_outputs, open_notebook, run_all, set_theme, wait_kernel_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

NAME = "figures.ipynb"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLYJS_MARKER = "* plotly.js v"  # plotly.min.js's banner: one per inlined copy
MAX_FIGURE_OUTPUT_BYTES = 300_000
MIN_PLOT_PX = 300
DOCS_SHOTS = REPO / "docs" / "screenshots"
MAX_DOC_PNG_BYTES = 600_000
TALL = {"width": 1280, "height": 4600}  # every output in view at once: no lazy rendering

SETUP = (
    "from llm_energy_widget.testing import synthetic_run\n"
    "from llm_energy_widget.core.recorder import Recorder\n"
    "from llm_energy_widget.analysis import compare\n"
    "comps = ('input_layernorm', 'q_proj', 'k_proj', 'v_proj', 'o_proj', 'rotary',\n"
    "         'post_attention_layernorm', 'gate_proj', 'up_proj', 'act_fn', 'down_proj', 'mlp')\n"
    "run = synthetic_run(n_tokens=40, n_layers=30, components=comps, finish=False)\n"
    "t = run.phases()[-1]['end_ms']\n"
    "Recorder(run).phase_start('tail', t); Recorder(run).phase_end('tail', t + 12.0)\n"
    "Recorder(run).phase_start('detokenize', t + 12.0)\n"
    "Recorder(run).phase_end('detokenize', t + 14.0)\n"
    "Recorder(run).finish('completed', 'synthetic run complete')\n"
    "other = synthetic_run(n_tokens=60, n_layers=30, components=comps, seed=2, token_ms=45.0)\n"
    "run.settings['max_new_tokens'], other.settings['max_new_tokens'] = 40, 60"
)
CELLS = [SETUP, "run.figures", "compare([run, other])"]
N_FIGURES = 5 + 4

# Per figure: its size, the size of its output, whether its own background is transparent, and
# the worst text contrast against the page behind it (titles, ticks, axis and legend text,
# annotations, colorbar, sankey labels; not text drawn on bars or treemap tiles, which sits on
# an opaque fill of its own).
MEASURE_JS = """
() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(',').map((x) => parseFloat(x));
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const contrast = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const pageBg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const TEXT = '.gtitle, .xtick text, .ytick text, .g-xtitle text, .g-ytitle text, ' +
    '.g-x2title text, .g-y2title text, .legendtext, .annotation-text, .cbaxis text, ' +
    '.cbtitle text, .node-label';
  return [...document.querySelectorAll('.jp-Notebook .jp-RenderedPlotly')].map((out) => {
    const svg = out.querySelector('.main-svg');
    const box = out.getBoundingClientRect();
    const plot = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    const bg = pageBg(out.parentElement);
    let worst = 99, worstText = '';
    for (const t of out.querySelectorAll(TEXT)) {
      if (!t.textContent.trim()) continue;
      const c = parse(getComputedStyle(t).fill);
      if (!c || c.a === 0) continue;
      const k = contrast(c, bg);
      if (k < worst) { worst = k; worstText = t.textContent.trim().slice(0, 40); }
    }
    let worstLine = 99;
    for (const l of out.querySelectorAll('.scatterlayer .js-line')) {
      const c = parse(getComputedStyle(l).stroke);
      if (c) worstLine = Math.min(worstLine, contrast(c, bg));
    }
    const svgBg = svg ? parse(svg.style.background || getComputedStyle(svg).backgroundColor) : null;
    const title = out.querySelector('.gtitle');
    return {
      title: title ? title.textContent.slice(0, 60) : '',
      width: Math.round(plot.width), height: Math.round(plot.height),
      outWidth: Math.round(box.width), outHeight: Math.round(box.height),
      transparent: !!svgBg && svgBg.a === 0,
      worstText: Math.round(worst * 100) / 100, worstTextIs: worstText,
      worstLine: Math.round(worstLine * 100) / 100,
      bg: [bg.r, bg.g, bg.b],
    };
  });
}
"""

# Elements inside the figure cells' outputs that scroll (an inner scroll box).
SCROLLERS_JS = """
() => [...document.querySelectorAll('.jp-Notebook .jp-Cell-outputArea')].flatMap((area) =>
  [area, ...area.querySelectorAll('*')].filter((e) => {
    const s = getComputedStyle(e);
    const scrolls = (o) => o === 'auto' || o === 'scroll';
    return (scrolls(s.overflowY) && e.scrollHeight > e.clientHeight + 1) ||
           (scrolls(s.overflowX) && e.scrollWidth > e.clientWidth + 1);
  }).map((e) => e.className.toString().slice(0, 80)))
"""


@dataclass
class Figures:
    """The figures notebook, run once for the module; the tests below read its page."""

    lab_page: LabPage
    measured: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outputs: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def page(self) -> Any:
        return self.lab_page.page


def _wait_figures(page: Any, n: int, timeout_ms: float = 90_000) -> None:
    page.wait_for_function(
        "(n) => document.querySelectorAll('.jp-Notebook .jp-RenderedPlotly .main-svg').length >= n",
        arg=n,
        timeout=timeout_ms,
    )
    time.sleep(1.0)  # plotly's second layout pass (automargin) settles


def _shot(page: Any, cell: int, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-Cell-outputArea")
    out.scroll_into_view_if_needed()
    path = ARTIFACTS / name
    out.screenshot(path=str(path), animations="disabled")
    return path


@pytest.fixture(scope="module")
def figures(browser: Any, lab: LabServer) -> Iterator[Figures]:
    write_notebook(lab.root / NAME, CELLS)
    fx = Figures(open_page(browser, lab, "figures"))
    page = fx.page
    try:
        page.set_viewport_size(TALL)
        open_notebook(page, lab.url, NAME)
        run_all(page)
        wait_kernel_idle(page, 120_000)
        _wait_figures(page, N_FIGURES)
        fx.outputs = cell_outputs(page)
        fx.measured["light"] = page.evaluate(MEASURE_JS)
        _shot(page, 1, "run-figures.png")
        _shot(page, 2, "compare.png")
        set_theme(page, "JupyterLab Dark")
        time.sleep(1.5)
        fx.measured["dark"] = page.evaluate(MEASURE_JS)
        _shot(page, 1, "run-figures-dark.png")
        set_theme(page, "JupyterLab Light")
    except BaseException:
        save_artifacts(fx.lab_page, lab, "figures-setup")
        page.context.close()
        raise
    yield fx
    page.context.close()
    lab.shutdown_kernels()


@pytest.fixture
def fx(figures: Figures, lab: LabServer, request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The shared figures page, saved as artifacts if the test using it fails."""
    yield figures
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print(f"browser artifacts: {save_artifacts(figures.lab_page, lab, request.node.name)}")


def test_every_figure_renders_at_full_size(fx: Figures) -> None:
    errors = [o for cell in fx.outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, [(e["ename"], e["evalue"]) for e in errors]
    figs = fx.measured["light"]
    print("figures (light):", *figs, sep="\n  ")
    assert len(figs) == N_FIGURES
    for f in figs:
        assert min(f["height"], f["outHeight"]) >= MIN_PLOT_PX, f  # the plot, and its place
        assert f["width"] >= f["outWidth"] - 2, f  # as wide as its output
        assert f["outWidth"] >= 700, f
    assert fx.page.evaluate(SCROLLERS_JS) == []  # no inner scroll box, compare() included
    assert not fx.lab_page.log.outside, f"requests left localhost: {fx.lab_page.log.outside}"
    assert not [c for c in fx.lab_page.log.console if "[pageerror]" in c]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_figures_follow_the_theme(fx: Figures, theme: str) -> None:
    figs = fx.measured[theme]
    print(f"figures ({theme}):", *figs, sep="\n  ")
    assert len(figs) == N_FIGURES
    dark = sum(figs[0]["bg"]) < 3 * 128
    assert dark == (theme == "dark"), figs[0]["bg"]  # the page behind the figures switched
    for f in figs:
        assert f["transparent"], f  # the page's own background shows through
        assert f["worstText"] >= 3.0, f
        assert f["worstLine"] >= 2.0, f
        # a theme change collapses no output (plotly's `responsive` did: the plot stayed 460 px
        # tall while its output, the space it holds in the notebook, went to 0)
        assert min(f["height"], f["outHeight"]) >= MIN_PLOT_PX, f


def test_compare_leads_with_the_headline_then_its_figures(fx: Figures) -> None:
    cell = fx.outputs[2]
    head, *rest = cell
    html = "".join(head["data"]["text/html"])
    for name in ("decode J/token", "prefill J/prompt token", "decode tokens/s", "total energy"):
        assert f"<th>{name}</th>" in html
    assert "max_new_tokens=40" in html
    assert "max_new_tokens=60" in html
    figs = [o for o in rest if PLOTLY_MIME in o.get("data", {})]
    assert len(figs) == 4
    ticks = fx.page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".ytick text")
    assert "max_new_tokens=40" in ticks.all_text_contents()  # runs read by what differs


def _save_and_read(page: Any, path: Path) -> dict[str, Any]:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    return dict(json.loads(path.read_text()))


def _figure_outputs(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        o
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if PLOTLY_MIME in o.get("data", {})
    ]


def test_saved_notebook_plotlyjs_once_and_small_outputs_after_a_rerun(
    fx: Figures, lab: LabServer
) -> None:
    page = fx.page
    # wait for the PNG JupyterLab's plotly extension stores in each output it drew
    page.wait_for_function(
        """(n) => window.jupyterapp.shell.currentWidget.content.widgets
             .filter((c) => c.model.type === 'code')
             .flatMap((c) => c.model.outputs.toJSON())
             .filter((o) => o.data && o.data['image/png']).length >= n""",
        arg=N_FIGURES,
        timeout=60_000,
    )
    # run the cell holding plotly.js again, and show a plain plotly figure in a new cell
    page.evaluate(
        """() => {
          const panel = window.jupyterapp.shell.currentWidget;
          const nb = panel.content;
          nb.model.sharedModel.insertCell(3, { cell_type: 'code', source: 'run.figures.sankey()' });
          nb.activeCellIndex = 1;
          window.jupyterapp.commands.execute('notebook:run-cell');
        }"""
    )
    wait_kernel_idle(page, 60_000)
    page.evaluate(
        """() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 3;
                   window.jupyterapp.commands.execute('notebook:run-cell'); }"""
    )
    wait_kernel_idle(page, 60_000)
    _wait_figures(page, N_FIGURES + 1)
    page.wait_for_function(
        """(n) => window.jupyterapp.shell.currentWidget.content.widgets
             .flatMap((c) => c.model.type === 'code' ? c.model.outputs.toJSON() : [])
             .filter((o) => o.data && o.data['image/png']).length >= n""",
        arg=N_FIGURES + 1,
        timeout=60_000,
    )
    nb = _save_and_read(page, lab.root / NAME)
    text = json.dumps(nb)
    assert text.count(PLOTLYJS_MARKER) == 1
    holders = [
        i for i, c in enumerate(nb["cells"]) if PLOTLYJS_MARKER in json.dumps(c.get("outputs", []))
    ]
    assert holders == [1]  # the re-run cell carries it again; the plain figure added none
    sizes = [len(json.dumps(o, indent=1)) for o in _figure_outputs(nb)]
    print("saved figure output bytes (with Lab's PNG):", sizes)
    assert len(sizes) == N_FIGURES + 1
    assert max(sizes) <= MAX_FIGURE_OUTPUT_BYTES
    assert all("image/png" in o["data"] for o in _figure_outputs(nb))
    shutil.copy(lab.root / NAME, ARTIFACTS / "figures-saved.ipynb")


def test_reopened_untrusted_notebook_renders_without_running(
    fx: Figures, lab: LabServer, pages: Any
) -> None:
    saved = lab.root / NAME
    assert PLOTLYJS_MARKER in saved.read_text(), "run the save test first (module order)"
    # as a colleague receives it: edited elsewhere, so its signature no longer matches and
    # JupyterLab opens it untrusted (no script in any HTML output runs)
    nb = json.loads(saved.read_text())
    nb["cells"][0]["source"] = "# received from a colleague\n" + "".join(nb["cells"][0]["source"])
    reopened = lab.root / "figures-reopened.ipynb"
    reopened.write_text(json.dumps(nb, indent=1))
    p = pages.new("reopened")
    p.page.set_viewport_size(TALL)
    open_notebook(p.page, lab.url, reopened.name)
    trusted = p.page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
             .filter((c) => c.model.type === 'code').map((c) => c.model.trusted)"""
    )
    assert trusted == [False] * len(trusted), trusted
    assert trusted, trusted
    p.page.wait_for_function(
        "(n) => [...document.querySelectorAll('.jp-Notebook .jp-RenderedPlotly')]"
        ".filter((o) => o.getBoundingClientRect().height >= 300).length >= n",
        arg=N_FIGURES + 1,
        timeout=60_000,
    )
    shown = p.page.evaluate(
        """() => [...document.querySelectorAll('.jp-Notebook .jp-RenderedPlotly')].map((o) => {
             const img = o.querySelector('img.plot-img');
             const drawn = !!o.querySelector('.main-svg') ||
                           (img && img.style.display !== 'none' && img.naturalWidth > 0);
             return { h: Math.round(o.getBoundingClientRect().height), drawn };
           })"""
    )
    assert len(shown) == N_FIGURES + 1, shown
    assert all(s["drawn"] and s["h"] >= 300 for s in shown), shown


def test_nbconvert_html_draws_every_figure_offline(fx: Figures, lab: LabServer, pages: Any) -> None:
    saved = lab.root / NAME
    assert PLOTLYJS_MARKER in saved.read_text(), "run the save test first (module order)"
    out = lab.state / "figures.html"
    subprocess.run(
        [str(JUPYTER), "nbconvert", "--to", "html", str(saved), "--output", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.read_text().count(PLOTLYJS_MARKER) == 1
    p = pages.new("nbconvert")
    p.page.goto(out.as_uri())
    p.page.wait_for_function(
        "(n) => document.querySelectorAll('.lew-figure .main-svg').length >= n",
        arg=N_FIGURES,
        timeout=60_000,
    )
    figs = p.page.evaluate(
        """() => [...document.querySelectorAll('.lew-figure')].map((d) => {
             const svg = d.querySelector('.main-svg');
             const out = d.closest('.jp-OutputArea-output') || d.parentElement;
             const s = getComputedStyle(out);
             const pad = parseFloat(s.paddingLeft) + parseFloat(s.paddingRight);
             return { w: svg ? Math.round(svg.getBoundingClientRect().width) : 0,
                      h: svg ? Math.round(svg.getBoundingClientRect().height) : 0,
                      outW: Math.round(out.getBoundingClientRect().width - pad),
                      text: d.textContent.slice(0, 80) };
           })"""
    )
    print("nbconvert figures:", *figs, sep="\n  ")
    assert len(figs) == N_FIGURES  # the plain plotly figure is plotly's own HTML, not ours
    for f in figs:
        assert f["h"] >= MIN_PLOT_PX, f
        assert f["w"] >= f["outW"] - 2, f
        assert "needs plotly.js" not in f["text"], f
    # the template's own require.js and MathJax are refused (offline); nothing of plotly's
    assert not [u for u in p.log.outside if "plotly" in u], p.log.outside
    p.page.screenshot(path=str(ARTIFACTS / "figures-nbconvert.png"))


def test_docs_screenshots(fx: Figures) -> None:
    """Copy the screenshots to docs/screenshots/ (LLM_ENERGY_UPDATE_SCREENSHOTS=1 only)."""
    if os.environ.get("LLM_ENERGY_UPDATE_SCREENSHOTS") != "1":
        pytest.skip("set LLM_ENERGY_UPDATE_SCREENSHOTS=1 to update docs/screenshots/")
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("run-figures.png", "run-figures-dark.png", "compare.png"):
        src = ARTIFACTS / name
        size = src.stat().st_size
        assert size < MAX_DOC_PNG_BYTES, f"{name} is {size} bytes"
        shutil.copy(src, DOCS_SHOTS / name)
