"""Figures in notebook outputs: one output per figure, plotly.js inlined at most once per notebook.

Each figure is its own display output carrying three versions of itself:

- `application/vnd.plotly.v1+json`: what JupyterLab (plotly's own `jupyterlab-plotly` extension,
  installed with plotly) and VS Code (its Jupyter renderers) draw. It needs no script and no
  trust, so a notebook reopened later, or opened by someone else, still renders.
- `text/html`: a sized `<div>` and a script drawing it with the page's `window.Plotly`, for
  nbconvert HTML, nbviewer and any frontend without the plotly mime renderer. plotly.js itself
  is not in it: it is inlined once per notebook, as plotly's own `notebook` renderer does, in a
  separate output before the first figure (about 4.8 MB; no CDN: exported HTML renders offline).
  The script waits for plotly.js (outputs may render out of order) and says so if it never comes.
- `text/plain`: the figure's title.

Where the one copy lives is tracked by cell: re-running that cell, or deleting it, inlines a
fresh copy; another cell does not (`PlotlyJsCopy`). A kernel that restarts looks for the copy in
the saved notebook first, so "restart, run one cell" does not add a second.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..notebook.cells import parent_request
from .theme import plain_title

__all__ = [
    "PLOTLYJS_MARKER",
    "PlotlyJsCopy",
    "display_figures",
    "figure_bundle",
    "figure_html",
    "figures_html",
    "plotlyjs_copy",
]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLYJS_MARKER = "* plotly.js v"
"""The banner plotly.min.js starts with: how a saved notebook's copies are counted."""
CONFIG = {"displaylogo": False}
"""No `responsive`: in JupyterLab's plotly extension it collapses every figure to 0 px when the
theme changes (plotly.js re-reads the output's height); the extension resizes figures itself."""
HTML_CONFIG = {**CONFIG, "responsive": True}
"""The HTML version follows the page's width itself (nbconvert pages have no theme switch)."""
WAIT_MS = 20_000
"""How long a figure's HTML waits for plotly.js (another output may render after it)."""
MAX_NOTEBOOK_SCAN_BYTES = 256 * 1024 * 1024

_MISSING = (
    "This interactive figure needs plotly.js, which llm-energy-widget inlines once per notebook "
    "in the first figure output; that output is not in this page. Re-run the cell that shows "
    "the figures (or the first one) to put it back."
)


def _fig_dict(fig: Any) -> dict[str, Any]:
    """The figure as JSON-ready data (plotly's own encoder), with our config."""
    import plotly.io as pio

    d: dict[str, Any] = json.loads(pio.to_json(fig, validate=False, remove_uids=True))
    d["config"] = dict(CONFIG)
    return d


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no '</script>', no HTML comment openers)."""
    return (
        json.dumps(obj, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def figure_html(fig: Any, fig_dict: dict[str, Any] | None = None) -> str:
    """A sized div plus a script that draws it with the page's plotly.js once it is there."""
    d = dict(fig_dict if fig_dict is not None else _fig_dict(fig))
    d["config"] = dict(HTML_CONFIG)
    height = d.get("layout", {}).get("height") or 450
    div_id = f"lew-fig-{uuid.uuid4().hex}"
    missing = json.dumps(_MISSING)
    return (
        f'<div id="{div_id}" class="lew-figure" style="width:100%;height:{int(height)}px"></div>\n'
        "<script>(function () {\n"
        f'  var gd = document.getElementById("{div_id}");\n'
        "  if (!gd) return;\n"
        f"  var fig = {_script_json(d)};\n"
        "  var t0 = Date.now();\n"
        "  (function draw() {\n"
        "    if (window.Plotly && window.Plotly.newPlot) {\n"
        "      window.Plotly.newPlot(gd, fig.data, fig.layout, fig.config);\n"
        f"    }} else if (Date.now() - t0 < {WAIT_MS}) {{\n"
        "      setTimeout(draw, 100);\n"
        "    } else {\n"
        "      gd.style.height = 'auto';\n"
        f"      gd.textContent = {missing};\n"
        "    }\n"
        "  })();\n"
        "})();</script>"
    )


def figure_bundle(fig: Any) -> dict[str, Any]:
    """The mime bundle of one figure output (plotly JSON, HTML without plotly.js, title)."""
    d = _fig_dict(fig)
    title = plain_title(str(d.get("layout", {}).get("title", {}).get("text") or "plotly figure"))
    return {
        PLOTLY_MIME: d,
        "text/html": figure_html(fig, d),
        "text/plain": f"<Figure: {title}>",
    }


# -- plotly.js, once per notebook -----------------------------------------------------------------


def _saved_copy_cell(path: str | None, current_cell: str | None) -> str | None:
    """The id of a cell other than the current one whose saved outputs hold plotly.js."""
    if not path or not path.endswith(".ipynb"):
        return None
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > MAX_NOTEBOOK_SCAN_BYTES:
            return None
        text = p.read_text(encoding="utf-8")
        if PLOTLYJS_MARKER not in text:
            return None
        nb = json.loads(text)
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        cid = cell.get("id")
        if cid == current_cell:
            continue
        for out in cell.get("outputs", []):
            html_text = out.get("data", {}).get("text/html", "")
            if isinstance(html_text, list):
                html_text = "".join(html_text)
            if PLOTLYJS_MARKER in html_text:
                return str(cid) if cid else "saved"
    return None


@dataclass
class PlotlyJsCopy:
    """Where this kernel put (or found) the notebook's one copy of plotly.js.

    `cell` is the id of the cell whose outputs hold it ("?" when the frontend sends no cell
    ids, "plotly" when plotly's own notebook renderer put it there first), `msg_id` the execute
    request that wrote it (so a cell showing two sets of figures carries one copy).
    """

    cell: str | None = None
    msg_id: str | None = None
    emitted: bool = False
    checked_saved: bool = False

    def needed(self, parent: dict[str, Any]) -> bool:
        """Whether this output has to carry plotly.js (and remember that it does)."""
        meta = parent.get("metadata") or {}
        cell = meta.get("cellId")
        msg_id = (parent.get("header") or {}).get("msg_id")
        if self.cell is not None and self.cell in (meta.get("deletedCells") or []):
            self.cell = None  # the cell holding it is gone
        if self.cell is not None:
            if self.cell != cell or self.msg_id == msg_id:
                return False
            self.cell = None  # that cell is running again: its old outputs were cleared
        elif not self.emitted and _plotly_notebook_renderer_done():
            self.cell, self.msg_id = "plotly", None  # plotly's own renderer put it somewhere
            return False
        if not self.checked_saved:
            self.checked_saved = True
            saved = _saved_copy_cell(os.environ.get("JPY_SESSION_NAME"), cell)
            if saved is not None:
                self.cell, self.msg_id = saved, None
                return False
        self.cell, self.msg_id, self.emitted = (cell or "?"), msg_id, True
        return True


_COPY = PlotlyJsCopy()


def plotlyjs_copy() -> PlotlyJsCopy:
    """This kernel's record of the notebook's plotly.js copy (for tests and diagnostics)."""
    return _COPY


def _offline_notebook_renderers() -> list[Any]:
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    return [
        r
        for r in getattr(pio.renderers, "_default_renderers", [])
        if isinstance(r, NotebookRenderer) and not r.connected
    ]


def _plotly_notebook_renderer_done() -> bool:
    """plotly's default `notebook` renderer already inlined plotly.js in this kernel."""
    import plotly.io as pio

    pending = getattr(pio.renderers, "_to_activate", None)
    if pending is None:
        return False
    return any(r not in pending for r in _offline_notebook_renderers())


def _emit_plotlyjs() -> None:
    """plotly's own offline notebook init (one output holding plotly.js); plotly's default
    renderer is marked done so a plain `fig.show()` later does not add a second copy."""
    import plotly.io as pio

    pio.renderers["notebook"].activate()
    pending = getattr(pio.renderers, "_to_activate", None)
    if isinstance(pending, list):
        for r in _offline_notebook_renderers():
            if r in pending:
                pending.remove(r)


def display_figures(figs: Sequence[Any]) -> None:
    """One output per figure; plotly.js first when this notebook has no copy of it yet."""
    from IPython.display import display

    if not figs:
        return
    if _COPY.needed(parent_request()):
        _emit_plotlyjs()
    for fig in figs:
        display(figure_bundle(fig), raw=True)


# -- standalone HTML --------------------------------------------------------------------------


def figures_html(figs: Sequence[Any], include_plotlyjs: bool = True) -> str:
    """Figures as one HTML fragment for a file: plotly.js inline once, or expected in the page."""
    parts = []
    if include_plotlyjs and figs:
        from plotly.offline import get_plotlyjs

        parts.append(f"<script>{get_plotlyjs()}</script>")
    parts.extend(figure_html(fig) for fig in figs)
    return "\n".join(parts)
