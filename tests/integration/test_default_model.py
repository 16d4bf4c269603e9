"""The real default model (SmolLM2-135M-Instruct GGUF) through the CLI, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMPT = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("cli") / "out.json"
    store = out.parent / "runs.sqlite"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_energy_widget",
            "profile",
            "--prompt",
            PROMPT,
            "--max-new-tokens",
            "12",
            "--json",
            str(out),
            "--store",
            str(store),
            "--baseline-s",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(Path(out).read_text()), proc.stdout


def test_answers_paris_with_positive_token_energies(profiled: tuple[dict, str]) -> None:
    run, stdout = profiled
    assert "Paris" in run["response"]
    assert run["status"] == "completed"
    assert run["power"]["kind"] in ("measured", "estimated")
    assert run["tokens"]
    assert all(t["energy_j"] > 0 for t in run["tokens"])
    assert all(t["duration_ms"] > 0 for t in run["tokens"])
    names = [p["name"] for p in run["phases"]]
    assert "prefill" in names
    assert "decode" in names
    assert all(p["energy_j"] is not None and p["energy_j"] >= 0 for p in run["phases"])
    assert "decode J/token" in stdout
    assert "Paris" in stdout


def test_thirty_layer_component_table(profiled: tuple[dict, str]) -> None:
    run, stdout = profiled
    layers = run["layers"]
    assert len(layers["layer_names"]) == 30
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        layers["component_names"]
    )
    values = layers["values"]
    assert len(values) == len(run["tokens"])
    assert len(values[0]) == 30
    assert len(values[0][0]) == len(layers["component_names"])
    t_idx = layers["metric_names"].index("time_ms")
    e_idx = layers["metric_names"].index("energy_j")
    assert all(c[t_idx] is not None and c[t_idx] > 0 for c in values[0][0])
    instrumented = [i for i, t in enumerate(run["tokens"]) if t["instrumented"]]
    assert instrumented[0] == 0  # the prefill; bare tokens' rows are all None (never zeros)
    last = values[instrumented[-1]]
    assert all(c[e_idx] is not None and c[e_idx] > 0 for c in last[-1])
    bare = [i for i, t in enumerate(run["tokens"]) if t["instrumented"] is False]
    assert all(c[t_idx] is None for i in bare for row in values[i] for c in row)
    assert run["labels"]["layers.energy_j"] == "modeled"
    assert "layer x component: 30 layers" in stdout


def test_summary_shape(profiled: tuple[dict, str]) -> None:
    run, _ = profiled
    s = run["summary"]
    for key in (
        "total_energy_j",
        "net_energy_j",
        "decode_j_per_token",
        "decode_tokens_per_j",
        "tokens_per_s",
        "ttft_ms",
        "prefill_energy_j",
        "decode_energy_j",
        "edp_js",
        "cost_usd",
        "co2_g",
    ):
        assert key in s
    assert s["total_energy_j"] > 0
    assert s["decode_j_per_token"] > 0
    assert s["ttft_ms"] > 0
    assert run["model"]["features"].get("layers", 30) == 30
