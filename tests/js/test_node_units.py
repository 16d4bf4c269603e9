"""The node unit tests of the frontend (tests/js/*.test.ts, `npm test`), with the round-trip
contract: a snapshot written by the Python encoder (`view.wire.snapshot_of`) is decoded by the
JS store and checked against the run's own values, written alongside it as JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llm_energy_widget.testing import synthetic_run
from llm_energy_widget.view.wire import (
    POWER_COLS,
    relative_precision,
    run_meta,
    snapshot_of,
)

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
RUNNER = ROOT / "tests" / "js" / "run.mjs"

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "esbuild").is_dir(),
    reason="needs node and node_modules (npm ci)",
)


def _nulls(x: Any) -> Any:
    if isinstance(x, list):
        return [_nulls(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_fixture(out: Path, n_tokens: int = 12, n_layers: int = 3) -> dict[str, Any]:
    run = synthetic_run(n_tokens=n_tokens, n_layers=n_layers)
    snap = snapshot_of(run)
    header, buffers = snap["header"], snap["buffers"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(run_meta(run, header["run_key"])))
    (out / "header.json").write_text(json.dumps(header))
    for i, b in enumerate(buffers):
        (out / f"buffer_{i}.bin").write_bytes(b)
    names = header["buffers"]
    power = np.frombuffer(buffers[names.index("power")], dtype=np.float32).reshape(
        -1, len(POWER_COLS)
    )
    ranges = np.frombuffer(buffers[names.index("layer_range")], dtype=np.float32)
    n_live = header["layers"]["shape"][2]
    toks = run.tokens()
    expected = {
        "n_tokens": len(toks),
        "token_text": [t["text"] for t in toks],
        "token_energy_j": [t["energy_j"] for t in toks],
        "power": _nulls(power.astype(np.float64).tolist()),
        "layers": _nulls(run.layers.astype(np.float64).tolist()),
        "layers_ms": [t["layers_ms"] for t in toks],
        "precision": _nulls(relative_precision(ranges.reshape(-1, n_live, 2)).tolist()),
        "total_energy_j": run.summary()["total_energy_j"],
    }
    (out / "expected.json").write_text(json.dumps(expected))
    return expected


def run_node_tests(fixture: Path | None, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEW_JS_TEST_OUT": str(tmp / "bundled")}
    if fixture is not None:
        env["LEW_WIRE_FIXTURE"] = str(fixture)
    return subprocess.run(
        [str(NODE), str(RUNNER)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_node_unit_tests_and_python_round_trip(tmp_path: Path) -> None:
    expected = write_fixture(tmp_path / "fixture")
    assert expected["n_tokens"] == 12
    assert len(expected["power"]) > 2
    r = run_node_tests(tmp_path / "fixture", tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "# fail 0" in r.stdout
    assert "# skipped 0" in r.stdout  # the round trip ran
