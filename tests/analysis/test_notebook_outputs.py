"""What a saved notebook holds after showing run.figures and compare(): measured with nbclient.

A real kernel (this venv's `python3`, importing this checkout) runs a notebook of synthetic runs,
including a long 30-layer x 12-component one, and the executed notebook is read back as nbformat
writes it. JupyterLab later adds a PNG to each plotly output (its extension caches one); the
browser test (tests/browser/test_figures_lab.py) measures the notebook as Lab saves it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.analysis.html import PLOTLY_MIME, PLOTLYJS_MARKER

REPO = Path(__file__).resolve().parents[2]
MAX_FIGURE_OUTPUT_BYTES = 300_000
KERNEL_SIDE_BYTES = 150_000
"""What the kernel writes per figure output at most: the rest of the 300 KB is for the PNG that
JupyterLab's plotly extension adds to each output it renders."""

CELLS = [
    "from llm_energy_widget.testing import synthetic_run\n"
    "from llm_energy_widget.analysis import compare\n"
    "comps = tuple(f'comp{i}' for i in range(12))\n"
    "big = synthetic_run(n_tokens=3000, n_layers=30, components=comps)\n"
    "a = synthetic_run(n_tokens=40, n_layers=30, components=comps, seed=1)\n"
    "b = synthetic_run(n_tokens=60, n_layers=30, components=comps, seed=2, token_ms=45.0)\n"
    "a.settings['max_new_tokens'], b.settings['max_new_tokens'] = 40, 60",
    "big.figures",
    "compare([a, b])",
    "a.figures",
]


def _execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    path = tmp_path / "figures.ipynb"
    nbformat.write(nb, path)
    return json.loads(path.read_text())


def test_saved_notebook_holds_plotlyjs_once_and_small_figure_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.perf_counter()
    nb = _execute(tmp_path, monkeypatch)
    elapsed_s = time.perf_counter() - t0
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"], outputs
    text = json.dumps(nb)
    assert text.count(PLOTLYJS_MARKER) == 1  # one copy, in the first figure output's cell
    assert any(PLOTLYJS_MARKER in "".join(o.get("data", {}).get("text/html", ""))
               for o in cells[1]["outputs"])  # fmt: skip

    figures = [o for o in outputs if PLOTLY_MIME in o.get("data", {})]
    per_cell = [sum(PLOTLY_MIME in o.get("data", {}) for o in c["outputs"]) for c in cells]
    assert per_cell == [0, 5, 4, 5]  # one output per figure: run.figures 5, compare() 4
    sizes = [
        (i, _title(o), len(json.dumps(o, indent=1)))
        for i, c in enumerate(cells)
        for o in c["outputs"]
        if PLOTLY_MIME in o.get("data", {})
    ]
    print("figure output bytes:", *sizes, sep="\n  ")
    assert max(size for *_, size in sizes) <= KERNEL_SIDE_BYTES < MAX_FIGURE_OUTPUT_BYTES, sizes
    for o in figures:
        assert o["data"][PLOTLY_MIME]["layout"]["height"] >= 300
        assert "text/html" in o["data"]
        assert "text/plain" in o["data"]
    headline = cells[2]["outputs"][0]["data"]
    assert "<table" in "".join(headline["text/html"])
    assert PLOTLY_MIME not in headline
    assert elapsed_s < 120, f"the notebook took {elapsed_s:.0f} s"


def _title(output: dict[str, Any]) -> str:
    return str(output["data"][PLOTLY_MIME]["layout"]["title"]["text"]).split("<br>")[0]
