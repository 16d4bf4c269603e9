"""Sizes of what a finished run leaves in a notebook (issue 10), against their budgets.

- a saved notebook holding two 48-token component-level runs (the quickstart's outputs: the
  profiler's widget and the first run's cell show run 1, a later cell run 2) <= 400 KB;
- one holding a 2,000-token run (its widget and its cell) <= 1.5 MB;
- the saved snapshot (the `snapshot` trait, saved with widget state) of a 2,000-token
  30 x 12 run <= 1 MB;
- `run.to_html()` of a 48-token 30 x 12 run, self-contained and offline (~225 KB for the
  quickstart's run, --real; a synthetic run's noise activations compress worse: 250 KB).

Synthetic 30 x 12 runs (SmolLM2's shape at component level) go through the real display path
(`tests/support/notebook.FakeNotebook` applies display messages as JupyterLab and
nbclient do). With --real, the quickstart (48 tokens, as shipped) and a second 48-token prompt
are also executed headless with the default model, as `make demo` does, and that file is sized.

    .venv/bin/python benchmarks/notebook_sizes.py [--real] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from support.notebook import FakeNotebook  # noqa: E402
from support.widget import events_with_full_power  # noqa: E402

from llm_energy_widget.core.recorder import Recorder  # noqa: E402
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_run  # noqa: E402
from llm_energy_widget.view.report import to_html  # noqa: E402
from llm_energy_widget.view.widget import EnergyWidget, display_run  # noqa: E402
from llm_energy_widget.view.wire import saved_snapshot, snapshot_of  # noqa: E402

COMPONENTS_12 = tuple(f"c{i}" for i in range(12))
BUDGETS = {
    "notebook_two_48_token_runs": 400_000,
    "notebook_2000_token_run": 1_500_000,
    "snapshot_2000_tokens": 1_000_000,
    # synthetic activations are uniform noise, the worst case for the report's deflated data
    "report_48_tokens_synthetic": 250_000,
}
REAL_BUDGETS = {
    "executed_quickstart_two_48_token_runs": 400_000,
    "executed_report_48_tokens": 225_000,
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def quickstart_notebook(n_tokens: int, runs: int) -> FakeNotebook:
    nb = FakeNotebook()
    w = EnergyWidget()
    with nb.cell("w = profiler.widget(); w"):
        w._ipython_display_()
    for k in range(runs):
        run = new_synthetic_run(n_layers=30, components=COMPONENTS_12)
        Recorder(run).status("running")
        with nb.cell(f"run{k} = profiler.generate(...); run{k}"):
            w.attach(run)
            display_run(run)
        for name, args in events_with_full_power(n_tokens, 30, components=COMPONENTS_12):
            apply_event(run, name, args)
        Recorder(run).finish("completed", "synthetic run complete")
    assert nb.widget_views() == [], "a finished run's output still holds the widget view"
    return nb


def parts_of(output: dict[str, Any]) -> dict[str, int]:
    """Bytes of one output's parts, as saved (JSON strings)."""
    data = output["data"]
    html = data["text/html"]
    blob = re.search(r'class="lew-saved-data">([^<]*)<', html)
    boot = re.search(r"<script>(.*?)</script>", html, re.S)
    img = re.search(r'src="data:image/png;base64,([^"]*)"', html)
    sizes = {
        "image/png": len(data["image/png"]),
        "text/plain": len(data["text/plain"]),
        "text/html": len(html),
        "html: image": len(img.group(1)) if img else 0,
        "html: run data": len(blob.group(1)) if blob else 0,
        "html: interactive bundle + loader": len(boot.group(1)) if boot else 0,
    }
    sizes["html: static tables, text"] = (
        sizes["text/html"]
        - sizes["html: image"]
        - sizes["html: run data"]
        - sizes["html: interactive bundle + loader"]
    )
    return sizes


def synthetic_sizes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    nb = quickstart_notebook(48, 2)
    try:
        out["notebook_two_48_token_runs"] = nb.saved_bytes()
        out["output_parts_48_tokens"] = parts_of(nb.outputs(0)[0])
    finally:
        nb.close()
    nb = quickstart_notebook(2000, 1)
    try:
        out["notebook_2000_token_run"] = nb.saved_bytes()
        out["output_parts_2000_tokens"] = parts_of(nb.outputs(0)[0])
    finally:
        nb.close()
    run = synthetic_run(n_tokens=2000, n_layers=30, components=COMPONENTS_12)

    def snap_bytes(snap: dict[str, Any]) -> int:
        return len(json.dumps(snap["header"]).encode()) + sum(len(b) for b in snap["buffers"])

    out["snapshot_2000_tokens"] = snap_bytes(saved_snapshot(run))
    out["snapshot_2000_tokens_full_rows"] = snap_bytes(snapshot_of(run))
    with tempfile.TemporaryDirectory() as tmp:
        r48 = synthetic_run(n_tokens=48, n_layers=30, components=COMPONENTS_12)
        out["report_48_tokens_synthetic"] = to_html(r48, Path(tmp) / "r.html").stat().st_size
    return out


QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
SECOND = (
    "run2 = profiler.generate('Name three colours of a sunset.', max_new_tokens=48,"
    " min_new_tokens=48, do_sample=False)\nrun2"
)


def real_sizes() -> dict[str, Any]:
    """The quickstart (48 tokens) and a second 48-token prompt, executed headless."""
    import nbformat

    nb = nbformat.read(QUICKSTART, as_version=4)
    nb.cells += [
        nbformat.v4.new_code_cell(SECOND),
        nbformat.v4.new_code_cell("run2.wait()\nprint('RUNS', run.run_id, run2.run_id)"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        src, dest = Path(tmp) / "q.ipynb", Path(tmp) / "out.ipynb"
        nbformat.write(nb, src)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), env_path()])}
        code = (
            "from llm_energy_widget.notebook.execute import execute_notebook; "
            f"execute_notebook({str(src)!r}, {str(dest)!r}, cwd={tmp!r})"
        )
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=1200)
        seconds = time.monotonic() - t0
        text = dest.read_text()
        assert WIDGET_VIEW not in text
        run_outputs = [
            o
            for c in json.loads(text)["cells"]
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        first = {k: "".join(v) for k, v in run_outputs[0]["data"].items()}
        png = base64.b64decode(first["image/png"])
        return {
            "executed_quickstart_two_48_token_runs": dest.stat().st_size,
            "executed_report_48_tokens": (Path(tmp) / "quickstart-report.html").stat().st_size,
            "executed_outputs_showing_a_run": len(run_outputs),
            "executed_png_bytes": len(png),
            "executed_seconds": round(seconds, 1),
            "executed_bundle_deflate_ratio": round(
                len(zlib.compress(first["text/html"].encode(), 9)) / len(first["text/html"]), 2
            ),
        }


def env_path() -> str:
    return os.environ.get("PYTHONPATH", "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="also execute the quickstart headless")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    sizes = synthetic_sizes()
    budgets = dict(BUDGETS)
    if args.real:
        sizes.update(real_sizes())
        budgets.update(REAL_BUDGETS)
    print("what a finished run leaves in a notebook (bytes as saved)")
    for key, budget in budgets.items():
        value = sizes[key]
        mark = "ok" if value <= budget else "OVER"
        print(f"  {key:<40} {value:>11,}  budget {budget:>11,}  {mark}")
    full = sizes["snapshot_2000_tokens_full_rows"]
    print(f"  {'snapshot_2000_tokens, full rows (before)':<40} {full:>11,}")
    for key in ("output_parts_48_tokens", "output_parts_2000_tokens"):
        print(f"  one output's parts, {key.rsplit('_', 2)[1]} tokens:")
        for part, n in sizes[key].items():
            print(f"    {part:<36} {n:>9,}")
    for key, value in sizes.items():
        if key.startswith("executed_") and key not in budgets:
            print(f"  {key:<40} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(sizes, indent=1))
    over = [k for k, b in budgets.items() if sizes[k] > b]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
