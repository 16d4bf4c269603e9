"""js/protocol.ts's constants are view.wire's: the frontend's PROTOCOL, bundled with esbuild and
read under node, equals `protocol_constants()`, and the run meta carries the same version."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_energy_widget.testing import synthetic_run
from llm_energy_widget.view.wire import POWER_COLS, WIRE_VERSION, protocol_constants, run_meta

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"

needs_node = pytest.mark.skipif(
    NODE is None or not ESBUILD.exists(), reason="needs node and node_modules (npm ci)"
)


def js_protocol(tmp: Path) -> dict[str, object]:
    out = tmp / "protocol.mjs"
    subprocess.run(
        [str(ESBUILD), str(ROOT / "js" / "protocol.ts"), "--bundle", "--format=esm",
         f"--outfile={out}", "--log-level=warning"],
        check=True,
        timeout=60,
    )  # fmt: skip
    url = json.dumps(out.as_uri())
    script = f"import {{ PROTOCOL }} from {url}; console.log(JSON.stringify(PROTOCOL));"
    r = subprocess.run(
        [str(NODE), "--input-type=module", "-e", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(r.stdout)


@needs_node
def test_protocol_ts_equals_wire_protocol_constants(tmp_path: Path) -> None:
    assert js_protocol(tmp_path) == protocol_constants()


def test_run_meta_sends_the_wire_version_and_power_columns() -> None:
    meta = run_meta(synthetic_run(n_tokens=2), "k")
    assert meta["wire_version"] == WIRE_VERSION == protocol_constants()["WIRE_VERSION"]
    assert meta["power_cols"] == list(POWER_COLS)
