"""Run All over two generating cells in a real JupyterLab: the second queues, both complete.

Run (one browser suite at a time on this machine), from the repository root:
  PYTHONPATH=$PWD flock /tmp/lew-browser.lock .venv/bin/python -m pytest \
      tests/browser/test_run_all.py -q

What the user sees is read from the page: every widget's state and title, sampled every 50 ms
from before Run All, so the order in which the widgets went queued -> running -> completed is
the one shown on screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # mypy's `conftest` is tests/conftest.py; pytest's, here, is this folder's
    from browser.conftest import Pages
else:
    from conftest import Pages
from support.lab import ARTIFACTS, LabServer, write_notebook
from support.lab_page import (
    cell_outputs,
    open_notebook,
    outputs_text,
    run_all,
    wait_kernel_idle,
    wait_state,
    widget,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

TOKENS = 24
FLUSH_SLACK_MS = 200  # two widgets' flush intervals (20 updates/s each) and a sample
RUN_ALL_NOTEBOOK = [
    "import llm_energy_widget as lew\nmodel, tok = lew.load_default_model()",
    f'a = lew.live(model, tok, "Name three primary colours.", max_new_tokens={TOKENS},'
    f" min_new_tokens={TOKENS})",
    # `b` as the last expression too: live() already showed it, so still one widget
    f'b = lew.live(model, tok, "Name three planets.", max_new_tokens={TOKENS},'
    f" min_new_tokens={TOKENS}); b",
    'b.wait()\nprint(f"RESULT a={a.status}/{a.n_tokens} b={b.status}/{b.n_tokens}")',
]

# Every widget's (state, title) whenever it changes, with the page time.
STATES_JS = """
() => {
  const seen = { rows: [], last: {} };
  window.__lewStates = seen;
  const t0 = performance.now();
  seen.timer = setInterval(() => {
    document.querySelectorAll('.jp-Notebook .lew-root').forEach((root, i) => {
      const s = root.querySelector('.lew-state');
      const title = root.querySelector('.lew-run-title');
      const state = s ? s.className.replace(/.*lew-state-(\\S+).*/, '$1') : null;
      const text = title ? title.textContent : '';
      const key = state + '|' + text;
      if (seen.last[i] !== key) {
        seen.last[i] = key;
        seen.rows.push({ t: performance.now() - t0, i, state, text });
      }
    });
  }, 50);
}
"""


def _states(page: Any) -> list[dict[str, Any]]:
    rows = page.evaluate(
        "() => { clearInterval(window.__lewStates.timer); return __lewStates.rows; }"
    )
    return list(rows)


def test_run_all_queues_the_second_generation_and_both_complete(
    lab: LabServer, pages: Pages
) -> None:
    write_notebook(lab.root / "run-all.ipynb", RUN_ALL_NOTEBOOK)
    lp = pages.new("run-all")
    page = lp.page
    open_notebook(page, lab.url, "run-all.ipynb")
    page.evaluate(STATES_JS)
    run_all(page)
    queued_view = widget(page, 1)
    wait_state(queued_view, "queued", 240_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    queued_view.screenshot(path=str(ARTIFACTS / "run-all-queued.png"), animations="disabled")
    wait_kernel_idle(page, 300_000)
    for i in range(2):
        wait_state(widget(page, i), "completed", 60_000)
    rows = _states(page)
    outputs = cell_outputs(page)

    errors = [o for cell in outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, [(e["ename"], e["evalue"]) for e in errors]
    assert f"RESULT a=completed/{TOKENS} b=completed/{TOKENS}" in outputs_text(outputs)
    # one widget per generating cell: the trailing `b` showed no second copy
    assert page.locator(".jp-Notebook .lew-root").count() == 2
    # each finished run's output now holds its image/text/HTML (never the widget view)
    assert [len([o for o in outputs[k] if "image/png" in o.get("data", {})
                 or "application/vnd.jupyter.widget-view+json" in o.get("data", {})])
             for k in (1, 2)] == [1, 1]  # fmt: skip

    first = [r for r in rows if r["i"] == 0]
    second = [r for r in rows if r["i"] == 1]
    # None: the view was absent for a poll while its output was being replaced by the saved
    # bundle (which renders the same status again); it is no state of the run
    order = [r["state"] for r in second if r["state"] is not None]
    seq = [s for k, s in enumerate(order) if k == 0 or order[k - 1] != s]
    assert seq[-3:] == ["queued", "running", "completed"], second
    queued = [r for r in second if r["state"] == "queued"]
    assert any(re.search(r"queued, 1 ahead", r["text"]) for r in queued), queued
    # the second started only once the first had completed, as the page showed them; each
    # widget sends at most every 50 ms on its own, so the two can cross by that much (the
    # order itself is exact: tests/profiler/test_queue.py), plus one 50 ms sample here
    t_second_running = next(r["t"] for r in second if r["state"] == "running")
    t_first_done = next(r["t"] for r in first if r["state"] == "completed")
    t_first_running = next(r["t"] for r in first if r["state"] == "running")
    assert t_first_done - FLUSH_SLACK_MS <= t_second_running, (first, second)
    assert t_second_running - t_first_running > 1000  # it waited the first run out
    # the title each widget showed once completed (a later row can be the poll that found the
    # view absent while its output was being replaced, with no title)
    done_titles = [
        next(r["text"] for r in reversed(rows_i) if r["state"] == "completed")
        for rows_i in (first, second)
    ]
    run_ids = [re.search(r"run (\w+)", text) for text in done_titles]
    assert all(run_ids), done_titles
    first_id, second_id = run_ids
    assert first_id is not None
    assert second_id is not None
    assert first_id.group(1) != second_id.group(1)
    assert not lp.log.outside, f"requests left localhost: {lp.log.outside}"
