"""A run with sampled instrumentation in real Chromium (its HTML report: the bundle over the run's
snapshot): the heatmap's slider lands only on instrumented tokens, its caption says which of them
it shows and the mean over how many; a bare token picked shows the nearest instrumented one, not
an empty or zero heatmap; the token stream underlines the instrumented tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.sampled import INSTRUMENTED, sampled_run

from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.widget import BUNDLE_JS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium"),
    pytest.mark.skipif(not BUNDLE_JS.is_file(), reason="needs the bundle (npm run build)"),
]

CAPTION = ".lew-heatmap .lew-caption"
SLIDER = ".lew-heatmap input[aria-label='token']"
PAINTED = """() => { const c = document.querySelector(".lew-heatmap canvas");
  if (!c || !c.width || c.hidden) return 0;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""


def test_the_slider_steps_over_instrumented_tokens_only(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    path = to_html(sampled_run(), tmp_path / "report.html")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_function("document.documentElement.dataset.lewRendered", timeout=15000)
        caption = page.locator(CAPTION)
        # a finished run opens on the mean: over the instrumented decode tokens, said so
        assert caption.inner_text() == (
            "mean over 3 instrumented tokens of 23 decode tokens (prefill excluded)"
        )
        page.select_option(".lew-heatmap select[aria-label='token shown']", "token")
        slider = page.locator(SLIDER)
        assert slider.get_attribute("max") == str(len(INSTRUMENTED) - 1)
        seen: list[str] = []
        slider.focus()
        page.keyboard.press("Home")
        for k in range(len(INSTRUMENTED)):
            if k:
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                f"() => document.querySelector({SLIDER!r}).getAttribute('aria-valuetext') "
                f"=== 'token {INSTRUMENTED[k]}'",
                timeout=3000,
            )
            seen.append(caption.inner_text())
            assert page.evaluate(PAINTED) > 1000, "an instrumented token's cells are drawn"
        t = INSTRUMENTED
        assert seen == [
            f'token {t[k]}: " tok{t[k]}" (instrumented {k + 1} of 4; 24 tokens)' for k in range(4)
        ]
        # a bare token picked in the token stream: its nearest instrumented token, and why
        page.locator('.lew-tok[data-i="5"]').click()
        page.wait_for_function(
            f"() => document.querySelector({CAPTION!r}).textContent.startsWith('token 5 ran bare')"
        )
        assert caption.inner_text() == (
            'token 5 ran bare (no layer row): showing token 7: " tok7" (instrumented 2 of 4; '
            "24 tokens)"
        )
        assert slider.get_attribute("aria-valuetext") == "token 7"
        assert page.evaluate(PAINTED) > 1000
        marked = page.eval_on_selector_all(
            ".lew-tok.lew-tok-inst", "els => els.map(e => Number(e.dataset.i))"
        )
        assert marked == list(INSTRUMENTED)
        status = page.locator(".lew-status").inner_text()
        assert "% on 3 instrumented tokens, 20 bare" in status
        headline = page.locator('.lew-card[data-key="decode_j_per_token"] .lew-card-sub')
        assert headline.inner_text() == "from 20 bare decode tokens of 23"
        assert errors == []
        browser.close()
