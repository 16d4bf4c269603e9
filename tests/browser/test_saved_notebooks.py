"""Results survive saving and sharing (issue 10): the quickstart and a second profiled prompt run in
JupyterLab, saved, then opened every way a notebook is read.

(a) JupyterLab, default settings, reopened (a fresh kernel, no widget models in it): the file as
    JupyterLab saved it (signed, so trusted: the interactive view renders from the output's own
    data) and the same file as shared with someone else (untrusted: the sanitized static part);
(b) saved with "save widget state" on;
(c) `jupyter nbconvert --to html`, opened offline;
(d) a viewer that renders only image/png, text/plain and sanitized HTML, JavaScript off (GitHub,
    nbviewer, many others);
(e) VS Code saves no widget state, so it reads the file of (a): checked as such a file, and its
    HTML outputs rendered the way VS Code's renderer does (inserted, scripts run, no widget
    manager);
(f) executed headless by nbclient (what `make demo`, `jupyter nbconvert --execute` and papermill
    do; no browser ever renders it): the saved outputs carry the image and the numbers.

Each case asserts each profiled cell shows its own run, with numbers and their kinds, and never
"Error displaying widget". Run with `PYTHONPATH=$PWD flock /tmp/lew-browser.lock ...`.
Screenshots: test-artifacts/browser/saved-*.png; with LLM_ENERGY_UPDATE_SCREENSHOTS=1 also
docs/screenshots/saved-lab-default.png, saved-nbconvert.png, saved-static-viewer.png.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

if TYPE_CHECKING:  # mypy's `conftest` is tests/conftest.py; pytest's, here, is this folder's
    from browser.conftest import LAB_SETTINGS, LabPage, Pages, open_page, save_artifacts
else:
    from conftest import LAB_SETTINGS, LabPage, Pages, open_page, save_artifacts
from support.lab import ARTIFACTS, JUPYTER, REPO, LabServer, code_cell, wait_until
from support.lab_page import cell_outputs, open_notebook, outputs_text, run_all, wait_kernel_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DOCS_SHOTS = REPO / "docs" / "screenshots"
MAX_SHOT_BYTES = 400_000
RUN_TOKENS = 14  # short runs: the browser suite shares two cores
SECOND_PROMPT = "Name three colours of a sunset."
RUN_MS = 300_000
KINDS = ("measured", "estimated", "modeled")


RANGE = r"(?:\([^)]*±[^)]*\)\s*)?"  # an estimate's range (low–high, ±50 %), when there is one
DECODE_JPT_ROW = r"decode J/token\s+[\d.]+ (µJ|mJ|J)\s+" + RANGE + r"(measured|estimated)"
TOTAL_ROW = r"total energy\s+[\d.]+ (µJ|mJ|J|kJ)\s+" + RANGE + r"(measured|estimated)"
DECODE_JPT_TEXT = r"decode J/token: [\d.]+ (µJ|mJ|J) " + RANGE + r"\((measured|estimated)"


def _notebook_cells() -> list[dict[str, Any]]:
    """notebooks/quickstart.ipynb with shorter runs, then a second profiled prompt."""
    nb = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    cells = []
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        src = src.replace("max_new_tokens=48", f"max_new_tokens={RUN_TOKENS}")
        cell = {**c, "source": src}
        if c["cell_type"] == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    assert any(f"max_new_tokens={RUN_TOKENS}" in c["source"] for c in cells)

    cells += [
        {"cell_type": "markdown", "metadata": {}, "source": "A second prompt, profiled too."},
        code_cell(
            f"run2 = profiler.generate({SECOND_PROMPT!r}, max_new_tokens={RUN_TOKENS},"
            " do_sample=False)\nrun2"
        ),
        code_cell("run2.wait()\nprint('RUNS', run.run_id, run2.run_id, run2.status)"),
    ]
    for c in cells:
        c.pop("id", None)
    return cells


def _write(path: Path, cells: list[dict[str, Any]]) -> None:
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    path.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on localhost (this module's own: its notebooks, default widget settings)."""
    from support.browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make browser)")
    root = tmp_path_factory.mktemp("saved-root")
    state = tmp_path_factory.mktemp("saved-state")
    _write(root / "saved.ipynb", _notebook_cells())
    for rel, value in LAB_SETTINGS.items():
        path = state / "lab-settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    server = LabServer(root=root, state=state)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.leftovers() == [], f"processes left running: {server.leftovers()}"


@dataclass
class Saved:
    """The notebook as executed in JupyterLab, and the files saved from it."""

    root: Path
    run_ids: tuple[str, str]
    default: Path  # saved with default settings (no widget state)
    with_state: Path  # saved with "save widget state" on
    shared: Path  # the default file as someone else receives it (unsigned: untrusted)
    live_outputs: list[list[dict[str, Any]]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def profiled(self, nb: dict[str, Any]) -> list[tuple[int, dict[str, Any], str]]:
        """(cell index, output, run id it must show) for every output showing a run."""
        want = {
            "w = profiler.widget()": self.run_ids[0],
            "run = profiler.generate(": self.run_ids[0],
            "run2 = profiler.generate(": self.run_ids[1],
        }
        out = []
        for i, c in enumerate(nb["cells"]):
            src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for key, run_id in want.items():
                if key in src:
                    shown = [o for o in c["outputs"] if "data" in o]
                    assert len(shown) == 1, (src, [sorted(o.get("data", {})) for o in shown])
                    out.append((i, shown[0], run_id))
        assert len(out) == 3
        return out


def _saved_ok(path: Path, run_ids: tuple[str, str], widget_state: bool) -> bool:
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    text = json.dumps(nb["cells"])
    has_state = "widgets" in nb.get("metadata", {})
    return all(r in text for r in run_ids) and has_state == widget_state


def _save(page: Any, path: Path, run_ids: tuple[str, str], widget_state: bool) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    wait_until(lambda: _saved_ok(path, run_ids, widget_state), 60, f"{path.name} saved")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )


def _toggle_save_state(page: Any, want: bool) -> None:
    cmd = "@jupyter-widgets/jupyterlab-manager:saveWidgetState"
    page.evaluate(
        """async ([cmd, want]) => {
          const c = window.jupyterapp.commands;
          if (c.isToggled(cmd) !== want) await c.execute(cmd);
        }""",
        [cmd, want],
    )
    page.wait_for_function(
        "([cmd, want]) => window.jupyterapp.commands.isToggled(cmd) === want",
        arg=[cmd, want],
        timeout=15_000,
    )


@pytest.fixture(scope="module")
def saved(browser: Any, lab: LabServer) -> Saved:
    lp = open_page(browser, lab, "saved-execute")
    page = lp.page
    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        open_notebook(page, lab.url, "saved.ipynb")
        run_all(page)
        wait_kernel_idle(page, RUN_MS)
        seconds["executed"] = time.monotonic() - t0

        def final() -> list[list[dict[str, Any]]] | None:
            outs = cell_outputs(page)
            views = [o for c in outs for o in c if WIDGET_VIEW in o.get("data", {})]
            return None if views else outs

        outputs = wait_until(final, 60, "every output to hold its run's final bundle")
        errors = [o for c in outputs for o in c if o.get("output_type") == "error"]
        assert not errors, [(e["ename"], e["evalue"]) for e in errors]
        m = re.search(r"RUNS (\w{12}) (\w{12}) (\w+)", outputs_text(outputs))
        assert m, outputs_text(outputs)[-2000:]
        assert m.group(3) == "completed", outputs_text(outputs)[-2000:]
        run_ids = (m.group(1), m.group(2))
        src = lab.root / "saved.ipynb"
        _save(page, src, run_ids, widget_state=False)
        default = lab.root / "default.ipynb"
        shutil.copy(src, default)
        _toggle_save_state(page, True)
        _save(page, src, run_ids, widget_state=True)
        with_state = lab.root / "state.ipynb"
        shutil.copy(src, with_state)
        _toggle_save_state(page, False)
        seconds["saved"] = time.monotonic() - t0
        shared = lab.root / "shared.ipynb"
        nb = json.loads(default.read_text())
        nb["metadata"]["shared_by"] = "a colleague"  # any change: the signature no longer holds
        shared.write_text(json.dumps(nb, indent=1))
    except BaseException:
        save_artifacts(lp, lab, "saved-execute")
        page.context.close()
        raise
    page.context.close()
    lab.shutdown_kernels()
    sizes = {p.name: p.stat().st_size for p in (default, with_state)}
    print(f"saved notebooks (s): {seconds}; sizes (bytes): {sizes}")
    return Saved(lab.root, run_ids, default, with_state, shared, outputs, seconds)


def _reopen(pages: Pages, lab: LabServer, name: str) -> LabPage:
    lp = pages.new(f"reopen-{name}")
    open_notebook(lp.page, lab.url, name)
    lp.page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .lew-saved').length === 3",
        timeout=60_000,
    )
    return lp


# -- checks shared by the cases --------------------------------------------------------------------

ROOTS_JS = """() => [...document.querySelectorAll('.lew-saved')].map((box) => ({
  run: box.dataset.lewRun,
  rendered: box.dataset.lewRendered || null,
  text: box.innerText,
  staticShown: !box.querySelector('.lew-saved-static').hidden,
  images: [...box.querySelectorAll('img.lew-saved-image')].map((i) => ({
    complete: i.complete, width: i.naturalWidth, height: i.naturalHeight })),
  tokens: box.querySelectorAll('.lew-tok').length,
  cards: [...box.querySelectorAll('.lew-card')].map((c) => c.innerText),
  canvases: [...box.querySelectorAll('.lew-root canvas')].map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 16) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
  }),
}))"""


def _boxes(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate(ROOTS_JS))


def _no_widget_errors(page: Any) -> None:
    text = page.locator("body").inner_text()
    for bad in ("Error displaying widget", "model not found", "Failed to load model"):
        assert bad not in text, bad


def _check_interactive(box: dict[str, Any], run_id: str) -> None:
    """The widget's own views rendered from the output's data: charts drawn, numbers, kinds."""
    assert box["run"] == run_id, box["rendered"]
    assert box["rendered"] == "1", box["rendered"]
    assert not box["staticShown"]
    assert len(box["canvases"]) >= 2, box["canvases"]
    assert min(box["canvases"]) >= 8, box["canvases"]
    assert box["tokens"] == RUN_TOKENS
    headline = next(c for c in box["cards"] if c.startswith("decode J/token"))
    assert re.search(r"[\d.]+ (µJ|mJ|J)", headline), headline
    assert any(k in headline for k in KINDS), headline
    assert run_id in box["text"]


def _check_static(box: dict[str, Any], run_id: str) -> None:
    """The sanitized part: the kernel's image decoded, the figures and their kinds as text (the
    sanitizer drops data-* attributes: the run is read from the text)."""
    assert box["staticShown"]
    assert box["images"]
    assert all(i["complete"] and i["width"] > 0 for i in box["images"])
    text = box["text"]
    assert run_id in text
    assert re.search(DECODE_JPT_ROW, text), text
    assert re.search(r"decode tokens/s\s+[\d.]+\s+measured", text), text


def _shot(target: Any, name: str) -> Path:
    """A screenshot of `target` (a locator), as a 256-colour PNG; copied to docs/screenshots/
    with LLM_ENERGY_UPDATE_SCREENSHOTS=1."""
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.scroll_into_view_if_needed()
    target.screenshot(path=str(path), animations="disabled")
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    if os.environ.get("LLM_ENERGY_UPDATE_SCREENSHOTS") == "1":
        assert path.stat().st_size < MAX_SHOT_BYTES, f"{name} is {path.stat().st_size} bytes"
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / name)
    return path


def _shot_cells(page: Any, name: str) -> None:
    """The first profiled cell (the profiler's widget) with its saved output."""
    cell = page.locator(".jp-Notebook .jp-CodeCell", has=page.locator(".lew-saved")).first
    _shot(cell, name)


# -- (a) ---------------------------------------------------------------------------------------


def test_a_reopened_in_jupyterlab_each_cell_shows_its_own_run(
    saved: Saved, pages: Pages, lab: LabServer
) -> None:
    nb = json.loads(saved.default.read_text())
    assert "widgets" not in nb["metadata"], "default settings save no widget state"
    lp = _reopen(pages, lab, saved.default.name)
    page = lp.page
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .lew-saved')]"
        ".every((b) => b.dataset.lewRendered)",
        timeout=30_000,
    )
    boxes = _boxes(page)
    for box, (_cell, _out, run_id) in zip(boxes, saved.profiled(nb), strict=True):
        _check_interactive(box, run_id)
    _no_widget_errors(page)
    assert not lp.log.outside, lp.log.outside
    _shot_cells(page, "saved-lab-default.png")


def test_a_shared_copy_untrusted_shows_the_sanitized_figures(
    saved: Saved, pages: Pages, lab: LabServer
) -> None:
    nb = json.loads(saved.shared.read_text())
    lp = _reopen(pages, lab, saved.shared.name)
    page = lp.page
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook img.lew-saved-image')]"
        ".every((i) => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    assert page.locator(".jp-Notebook .lew-saved script").count() == 0, "scripts sanitized away"
    for box, (_cell, _out, run_id) in zip(_boxes(page), saved.profiled(nb), strict=True):
        _check_static(box, run_id)
        assert box["rendered"] is None
        assert box["tokens"] == 0
    _no_widget_errors(page)
    _shot_cells(page, "saved-lab-untrusted.png")


# -- (b) ---------------------------------------------------------------------------------------


def test_b_saved_with_widget_state_each_cell_shows_its_own_run(
    saved: Saved, pages: Pages, lab: LabServer
) -> None:
    nb = json.loads(saved.with_state.read_text())
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state, "the setting saved the widget models"
    lp = _reopen(pages, lab, saved.with_state.name)
    page = lp.page
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .lew-saved')]"
        ".every((b) => b.dataset.lewRendered)",
        timeout=30_000,
    )
    for box, (_cell, _out, run_id) in zip(_boxes(page), saved.profiled(nb), strict=True):
        _check_interactive(box, run_id)
    _no_widget_errors(page)


# -- (c) ---------------------------------------------------------------------------------------


def _offline_context(browser: Any, **kw: Any) -> tuple[Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1400}, **kw)
    asked: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            asked.append(url)
            r.abort()

    ctx.route("**/*", route)
    return ctx, asked


def test_c_nbconvert_html_offline_shows_each_run_with_numbers(
    saved: Saved, browser: Any, tmp_path: Path
) -> None:
    out = subprocess.run(
        [
            str(JUPYTER),
            "nbconvert",
            "--to",
            "html",
            str(saved.default),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    page_path = tmp_path / "default.html"
    ctx, asked = _offline_context(browser)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(page_path.as_uri())
        page.wait_for_function(
            "() => [...document.querySelectorAll('.lew-saved')].length === 3 &&"
            " [...document.querySelectorAll('.lew-saved')].every((b) => b.dataset.lewRendered)",
            timeout=30_000,
        )
        nb = json.loads(saved.default.read_text())
        for box, (_cell, _out, run_id) in zip(_boxes(page), saved.profiled(nb), strict=True):
            _check_interactive(box, run_id)
        _no_widget_errors(page)
        assert not [e for e in errors if "lew" in e.lower()], errors
        _shot(page.locator(".jp-Cell", has=page.locator(".lew-saved")).first, "saved-nbconvert.png")
    finally:
        ctx.close()
    print(f"nbconvert page: {page_path.stat().st_size:,} bytes; outside requests aborted: {asked}")


# -- (d) ---------------------------------------------------------------------------------------


class Sanitizer(HTMLParser):
    """What GitHub-like viewers keep of an output's HTML: no script, style, iframe, svg, object or
    embed (their content dropped too), no event attributes, no javascript: URLs."""

    DROP: ClassVar[set[str]] = {
        "script",
        "style",
        "iframe",
        "svg",
        "object",
        "embed",
        "math",
        "template",
    }
    VOID: ClassVar[set[str]] = {
        "img",
        "br",
        "hr",
        "input",
        "meta",
        "link",
        "source",
        "col",
        "area",
        "wbr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.DROP:
            self.skip += tag not in self.VOID
            return
        if self.skip:
            return
        kept = []
        for k, v in attrs:
            if k.startswith("on") or k in ("style", "srcdoc"):
                continue
            if v is not None and re.match(r"\s*javascript:", v, re.I):
                continue
            kept.append(f' {k}="{html.escape(v or "", quote=True)}"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.DROP:
            self.skip = max(0, self.skip - 1)
            return
        if not self.skip and tag not in self.VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(html.escape(data, quote=False))

    def handle_entityref(self, name: str) -> None:
        if not self.skip:
            self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        if not self.skip:
            self.out.append(f"&#{name};")


def sanitize(fragment: str) -> str:
    s = Sanitizer()
    s.feed(fragment)
    s.close()
    return "".join(s.out)


def static_viewer_page(nb: dict[str, Any]) -> str:
    """Each output as such a viewer shows it: sanitized HTML, else the PNG, else plain text."""
    parts = [
        '<!doctype html><html><head><meta charset="utf-8"><style>'
        "body{font:14px sans-serif;max-width:1000px;margin:16px}pre{white-space:pre-wrap}"
        "section{border-top:1px solid #ddd;padding:8px 0}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:2px 6px}</style></head><body>"
    ]
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        parts.append(f'<section class="cell" data-cell="{i}">')
        for o in c.get("outputs", []):
            data = o.get("data", {})

            def text(k: str, data: dict[str, Any] = data) -> str:
                v = data[k]
                return "".join(v) if isinstance(v, list) else v

            if "text/html" in data:
                parts.append(f'<div class="output html">{sanitize(text("text/html"))}</div>')
            elif "image/png" in data:
                parts.append(
                    f'<img class="output png" src="data:image/png;base64,{text("image/png")}">'
                )
            elif "text/plain" in data:
                parts.append(f'<pre class="output">{html.escape(text("text/plain"))}</pre>')
            elif o.get("output_type") == "stream":
                parts.append(f'<pre class="output">{html.escape("".join(o["text"]))}</pre>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def test_d_a_sanitizing_viewer_shows_each_runs_charts_and_figures(
    saved: Saved, browser: Any, tmp_path: Path
) -> None:
    nb = json.loads(saved.default.read_text())
    page_html = static_viewer_page(nb)
    assert "<script" not in page_html
    assert "<svg" not in page_html
    assert " onerror" not in page_html
    path = tmp_path / "viewer.html"
    path.write_text(page_html)
    ctx, asked = _offline_context(browser, java_script_enabled=False)
    page = ctx.new_page()
    try:
        page.goto(path.as_uri())
        for cell, out, run_id in saved.profiled(nb):
            section = page.locator(f'section[data-cell="{cell}"]')
            img = section.locator("img")
            assert img.count() == 1
            size = img.evaluate("(i) => [i.complete, i.naturalWidth, i.naturalHeight]")
            assert size[0], size
            assert size[1] > 0, size
            assert size[2] > 0, size
            shown = section.inner_text()
            assert run_id in shown
            assert re.search(
                DECODE_JPT_ROW,
                shown,
            )
            assert re.search(
                TOTAL_ROW,
                shown,
            )
            # the image itself is the kernel's PNG: the same one the bundle's image/png holds
            png = "".join(out["data"]["image/png"])
            assert base64.b64decode(png)[:4] == b"\x89PNG"
            assert png in "".join(out["data"]["text/html"])
            plain = "".join(out["data"]["text/plain"])
            assert re.search(
                DECODE_JPT_TEXT,
                plain,
            )
        assert asked == []
        first = saved.profiled(nb)[0][0]
        _shot(page.locator(f'section[data-cell="{first}"]'), "saved-static-viewer.png")
    finally:
        ctx.close()


# -- (e) ---------------------------------------------------------------------------------------

VSCODE_LIKE_JS = """(fragments) => {
  // VS Code's HTML renderer: the output's HTML into its own element, scripts re-created so they
  // run; no widget manager, no JupyterLab.
  for (const f of fragments) {
    const el = document.createElement('div');
    el.className = 'vscode-output';
    document.body.appendChild(el);
    el.innerHTML = f;
    for (const old of [...el.querySelectorAll('script')]) {
      const s = document.createElement('script');
      for (const a of old.attributes) s.setAttribute(a.name, a.value);
      s.textContent = old.textContent;
      old.replaceWith(s);
    }
  }
}"""


def test_e_vscode_reads_the_file_without_widget_state(
    saved: Saved, browser: Any, tmp_path: Path
) -> None:
    """VS Code never saves widget state: it reads the (a) file, whose outputs need none."""
    nb = json.loads(saved.default.read_text())
    assert "widgets" not in nb["metadata"]
    text = json.dumps(nb)
    assert WIDGET_VIEW not in text, "no output of a finished run holds the widget view"
    profiled = saved.profiled(nb)
    for _cell, out, _run in profiled:
        assert set(out["data"]) == {"image/png", "text/plain", "text/html"}
    path = tmp_path / "vscode.html"
    path.write_text('<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>')
    ctx, asked = _offline_context(browser)
    page = ctx.new_page()
    try:
        page.goto(path.as_uri())
        page.evaluate(VSCODE_LIKE_JS, ["".join(o["data"]["text/html"]) for _c, o, _r in profiled])
        page.wait_for_function(
            "() => [...document.querySelectorAll('.lew-saved')]"
            ".every((b) => b.dataset.lewRendered)",
            timeout=30_000,
        )
        for box, (_cell, _out, run_id) in zip(_boxes(page), profiled, strict=True):
            _check_interactive(box, run_id)
        assert asked == []
    finally:
        ctx.close()


# -- (f) ---------------------------------------------------------------------------------------


def test_f_executed_headless_the_saved_outputs_carry_images_and_numbers(tmp_path: Path) -> None:
    """nbclient, as `make demo`, `nbconvert --execute` and papermill run notebooks: no frontend
    renders anything, yet each run's final bundle, made in the kernel, is in the saved file."""
    import nbformat

    from llm_energy_widget.notebook.execute import execute_notebook

    src = tmp_path / "headless.ipynb"
    _write(src, _notebook_cells())
    data_dir = tmp_path / "jupyter-data"  # the signature store: not the user's
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "JUPYTER_DATA_DIR": str(data_dir),
    }
    dest = tmp_path / "out" / "headless.ipynb"
    t0 = time.monotonic()
    code = (
        "import sys; from llm_energy_widget.notebook.execute import execute_notebook; "
        f"execute_notebook({str(src)!r}, {str(dest)!r}, cwd={str(tmp_path)!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert callable(execute_notebook)  # the function `make demo` uses
    nb = nbformat.read(dest, as_version=4)
    from nbformat.sign import NotebookNotary

    assert NotebookNotary(data_dir=str(data_dir)).check_signature(nb), "signed: opens trusted"
    assert "widgets" not in nb.metadata, "no widget state: no output needs it"
    text = json.dumps(nb)
    assert WIDGET_VIEW not in text
    m = re.search(r"RUNS (\w{12}) (\w{12}) completed", text)
    assert m, text[-2000:]
    run_ids = (m.group(1), m.group(2))
    fake = Saved(tmp_path, run_ids, dest, dest, dest)
    for _cell, o, run_id in fake.profiled(json.loads(dest.read_text())):
        data = {k: "".join(v) if isinstance(v, list) else v for k, v in o["data"].items()}
        assert set(data) == {"image/png", "text/plain", "text/html"}
        png = base64.b64decode(data["image/png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") > 0
        assert run_id in data["text/plain"]
        assert run_id in data["text/html"]
        figure = DECODE_JPT_TEXT
        assert re.search(figure, data["text/plain"]), data["text/plain"]
        assert data["image/png"] in data["text/html"]
    print(f"headless execution: {time.monotonic() - t0:.0f} s, {dest.stat().st_size:,} bytes")
