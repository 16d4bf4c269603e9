"""The frontend in headless Chromium: the offline report, and the bundle fed by a fake model with
the exact traffic a real EnergyWidget produced."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.widget import (
    ARTIFACTS,
    XSS_TEXTS,
    capture,
    deliver_js,
    events_with_full_power,
    full_run,
    page_html,
    play,
)

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.testing import new_synthetic_run
from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.widget import BUNDLE_JS, EnergyWidget

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)"
    ),
    pytest.mark.skipif(not BUNDLE_JS.is_file(), reason="needs the bundle (npm run build)"),
]

METRIC_SELECT = ".lew-heatmap select[aria-label='metric']"
MODE_SELECT = ".lew-heatmap select[aria-label='token shown']"
SCALE_SELECT = ".lew-heatmap select[aria-label='colour scale']"
PAINTED = """(sel) => { const c = document.querySelector(sel); if (!c || !c.width) return 0;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def offline_page(browser: Any, **kw: Any) -> Any:
    """A page that fails the test on any network request, dialog or script error."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000}, **kw)
    trouble: list[str] = []

    def on_dialog(d: Any) -> None:
        trouble.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: trouble.append(f"page error: {e}"))

    def on_request(route: Any) -> Any:
        url = route.request.url
        if not url.startswith(("file:", "data:", "blob:", "about:")):
            trouble.append(f"network: {url}")
            return route.abort()
        return route.continue_()

    page.route("**/*", on_request)
    return page, trouble


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_report_renders_offline_and_xss_is_inert(browser: Any, tmp_path: Path, scheme: Any) -> None:
    run = full_run(n_tokens=30, n_layers=6, texts=XSS_TEXTS, tail_ms=30.0)
    path = to_html(run, tmp_path / "report.html")
    page, trouble = offline_page(browser, color_scheme=scheme)
    page.goto(path.as_uri())
    page.wait_for_function("document.documentElement.dataset.lewRendered", timeout=15000)
    assert page.evaluate("document.documentElement.dataset.lewRendered") == "1"
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 30", timeout=5000)
    assert page.evaluate(PAINTED, ".lew-power canvas") > 1000
    assert page.evaluate(PAINTED, ".lew-heatmap canvas") > 1000
    texts = page.eval_on_selector_all(".lew-tok", "els => els.map(e => e.textContent)")
    assert texts == [t["text"] for t in run.tokens()]
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 3
    coloured = page.eval_on_selector_all(
        ".lew-tok", "els => els.filter(e => e.style.background).length"
    )
    assert coloured == 30, "every token has an energy colour"
    # headline, tokens/J, prefill per prompt token, prefill, decode, tail, total, peak, avg
    # power, decode tokens/s (the one rate), TTFT, EDP, cost, CO2, layer coverage, outside layers
    # (no baseline: no net)
    assert page.locator(".lew-card").count() == 16
    assert page.locator(".lew-card").first.get_attribute("data-key") == "decode_j_per_token"
    peak = page.locator('.lew-card[data-key="peak_power_w"] .lew-card-sub').inner_text()
    assert peak.startswith("total")
    assert page.locator(".lew-badge.lew-kind-modeled").count() > 0
    # the synthetic tokens (60-72 ms) are shorter than the 100 ms resolution: the warning says so
    assert "shorter than the power source's resolution" in page.locator(".lew-warning").inner_text()
    tail = page.locator('.lew-legend-phase[data-phase="tail"]')
    assert tail.count() == 1
    swatch = tail.evaluate("e => e.style.getPropertyValue('--lew-swatch')")
    assert swatch == "rgba(227,119,194,0.18)"
    heat = page.locator(".lew-heatmap .lew-caption-sub").inner_text()
    assert heat.startswith("layers cover 75.0 % of ")
    assert "outside layers" in heat
    assert page.locator("#lew-fallback").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"widget-report-{scheme}.png"), full_page=True)
    page.wait_for_timeout(200)
    assert trouble == []
    page.close()


def test_report_without_javascript_still_shows_the_static_figures(
    browser: Any, tmp_path: Path
) -> None:
    run = full_run(n_tokens=10, texts=XSS_TEXTS)
    path = to_html(run, tmp_path / "report.html")
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    page.goto(path.as_uri())
    assert page.locator("#lew-fallback svg polyline").count() >= 1
    assert page.locator("table").count() >= 2
    assert "<img src=x onerror=alert(1)>" in page.locator("pre").inner_text()
    ctx.close()


def stream_into_page(page: Any, cap_items: Any) -> None:
    for item in cap_items:
        expr, arg = deliver_js(item)
        page.evaluate(expr, arg)


def test_bundle_streams_live_updates_from_a_real_widget(browser: Any) -> None:
    page, trouble = offline_page(browser)
    page.set_content(page_html())
    page.wait_for_function("window.lewReady === true")
    page.evaluate("window.lew.render()")

    run = new_synthetic_run(n_layers=8)
    Recorder(run).status("running")
    run.settings["max_new_tokens"] = 40
    w = EnergyWidget()
    cap = capture(w)
    w.attach(run)
    events = list(events_with_full_power(40, 8, texts=XSS_TEXTS))
    half = len(events) // 2
    player = threading.Thread(target=play, args=(run, events[:half], 8.0))
    player.start()
    player.join()
    w.flush()
    with cap.lock:
        first = list(cap.items)
    stream_into_page(page, first)
    n_half = run.n_tokens
    page.wait_for_function(f"document.querySelectorAll('.lew-tok').length === {n_half}")
    assert page.evaluate(PAINTED, ".lew-heatmap canvas") > 1000
    assert f"{n_half} / 40" in page.locator(".lew-fields").inner_text()
    assert page.locator(".lew-state").inner_text() == "running"

    # Stop goes to the kernel as a message; the widget turns it into run.cancel().
    page.locator(".lew-stop").click()
    sent = page.evaluate("window.lew.sent")
    assert {"type": "stop"} in sent
    w._on_frontend_msg(w, sent[-1], [])
    assert run.cancel_requested

    play(run, events[half:], 50.0)
    Recorder(run).finish("cancelled", "stopped by user")
    w._flusher.join(timeout=5)  # type: ignore[union-attr]
    with cap.lock:
        rest = cap.items[len(first) :]
    assert any(k == "snapshot" for k, *_ in rest)
    stream_into_page(page, rest)
    page.wait_for_function("document.querySelectorAll('.lew-tok').length === 40")
    page.wait_for_selector(".lew-card")
    assert page.locator(".lew-state").inner_text() == "cancelled"

    # Hover a token: the tooltip tells its energy; click it: the heatmap shows that token.
    tok = page.locator(".lew-tok").nth(5)
    tok.hover()
    tip = page.locator(".lew-tooltip").inner_text()
    assert "token 5" in tip
    assert "energy" in tip
    assert "J (modeled)" in tip
    assert "W" in tip
    assert "< resolution (100 ms), interpolated between readings" in tip
    tok.click()
    page.wait_for_function(
        "document.querySelector('.lew-caption').textContent.startsWith('token 5')"
    )
    # Heatmap hover: layer, component, value with unit.
    box = page.locator(".lew-heatmap canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 64 + 5, box["y"] + 70 + 3)
    tip = page.locator(".lew-tooltip").inner_text()
    assert tip.startswith("L0 · input_layernorm\n"), tip
    assert re.search(r"time: [\d.]+ (µs|ms)\n", tip), "µs below a millisecond"
    assert "(8-bit log scale)" in tip
    assert "display precision" not in tip
    page.select_option(METRIC_SELECT, label="energy (modeled)")
    page.mouse.move(box["x"] + 64 + 6, box["y"] + 70 + 3)
    tip = page.locator(".lew-tooltip").inner_text()
    assert "J" in tip
    assert "token energy × cell time / token time" in tip
    assert page.locator(METRIC_SELECT).locator("option", has_text="mean |x|").count()
    page.select_option(MODE_SELECT, value="mean")
    page.wait_for_function(
        "document.querySelector('.lew-caption').textContent"
        " === 'mean over 39 decode tokens (prefill excluded)'"
    )
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-live.png"), full_page=True)
    assert trouble == []
    page.close()


def test_a_late_view_asks_for_a_snapshot_then_follows_deltas(browser: Any) -> None:
    run = new_synthetic_run()
    Recorder(run).status("running")
    w = EnergyWidget(run)
    cap = capture(w)
    events = list(events_with_full_power(12, 4))
    play(run, events[: len(events) // 2], 100.0)
    w.flush()
    page, trouble = offline_page(browser)
    page.set_content(page_html())
    page.wait_for_function("window.lewReady === true")
    page.evaluate("(m) => { window.lew.state.meta = m; window.lew.render(); }", w.meta)
    assert page.evaluate("window.lew.sent") == [{"type": "snapshot"}]
    # a delta that arrives before the snapshot answer is queued, not applied out of order
    play(run, events[len(events) // 2 :], 100.0)
    w.flush()
    stream_into_page(page, [i for i in cap.items if i[0] == "msg"][-1:])
    assert page.evaluate("document.querySelectorAll('.lew-tok').length") == 0
    w._on_frontend_msg(w, {"type": "snapshot"}, [])
    stream_into_page(page, cap.items[-1:])
    page.wait_for_function(f"document.querySelectorAll('.lew-tok').length === {run.n_tokens}")
    assert trouble == []
    w.detach()
    page.close()
