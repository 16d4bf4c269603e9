"""Fixtures for the browser tests: one JupyterLab server and one Chromium per module, a page per
test with its console, dialogs and outside requests recorded, and artifacts saved on failure."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.lab import ARTIFACTS, REPO, LabServer, write_notebook

playwright_sync = pytest.importorskip("playwright.sync_api")

VIEWPORT = {"width": 1280, "height": 1500}

# JupyterLab settings for the server under test (its own settings dir): every cell stays in the
# DOM (no windowing, so a widget scrolled out of view keeps rendering), no news/update toasts.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

MODEL_CELL = (
    "import llm_energy_widget as lew\n"
    "model, tokenizer = lew.load_default_model()\n"
    'profiler = lew.EnergyProfiler(model, tokenizer, level="component")\n'
    "w = profiler.widget()\n"
    "w"
)


def generate_cell(n_tokens: int) -> str:
    return (
        "run = profiler.generate(\n"
        '    "Tell a very long story about a lighthouse keeper and the sea.",\n'
        f"    max_new_tokens={n_tokens}, min_new_tokens={n_tokens}, do_sample=False,\n"
        ")"
    )


# The kernel stays idle while the run generates on its thread, so the Stop message is handled.
STOP_NOTEBOOK = [MODEL_CELL, generate_cell(400)]
# The quickstart's pattern: a cell blocks in run.wait() while the run generates.
STOP_WHILE_WAITING_NOTEBOOK = [MODEL_CELL, generate_cell(400), "run.wait()\nprint(run.status)"]

XSS_TEXTS = ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>"]
XSS_NOTEBOOK = [
    "from llm_energy_widget.testing import synthetic_run\n"
    f"XSS = {XSS_TEXTS!r}\n"
    "run = synthetic_run(n_tokens=6, texts=XSS)\n"
    "run.widget()",
    # The static fallback (what nbviewer/GitHub show), rendered as trusted HTML: it must escape too.
    'from IPython.display import HTML\nHTML(run.widget()._repr_mimebundle_()[0]["text/html"])',
    # A positive control, queued after the outputs above: trusted HTML here does run handlers, and
    # an <img src=x> fails its load. When it has fired, any handler above would have fired too.
    'HTML(\'<img src="x?control" onerror="window.__lewControl = 1" style="display:none">\')',
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on localhost with a temporary root holding the quickstart and test notebooks."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make browser)")
    shutil.rmtree(ARTIFACTS / "failures", ignore_errors=True)  # no stale failures from past runs
    root = tmp_path_factory.mktemp("lab-root")
    state = tmp_path_factory.mktemp("lab-state")
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root / "quickstart.ipynb")
    write_notebook(root / "stop.ipynb", STOP_NOTEBOOK)
    write_notebook(root / "stop-while-waiting.ipynb", STOP_WHILE_WAITING_NOTEBOOK)
    write_notebook(root / "xss.ipynb", XSS_NOTEBOOK)
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


@pytest.fixture(scope="module")
def browser(lab: LabServer) -> Iterator[Any]:
    pw = playwright_sync.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@dataclass
class PageLog:
    """What a page did besides rendering: console lines, dialogs, requests leaving localhost."""

    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@dataclass
class LabPage:
    page: Any
    log: PageLog
    name: str


def open_page(browser: Any, lab: LabServer, name: str) -> LabPage:
    """A fresh browser context: offline (only the lab server answers), everything recorded."""
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    log = PageLog()
    page.on("console", lambda m: log.console.append(f"[{m.type}] {m.text}"))
    page.on("pageerror", lambda e: log.console.append(f"[pageerror] {e}"))

    def on_dialog(d: Any) -> None:
        log.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)

    def route(r: Any) -> None:
        url = r.request.url
        log.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1":
            log.outside.append(url)
            r.abort()
        else:
            r.continue_()

    ctx.route("**/*", route)
    page.set_default_timeout(30_000)
    return LabPage(page=page, log=log, name=name)


def save_artifacts(lab_page: LabPage, lab: LabServer, test_name: str) -> Path:
    """Screenshot, console log, widget probe and the server log, for a failed test."""
    out = ARTIFACTS / "failures" / test_name
    out.mkdir(parents=True, exist_ok=True)
    page = lab_page.page
    try:
        page.screenshot(path=str(out / f"{lab_page.name}.png"), full_page=True)
    except Exception as e:  # the page may be gone; keep the rest
        (out / f"{lab_page.name}.screenshot-error.txt").write_text(repr(e))
    log = lab_page.log
    (out / f"{lab_page.name}.console.log").write_text("\n".join(log.console))
    (out / f"{lab_page.name}.dialogs.log").write_text("\n".join(log.dialogs))
    (out / f"{lab_page.name}.outside-requests.log").write_text("\n".join(log.outside))
    try:
        probe = page.evaluate(
            "() => window.__lew ? {samples: __lew.samples, frames: __lew.frames} : null"
        )
        (out / f"{lab_page.name}.probe.json").write_text(json.dumps(probe))
    except Exception:
        pass
    (out / "jupyter-lab.log").write_text(lab.log_tail(200_000))
    return out


class Pages:
    """Pages opened during a test; each is closed after it, and saved first if the test failed."""

    def __init__(self, browser: Any, lab: LabServer) -> None:
        self.browser = browser
        self.lab = lab
        self.open: list[LabPage] = []

    def new(self, name: str) -> LabPage:
        p = open_page(self.browser, self.lab, name)
        self.open.append(p)
        return p


@pytest.fixture
def pages(browser: Any, lab: LabServer, request: pytest.FixtureRequest) -> Iterator[Pages]:
    ps = Pages(browser, lab)
    yield ps
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for p in ps.open:
        if failed:
            where = save_artifacts(p, lab, request.node.name)
            print(f"browser artifacts: {where}")
        p.page.context.close()
    lab.shutdown_kernels()  # a generation left running would steal the CPU from the next test
