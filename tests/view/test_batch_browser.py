"""The batch's sequence picker in headless Chromium, on the offline report of a real batched
run: one sequence's tokens at a time; no picker for a single prompt."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.models import tiny_llama
from support.profilers import quick_profiler

from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.widget import BUNDLE_JS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)"
    ),
    pytest.mark.skipif(not BUNDLE_JS.is_file(), reason="needs the bundle (npm run build)"),
]

PICKER = ".lew-tokens select.lew-seq-picker"
VISIBLE = "els => els.filter(e => !e.hidden).map(e => e.textContent)"


def _run(tok: Any, prompt: Any) -> Any:
    run = quick_profiler(tiny_llama(), tok, level="token").generate(
        prompt, chat=False, max_new_tokens=3, do_sample=False
    )
    assert run.wait(60)
    return run


def _open(browser: Any, run: Any, tmp_path: Path) -> Any:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(to_html(run, tmp_path / f"{run.run_id}.html").as_uri())
    page.wait_for_function("document.documentElement.dataset.lewRendered", timeout=15000)
    n = run.n_tokens
    page.wait_for_function(f"document.querySelectorAll('.lew-tok').length === {n}", timeout=5000)
    assert errors == []
    return page


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_the_picker_shows_one_sequence_at_a_time(
    browser: Any, smollm_tokenizer: Any, tmp_path: Path
) -> None:
    run = _run(smollm_tokenizer, ["Energy is", "The capital of France is", "Hello"])
    page = _open(browser, run, tmp_path)
    picker = page.locator(PICKER)
    assert picker.is_visible()
    options = picker.locator("option").all_inner_texts()
    assert [o.split(" · ")[0] for o in options] == ["sequence 0", "sequence 1", "sequence 2"]
    assert all(" · 3 tokens · " in o for o in options)
    toks = run.tokens()
    for b in (0, 2, 1):
        picker.select_option(str(b))
        shown = page.eval_on_selector_all(".lew-tok", VISIBLE)
        assert shown == [t["text"] for t in toks if t["sequence"] == b]
    page.close()


def test_no_picker_for_one_prompt(browser: Any, smollm_tokenizer: Any, tmp_path: Path) -> None:
    run = _run(smollm_tokenizer, "Energy is")
    page = _open(browser, run, tmp_path)
    assert page.locator(PICKER).is_hidden()
    assert len(page.eval_on_selector_all(".lew-tok", VISIBLE)) == run.n_tokens
    page.close()
