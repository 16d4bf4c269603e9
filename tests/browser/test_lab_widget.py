"""The widget in a real JupyterLab, driven by Chromium: the quickstart live, Stop, an XSS token.

Run: .venv/bin/python -m pytest tests/browser -q   (about 3 minutes here; needs /usr/bin/chromium)
Screenshots land in test-artifacts/browser/; failures add a screenshot, the console log, the
widget probe and the server log under test-artifacts/browser/failures/<test>/. With
LLM_ENERGY_UPDATE_SCREENSHOTS=1 the quickstart screenshots are also copied to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # mypy's `conftest` is tests/conftest.py; pytest's, here, is this folder's
    from browser.conftest import XSS_TEXTS, LabPage, Pages, open_page, save_artifacts
else:
    from conftest import XSS_TEXTS, LabPage, Pages, open_page, save_artifacts
from playwright.sync_api import expect
from support.lab import ARTIFACTS, REPO, LabServer
from support.lab_page import (
    canvas_colour_count,
    cell_outputs,
    hide_toasts,
    install_probe,
    open_notebook,
    outputs_text,
    probe_data,
    run_all,
    run_code,
    set_theme,
    stop_probe,
    wait_kernel_idle,
    wait_saved_views,
    wait_state,
    wait_tokens,
    widget,
)

# Each test's limit includes the shared quickstart run when it is the first to need it.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

CHECK_RUN = 'print(f"RESULT status={run.status} tokens={run.n_tokens} reason={run.end_reason!r}")'
DOCS_SHOTS = REPO / "docs" / "screenshots"
MAX_PNG_BYTES = 300_000
QUICKSTART_TOKENS = 48  # max_new_tokens in notebooks/quickstart.ipynb
# Generous: the model loads in ~3 s warm, ~30 s cold; decoding runs 2-13 tok/s on a busy 2-core box.
START_MS = 150_000
RUN_MS = 240_000


@dataclass
class Quickstart:
    """The quickstart notebook, run once for the module; the tests below read its page."""

    lab_page: LabPage
    probe: dict[str, Any] = field(default_factory=dict)
    outputs: list[list[dict[str, Any]]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def page(self) -> Any:
        return self.lab_page.page


def shot(root: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    toasts = hide_toasts(root.page)  # a notification toast never hides the widget
    if toasts:
        print(f"{name}: toasts hidden: {toasts}")
    root.scroll_into_view_if_needed()
    root.screenshot(path=str(ARTIFACTS / name), animations="disabled")


@pytest.fixture(scope="module")
def quickstart(browser: Any, lab: LabServer) -> Iterator[Quickstart]:
    qs = Quickstart(open_page(browser, lab, "quickstart"))
    page = qs.page
    t0 = time.monotonic()
    try:
        open_notebook(page, lab.url, "quickstart.ipynb")
        qs.seconds["open"] = time.monotonic() - t0
        install_probe(page)
        run_all(page)
        root = widget(page, 0)
        wait_state(root, "running", START_MS)
        qs.seconds["running"] = time.monotonic() - t0
        wait_tokens(page, 10, RUN_MS)
        shot(root, "widget-live.png")
        wait_state(root, "completed", RUN_MS)
        qs.seconds["completed"] = time.monotonic() - t0
        wait_kernel_idle(page, RUN_MS)
        qs.seconds["all cells"] = time.monotonic() - t0
        stop_probe(page)
        qs.probe = probe_data(page)
        qs.outputs = cell_outputs(page)
        shot(root, "widget-done-light.png")
    except BaseException:
        save_artifacts(qs.lab_page, lab, "quickstart-setup")
        qs.page.context.close()
        raise
    print(f"quickstart timings (s): {qs.seconds}")
    yield qs
    qs.page.context.close()
    lab.shutdown_kernels()


@pytest.fixture
def qs(
    quickstart: Quickstart, lab: LabServer, request: pytest.FixtureRequest
) -> Iterator[Quickstart]:
    """The shared quickstart page, saved as artifacts if the test using it fails."""
    yield quickstart
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print(f"browser artifacts: {save_artifacts(quickstart.lab_page, lab, request.node.name)}")


def test_quickstart_runs_without_errors_and_the_widget_finishes(qs: Quickstart) -> None:
    errors = [o for cell in qs.outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, f"cell errors: {[(e['ename'], e['evalue']) for e in errors]}"
    text = outputs_text(qs.outputs)
    assert "completed - " in text, text[-2000:]
    roots = qs.page.locator(".jp-Notebook .lew-root")
    assert roots.count() == 2  # the profiler's widget and the `run` cell's
    for i in range(2):
        wait_state(widget(qs.page, i), "completed", 30_000)
    title = widget(qs.page, 0).locator(".lew-run-title").inner_text()
    assert "SmolLM2-135M" in title
    run_id = re.search(r"run (\w+)", title)
    assert run_id
    assert run_id.group(1) in widget(qs.page, 1).locator(".lew-run-title").inner_text()
    assert not qs.lab_page.log.dialogs
    assert not qs.lab_page.log.outside, f"requests left localhost: {qs.lab_page.log.outside}"


def test_kernels_save_runs_to_the_test_store(qs: Quickstart, lab: LabServer) -> None:
    """LLM_ENERGY_STORE reached the server's kernels: the run is in the temporary store."""
    from llm_energy_widget.store import Store

    title = widget(qs.page, 0).locator(".lew-run-title").inner_text()
    run_id = re.search(r"run (\w+)", title)
    assert run_id, title
    store = Store(lab.store_path)
    try:
        assert run_id.group(1) in store.ids()
    finally:
        store.close()


def test_power_chart_redraws_while_generation_runs(qs: Quickstart) -> None:
    samples = qs.probe["samples"]
    done_at = next((s["t"] for s in samples if s["state"] == "completed"), None)
    assert done_at is not None, "the probe never saw the done state"
    live = [s for s in samples if s["state"] == "running" and s["t"] < done_at]
    hashes = {s["power"] for s in live if s["power"]}
    assert len(hashes) >= 3, f"power chart drawn {len(hashes)} distinct times while running"
    counts = sorted({s["tokens"] for s in live})
    assert len([c for c in counts if c > 0]) >= 3, f"tokens seen while running: {counts}"
    frames = [f for f in qs.probe["frames"] if f["t"] < done_at and f["state"] == "running"]
    assert len({f["version"] for f in frames}) >= 3


def test_heatmap_cells_and_tokens_appear(qs: Quickstart) -> None:
    root = widget(qs.page, 0)
    status = root.locator(".lew-fields").inner_text()
    m = re.search(r"token\s+(\d+) / (\d+)", status)
    assert m, status
    n_tokens, max_new = int(m.group(1)), int(m.group(2))
    assert max_new == QUICKSTART_TOKENS
    assert 0 < n_tokens <= QUICKSTART_TOKENS
    assert root.locator(".lew-tok").count() == n_tokens
    assert root.locator(".lew-token-box").inner_text().strip()
    canvas = root.locator(".lew-heatmap canvas")
    assert canvas.is_visible()
    # once the run is done the heatmap shows the mean over the decode tokens (with sampled
    # instrumentation, the instrumented ones of them)
    caption = root.locator(".lew-heatmap .lew-caption").inner_text()
    assert re.fullmatch(
        rf"mean over (\d+ instrumented tokens of )?{n_tokens - 1} decode tokens "
        r"\(prefill excluded\)",
        caption,
    ), caption
    assert canvas_colour_count(canvas) >= 8  # viridis cells, not a blank canvas
    canvas.hover(position={"x": 66, "y": 72})  # inside the cell of layer 0, first component
    tip = root.locator(".lew-tooltip")
    tip.wait_for(state="visible", timeout=5_000)
    lines = tip.inner_text().splitlines()
    assert re.fullmatch(r".+ · .+", lines[0]), lines
    assert re.fullmatch(r"time: [\d.]+ (µs|ms|s)", lines[1]), lines
    assert "measured" in lines[2], lines
    assert root.locator(".lew-cards").is_visible()
    assert root.locator(".lew-card-label", has_text="decode J/token").count() == 1


def test_token_tooltip_shows_energy_with_its_kind(qs: Quickstart) -> None:
    root = widget(qs.page, 0)
    kind = root.locator(".lew-power .lew-source .lew-badge").inner_text().strip()
    # the kind, and the scope the estimate covers where the source says: "estimated · process"
    assert kind.split(" · ")[0] in ("measured", "estimated"), kind
    # the badge explains itself: where the number comes from, an estimate's uncertainty
    why = root.locator(".lew-power .lew-source .lew-badge").get_attribute("title") or ""
    assert why.startswith(kind.split(" · ")[0] + ": "), why
    if kind.startswith("estimated"):
        assert "source estimate: ESTIMATE, not a measurement" in why, why
        assert "±50 %" in why, why
    root.locator('.lew-tok[data-i="1"]').hover()
    tip = root.locator(".lew-tooltip")
    tip.wait_for(state="visible", timeout=5_000)
    text = tip.inner_text()
    assert text.startswith("token 1: "), text
    assert re.search(rf"energy [\d.]+ (µJ|mJ|J|kJ) \({re.escape(kind)}\)", text), text
    assert re.search(r"duration [\d.]+ (ms|s)", text), text
    assert re.search(r"average power [\d.]+ W", text), text
    qs.page.mouse.move(0, 0)
    tip.wait_for(state="hidden", timeout=5_000)


def test_charts_are_redrawn_for_a_new_theme(qs: Quickstart) -> None:
    """A theme switch hides the output for a moment: the charts come back at their panel's width
    and in the new theme's colours, with no resize to prompt them."""
    page = qs.page
    light = _power_hashes(page)
    try:
        set_theme(page, "JupyterLab Dark")
        _wait_dark(page)
        _wait_charts_fit(page)
        _wait_hashes_change(page, light)
    finally:
        dark = _power_hashes(page)
        set_theme(page, "JupyterLab Light")
    _wait_light(page)
    _wait_charts_fit(page)
    _wait_hashes_change(page, dark)


def test_dark_theme_restyles_the_widget(qs: Quickstart) -> None:
    page = qs.page
    root = widget(page, 0)
    light_bg = _luminance(root.evaluate("(r) => getComputedStyle(r).backgroundColor"))
    light_hashes = _power_hashes(page)
    try:
        set_theme(page, "JupyterLab Dark")
        _wait_dark(page)
        dark_bg = _luminance(root.evaluate("(r) => getComputedStyle(r).backgroundColor"))
        dark_fg = _luminance(root.evaluate("(r) => getComputedStyle(r).color"))
        assert light_bg > 0.8, (light_bg, dark_bg, dark_fg)
        assert dark_bg < 0.35, (light_bg, dark_bg, dark_fg)
        assert dark_fg > 0.6, (light_bg, dark_bg, dark_fg)
        _wait_charts_fit(page)
        _wait_hashes_change(page, light_hashes)
        shot(root, "widget-done-dark.png")
    finally:
        set_theme(page, "JupyterLab Light")
        _wait_light(page)
        _wait_charts_fit(page)
    _maybe_update_docs()


def test_slider_takes_arrow_keys_inside_jupyterlab(qs: Quickstart) -> None:
    """JupyterLab binds the arrows in command mode (move the cell cursor, collapse headings):
    a focused token slider must get them instead."""
    page = qs.page
    root = widget(page, 0)
    caption = root.locator(".lew-heatmap .lew-caption")
    # the slider steps over the tokens with a layer row (with sampled instrumentation, the
    # instrumented ones: the prefill token 0 always, then at least one decode token)
    root.locator('.lew-tok[data-i="0"]').click()
    expect(caption).to_have_text(re.compile(r"^token 0: "), timeout=5_000)
    active = "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"
    before = page.evaluate(active)
    slider = root.locator(".lew-heatmap .lew-slider")
    slider.focus()
    page.keyboard.press("ArrowRight")
    expect(caption).to_have_text(re.compile(r"^token [1-9]\d*: "), timeout=5_000)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(caption).to_have_text(re.compile(r"^token 0: "), timeout=5_000)
    page.keyboard.press("ArrowRight")
    expect(caption).to_have_text(re.compile(r"^token [1-9]\d*: "), timeout=5_000)
    page.keyboard.press("ArrowDown")  # a range input: one step back, not the next cell
    expect(caption).to_have_text(re.compile(r"^token 0: "), timeout=5_000)
    assert page.evaluate(active) == before, "the notebook took the arrow keys"
    assert slider.evaluate("(s) => document.activeElement === s")


def test_choices_survive_a_re_render_and_a_new_run(qs: Quickstart) -> None:
    """anywidget gives each view a fresh proxy of the model: the user's metric, scale and token
    are kept per model, for a second view of the widget and for the profiler's next run."""
    page = qs.page
    root = widget(page, 0)
    metric = root.locator(".lew-heatmap select[aria-label='metric']")
    scale = root.locator(".lew-heatmap select[aria-label='colour scale']")
    metric.select_option(label="energy (modeled)")
    scale.select_option(value="log")
    root.locator('.lew-tok[data-i="2"]').click()
    caption = root.locator(".lew-heatmap .lew-caption")
    expect(caption).to_have_text(re.compile(r"^token 2: "), timeout=5_000)
    n_roots = page.locator(".jp-Notebook .lew-root").count()

    run_code(page, "w")  # the profiler's widget again: a new view of the same model
    view = widget(page, n_roots)
    view.locator(".lew-tok").first.wait_for(timeout=30_000)
    for v in (root, view):
        sel = v.locator(".lew-heatmap select[aria-label='metric']")
        assert sel.evaluate("(s) => s.selectedOptions[0].textContent") == "energy (modeled)"
        assert v.locator(".lew-heatmap select[aria-label='colour scale']").input_value() == "log"
    expect(view.locator(".lew-heatmap .lew-caption")).to_have_text(re.compile(r"^token 2: "))

    # a new run shows in its own output (the first one keeps the run it showed): it starts from
    # the choices the user made last
    n_roots = page.locator(".jp-Notebook .lew-root").count()
    out = run_code(
        page,
        'run2 = profiler.generate("Say hello.", max_new_tokens=6, min_new_tokens=6,'
        " do_sample=False)\nrun2.wait()\nprint(run2.status, run2.run_id)\nrun2",
        timeout_ms=RUN_MS,
    )
    text = outputs_text([out])
    assert text.startswith("completed "), text
    run_id = text.split()[1]
    new = widget(page, n_roots)
    expect(new.locator(".lew-run-title")).to_contain_text(run_id, timeout=30_000)
    wait_state(new, "completed", 30_000)
    sel = new.locator(".lew-heatmap select[aria-label='metric']")
    assert sel.evaluate("(s) => s.selectedOptions[0].textContent") == "energy (modeled)"
    assert new.locator(".lew-heatmap select[aria-label='colour scale']").input_value() == "log"
    expect(new.locator(".lew-heatmap .lew-caption")).to_have_text(re.compile(r"^token 2: "))


def test_stop_button_ends_a_long_run_early(pages: Pages, lab: LabServer) -> None:
    lp = pages.new("stop")
    page = lp.page
    open_notebook(page, lab.url, "stop.ipynb")
    run_all(page)
    root = widget(page, 0)
    wait_state(root, "running", START_MS)
    wait_tokens(page, 3, RUN_MS)
    stop = root.locator(".lew-stop")
    assert stop.is_enabled()
    stop.click()
    t_click = time.monotonic()
    wait_state(root, "cancelled", 60_000)
    latency_s = time.monotonic() - t_click
    wait_kernel_idle(page, 60_000)
    # the run's output is replaced by its final bundle (issue 10): read the view rendered from it
    wait_saved_views(page, 1, 60_000)
    text = outputs_text([run_code(page, CHECK_RUN)])
    m = re.search(r"RESULT status=(\w+) tokens=(\d+)", text)
    assert m, text
    assert m.group(1) == "cancelled"
    n_kernel = int(m.group(2))
    assert 3 <= n_kernel < 400
    status = root.locator(".lew-fields").inner_text()
    assert re.search(rf"token\s+{n_kernel} / 400", status), status
    assert root.locator(".lew-tok").count() == n_kernel
    assert root.locator(".lew-state").inner_text() == "cancelled"
    assert "cancelled by the user" in root.locator(".lew-run-title").inner_text()
    assert stop.is_disabled()
    assert root.locator(".lew-cards").is_visible()  # the run kept what it measured
    print(f"stop: cancelled after {n_kernel} tokens, {latency_s:.1f} s after the click")


def test_stop_button_works_while_a_cell_waits_for_the_run(pages: Pages, lab: LabServer) -> None:
    page = pages.new("stop-while-waiting").page
    open_notebook(page, lab.url, "stop-while-waiting.ipynb")
    run_all(page)
    root = widget(page, 0)
    wait_state(root, "running", START_MS)
    wait_tokens(page, 3, RUN_MS)
    root.locator(".lew-stop").click()
    # Wait on this widget's own state: the status line is re-rendered on every update, so a
    # one-shot count right after a page-wide match can fall between two renders.
    expect(root.locator(".lew-state-cancelled, .lew-state-completed")).to_have_count(
        1, timeout=RUN_MS
    )
    expect(root.locator(".lew-state-cancelled"), "the run was not stopped").to_have_count(
        1, timeout=5_000
    )
    # The waiting cell returned once the run ended, then printed; nothing ran out of order.
    wait_kernel_idle(page, 60_000)
    outputs = cell_outputs(page)
    errors = [o for cell in outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, f"cell errors: {[(e['ename'], e['evalue']) for e in errors]}"
    assert outputs_text([outputs[-1]]).strip() == "cancelled", outputs[-1]


def test_xss_tokens_render_inert(pages: Pages, lab: LabServer) -> None:
    lp = pages.new("xss")
    page = lp.page
    page.add_init_script("window.__lewControl = 0;")
    open_notebook(page, lab.url, "xss.ipynb")
    run_all(page)
    root = widget(page, 0)
    wait_state(root, "completed", START_MS)
    wait_kernel_idle(page, 60_000)
    page.wait_for_function("() => window.__lewControl === 1", timeout=15_000)
    texts = root.locator(".lew-tok").all_text_contents()
    assert texts == [XSS_TEXTS[i % 2] for i in range(6)]
    assert root.locator("script").count() == 0
    assert page.locator('.jp-Notebook img[src="x"]').count() == 0
    static_html = page.locator(".jp-Notebook .jp-OutputArea-output").nth(1).inner_text()
    assert XSS_TEXTS[0] in static_html  # the static fallback shows the text, escaped
    assert not lp.log.dialogs, lp.log.dialogs
    fetched_x = [u for u in lp.log.requests if re.search(r"/x$", u)]
    assert not fetched_x, f"an <img src=x> was live: {fetched_x}"
    assert not lp.log.outside


def _luminance(css_colour: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


POWER_HASHES_JS = """[...document.querySelectorAll('.jp-Notebook .lew-canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261;
  for (let i = 0; i < d.length; i += 3) { h ^= d[i]; h = Math.imul(h, 16777619); }
  return h >>> 0;
})"""


def _power_hashes(page: Any) -> list[int]:
    """A pixel hash of every chart canvas (power and heatmap) in the notebook."""
    return list(page.evaluate(f"() => {POWER_HASHES_JS}"))


def _wait_dark(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .lew-root')].every((r) => {"
        " const m = getComputedStyle(r).backgroundColor.match(/\\d+/g);"
        " return m && (0.3 * m[0] + 0.6 * m[1] + 0.1 * m[2]) < 90; })",
        timeout=10_000,
    )


def _wait_light(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .lew-root')].every((r) => {"
        " const m = getComputedStyle(r).backgroundColor.match(/\\d+/g);"
        " return m && (0.3 * m[0] + 0.6 * m[1] + 0.1 * m[2]) > 200; })",
        timeout=10_000,
    )


def _wait_hashes_change(page: Any, before: list[int]) -> None:
    """Every chart canvas was redrawn with new pixels (the new theme's colours)."""
    page.wait_for_function(
        f"""() => {{
          const now = {POWER_HASHES_JS};
          const before = {json.dumps(before)};
          return now.length === before.length && now.every((h, i) => h !== before[i]);
        }}""",
        timeout=10_000,
    )


def _wait_charts_fit(page: Any) -> None:
    """After a restyle the canvases are redrawn at their panel's width (no stale layout)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-Notebook .lew-power')].every((p) => {
             const c = p.querySelector('canvas');
             return c && Math.abs(parseFloat(c.style.width) - p.clientWidth) < 1;
           })""",
        timeout=10_000,
    )


def _maybe_update_docs() -> None:
    if os.environ.get("LLM_ENERGY_UPDATE_SCREENSHOTS") != "1":
        return
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("widget-live.png", "widget-done-light.png", "widget-done-dark.png"):
        src = ARTIFACTS / name
        size = src.stat().st_size
        assert size < MAX_PNG_BYTES, f"{name} is {size} bytes"
        shutil.copy(src, DOCS_SHOTS / name)
