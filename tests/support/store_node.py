"""Run the built bundle's RunStore and view functions under node, fed what a real widget sent.

The views' text (status fields, cards, captions, tooltips) is computed by pure functions of the
store that the bundle exports, so their logic is checked here without a browser.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.run import Run
from llm_energy_widget.view.widget import BUNDLE_JS
from llm_energy_widget.view.wire import run_meta, snapshot_of

NODE = shutil.which("node")
SCRIPT = Path(__file__).with_name("store_eval.mjs")

needs_node = pytest.mark.skipif(
    NODE is None or not BUNDLE_JS.is_file(), reason="needs node and the bundle (npm run build)"
)


def _b64(buffers: list[bytes]) -> list[str]:
    return [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]


def snapshot_items(run: Run) -> tuple[dict[str, Any], list[Any]]:
    """(meta, items) of a finished run's widget state: the meta and the snapshot trait."""
    snap = snapshot_of(run)
    meta = run_meta(run, snap["header"]["run_key"])
    return meta, [["snapshot", snap["header"], _b64(snap["buffers"])]]


def captured_items(items: list[tuple[str, float, Any, list[bytes]]]) -> list[Any]:
    """Custom messages and snapshot traits from a `support.widget.Capture`, in order."""
    return [[k, c, _b64(b)] for k, _t, c, b in items if k in ("msg", "snapshot")]


def eval_store(meta: dict[str, Any], items: list[Any], body: str, live: bool = False) -> Any:
    """What the JS function body `body` (seeing `mod` and `store`) returns, from JSON."""
    assert NODE is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.json"
        path.write_text(json.dumps({"meta": meta, "items": items, "body": body, "live": live}))
        out = subprocess.run(
            [NODE, str(SCRIPT), str(BUNDLE_JS), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def eval_run(run: Run, body: str) -> Any:
    meta, items = snapshot_items(run)
    return eval_store(meta, items, body)
