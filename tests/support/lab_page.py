"""Driving a notebook in JupyterLab through Playwright, and reading the widget back out of the page.

The widget's DOM (js/*.ts): `.lew-root` per view (a finished run's renders inside `.lew-saved`,
the HTML its output is replaced by); `.lew-state.lew-state-<status>` in the status bar;
`.lew-stop` button; `.lew-power canvas`; `.lew-heatmap canvas` + `.lew-caption`; `.lew-tok` spans
with `data-i`; `.lew-tooltip` (role=tooltip); `.lew-cards`; `data-version` on the root after each
frame, and a `lew-frame` event (non-bubbling, caught in the capture phase) per frame.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page

# Polls the first widget at ~10 Hz: its state, a hash of the power chart's pixels (a new hash is a
# redraw with new content), token count and store version; and logs every `lew-frame`.
PROBE_JS = """
() => {
  if (window.__lew) return;
  const t0 = performance.now();
  const probe = { samples: [], frames: [] };
  window.__lew = probe;
  const stateOf = (root) => {
    const s = root && root.querySelector('.lew-state');
    return s ? s.className.replace(/.*lew-state-(\\S+).*/, '$1') : null;
  };
  const hashCanvas = (c) => {
    if (!c || !c.width || !c.height) return null;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 2166136261;
    for (let i = 0; i < d.length; i += 3) { h ^= d[i]; h = Math.imul(h, 16777619); }
    return (h >>> 0).toString(16);
  };
  document.addEventListener('lew-frame', (ev) => {
    const root = ev.target.querySelector ? ev.target.querySelector('.lew-root') : null;
    probe.frames.push({ t: performance.now() - t0, version: ev.detail.version,
                        state: stateOf(root) });
  }, true);
  probe.timer = setInterval(() => {
    const root = document.querySelector('.lew-root');
    if (!root) return;
    probe.samples.push({
      t: performance.now() - t0,
      state: stateOf(root),
      power: hashCanvas(root.querySelector('.lew-power canvas')),
      tokens: root.querySelectorAll('.lew-tok').length,
      version: root.dataset.version || null,
    });
  }, 100);
}
"""


def open_notebook(page: Page, base_url: str, name: str, timeout_ms: float = 60_000) -> None:
    """Open `name` in a fresh workspace and wait until its kernel is ready."""
    page.goto(f"{base_url}/lab/tree/{name}?reset", timeout=timeout_ms)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout_ms)
    page.evaluate(
        """async (name) => {
          const app = window.jupyterapp;
          await app.started;
          await app.restored;
          const deadline = Date.now() + 60000;
          let nb = null;
          while (Date.now() < deadline) {
            const w = app.shell.currentWidget;
            if (w && w.context && w.context.path === name && w.sessionContext) { nb = w; break; }
            await new Promise((r) => setTimeout(r, 100));
          }
          if (!nb) throw new Error('notebook ' + name + ' did not open');
          await nb.context.ready;
          await nb.sessionContext.ready;
        }""",
        name,
    )
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
          return k && k.status === 'idle';
        }""",
        timeout=timeout_ms,
    )


def install_probe(page: Page) -> None:
    page.evaluate(PROBE_JS)


def run_all(page: Page) -> None:
    """Start every cell and return at once (the command's promise settles only when all ran)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def probe_data(page: Page) -> dict[str, Any]:
    return dict(
        page.evaluate("() => ({samples: window.__lew.samples, frames: window.__lew.frames})")
    )


def widget(page: Page, nth: int = 0) -> Locator:
    return page.locator(".jp-Notebook .lew-root").nth(nth)


def wait_state(root: Locator, state: str, timeout_ms: float) -> None:
    root.locator(f".lew-state.lew-state-{state}").wait_for(state="attached", timeout=timeout_ms)


def wait_tokens(page: Page, n: int, timeout_ms: float, nth: int = 0) -> None:
    page.wait_for_function(
        "([n, nth]) => { const r = document.querySelectorAll('.jp-Notebook .lew-root')[nth];"
        " return !!r && r.querySelectorAll('.lew-tok').length >= n; }",
        arg=[n, nth],
        timeout=timeout_ms,
    )


def wait_saved_views(page: Page, n: int, timeout_ms: float) -> None:
    """`n` outputs hold a finished run's final bundle and its interactive view has rendered
    (`.lew-saved[data-lew-rendered="1"]`: the script in a trusted output's HTML)."""
    page.wait_for_function(
        "(n) => document.querySelectorAll("
        "'.jp-Notebook .lew-saved[data-lew-rendered=\"1\"] .lew-root').length >= n",
        arg=n,
        timeout=timeout_ms,
    )


def wait_kernel_idle(page: Page, timeout_ms: float) -> None:
    """All queued cells have run (the kernel is idle and no cell shows `[*]`)."""
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
          if (!k || k.status !== 'idle') return false;
          return ![...document.querySelectorAll('.jp-InputPrompt')]
            .some((p) => p.textContent.includes('*'));
        }""",
        timeout=timeout_ms,
        polling=200,
    )


def cell_outputs(page: Page) -> list[list[dict[str, Any]]]:
    """Each code cell's outputs as nbformat JSON, read from the notebook model (not the DOM)."""
    return list(
        page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets
                 .filter((c) => c.model.type === 'code')
                 .map((c) => c.model.outputs.toJSON())"""
        )
    )


def outputs_text(outputs: list[list[dict[str, Any]]]) -> str:
    """stdout/stderr, text/plain results and errors of all cells, in order."""
    parts: list[str] = []
    for cell in outputs:
        for o in cell:
            kind = o.get("output_type")
            if kind == "stream":
                text = o.get("text", "")
                parts.append("".join(text) if isinstance(text, list) else str(text))
            elif kind in ("execute_result", "display_data"):
                plain = o.get("data", {}).get("text/plain", "")
                parts.append("".join(plain) if isinstance(plain, list) else str(plain))
            elif kind == "error":
                parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "\n".join(parts)


def run_code(page: Page, source: str, timeout_ms: float = 60_000) -> list[dict[str, Any]]:
    """Append a code cell to the open notebook, run it, and return its outputs."""
    page.evaluate(
        """(source) => {
          const panel = window.jupyterapp.shell.currentWidget;
          const nb = panel.content;
          const n = nb.model.cells.length;
          nb.model.sharedModel.insertCell(n, { cell_type: 'code', source });
          nb.activeCellIndex = n;
          window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        source,
    )
    wait_kernel_idle(page, timeout_ms)
    return cell_outputs(page)[-1]


def stop_probe(page: Page) -> None:
    page.evaluate("() => window.__lew && clearInterval(window.__lew.timer)")


def canvas_colour_count(canvas: Locator) -> int:
    """How many distinct colours a canvas holds (a drawn heatmap has many, a blank one 1)."""
    return int(
        canvas.evaluate(
            """(c) => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const seen = new Set();
              for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] === 0) continue;
                seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                if (seen.size > 1000) break;
              }
              return seen.size;
            }"""
        )
    )


TOAST_CSS = ".jp-toastContainer, .Toastify { display: none !important; }"


def hide_toasts(page: Page) -> list[str]:
    """Hide JupyterLab's notification toasts (they float over the outputs in screenshots) and
    return what they said, so a test can still see them. Idempotent."""
    texts = list(
        page.evaluate(
            """(css) => {
              if (!document.getElementById('lew-no-toasts')) {
                const s = document.createElement('style');
                s.id = 'lew-no-toasts';
                s.textContent = css;
                document.head.appendChild(s);
              }
              return [...document.querySelectorAll('.jp-toastContainer .Toastify__toast')]
                .map((t) => t.textContent || '');
            }""",
            TOAST_CSS,
        )
    )
    return texts


def set_theme(page: Page, theme: str) -> None:
    page.evaluate(
        "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
    )
    page.wait_for_function(
        "(theme) => document.body.dataset.jpThemeName === theme", arg=theme, timeout=15_000
    )
