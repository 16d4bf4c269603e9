"""Quantization and dtype as sweep axes, on a tiny random Llama (SmolLM2 tokenizer).

The tiny Llama: 2 layers, hidden 32, MLP 64, 2 heads of 16 and 1 KV head, no biases, untied
vocabulary V = len(tokenizer). Its nn.Linear weights per layer: q 32·32 + k 32·16 + v 32·16 +
o 32·32 + gate, up, down 3 · 32·64 = 9216, and the LM head 32·V; besides them, fp32 only: the
embedding 32·V and the RMSNorm weights (2 per layer and 1 final, 32 each: 160). int8 dynamic
quantization packs every Linear weight at 1 byte:
    weights  2 · 9216 + 64 · V + 160
    bytes    (2 · 9216 + 32 · V) · 1 + (32 · V + 160) · 4
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.law_runs import law_run
from support.models import tiny_llama

from llm_energy_widget.analysis import sweep
from llm_energy_widget.analysis.predict import _points_from_store, points_from_runs
from llm_energy_widget.analysis.sweep import grid_points
from llm_energy_widget.analysis.sweep_workers import _int8, skip_reason
from llm_energy_widget.errors import InvalidInputError, RunError
from llm_energy_widget.profiling.features import model_features, weight_counts
from llm_energy_widget.store import Store

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(scope="module")
def tiny(smollm_tokenizer: Any) -> tuple[Any, Any]:
    tok = smollm_tokenizer
    return tiny_llama(vocab_size=len(tok), max_positions=512, heads=2, kv_heads=1), tok


def _sweep(tiny: tuple[Any, Any], grid: dict[str, Any], tmp_path: Path) -> Any:
    return sweep(
        tiny, "The quick brown fox", {"max_new_tokens": 3, "input_tokens": 6, **grid},
        store=tmp_path / "runs.sqlite", power="estimate", level="token", baseline_s=0.0,
        progress=False,
    )  # fmt: skip


def test_int8_runs_4bit_is_skipped_with_its_reason(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    c = _sweep(tiny, {"quantization": [None, "int8", "4bit"]}, tmp_path)
    assert [r.settings["quantization"] for r in c.runs] == [None, "int8"]
    assert all(r.status == "completed" and r.n_tokens == 3 for r in c.runs)
    assert all(r.response for r in c.runs)  # outputs recorded
    assert c.failures == []
    [skip] = c.skipped
    assert skip["point"]["quantization"] == "4bit"
    # this machine has neither bitsandbytes nor CUDA (say which is missing first)
    assert skip["reason"].startswith("4bit needs bitsandbytes")
    assert c.notes == [f"1 of 3 sweep points skipped: {skip['reason']}"]
    plain, q8 = c.runs
    assert plain.model["features"]["quantization"] is None
    assert q8.model["features"]["quantization"] == "int8 dynamic (torch, nn.Linear)"
    v = len(tiny[1])
    feats = q8.model["features"]
    assert feats["parameters"] == 2 * 9216 + 64 * v + 160
    assert feats["weight_bytes"] == (2 * 9216 + 32 * v) + 4 * (32 * v + 160)
    assert plain.model["features"]["bytes_per_param"] == 4.0
    # the given model is untouched: still float Linear layers
    assert type(tiny[0].lm_head) is nn.Linear
    # compare shows the axis that varies
    assert list(c.table["quantization"]) == ["none", "int8"]
    assert "quantization" in c.to_text()
    # predict reads the packed weights' bytes
    [pt] = points_from_runs([q8])
    assert pt.bytes_per_param == pytest.approx(feats["weight_bytes"] / feats["parameters"])
    # and so do the store's runs: one model name, fp32 and int8 runs each with their own bytes
    with Store(tmp_path / "runs.sqlite", read_only=True) as st:
        stored = {p.run_id: p.bytes_per_param for p in _points_from_store(st, None, "cpu")}
    assert stored == {plain.run_id: 4.0, q8.run_id: pt.bytes_per_param}


def test_a_sweep_with_no_quantization_axis_has_no_quantization_column(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    c = _sweep(tiny, {"max_new_tokens": [2, 3]}, tmp_path)
    assert "quantization" not in c.table.columns
    assert c.skipped == []
    assert all("quantization" not in r.settings for r in c.runs)


def test_every_point_skipped_is_an_error_naming_why(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"every sweep point was skipped .*4bit needs"):
        _sweep(tiny, {"quantization": "4bit"}, tmp_path)


def test_dtype_is_an_axis(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    c = _sweep(tiny, {"dtype": ["float32", "bfloat16", "float16"]}, tmp_path)
    assert [r.settings["dtype"] for r in c.runs] == ["float32", "bfloat16", "float16"]
    assert [r.model["features"]["bytes_per_param"] for r in c.runs] == [4.0, 2.0, 2.0]
    assert all(r.status == "completed" and r.n_tokens == 3 for r in c.runs)
    assert tiny[0].dtype == torch.float32  # restored after the points


def test_packed_int8_weights_count_one_byte_each() -> None:
    """Two Linear 64 -> 64 without bias: 2 · 4096 weights, 1 byte each once packed; with a bias
    (kept fp32): 4096 + 64 weights in 4096 + 4 · 64 = 4352 bytes."""
    bare = _int8(nn.Sequential(nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False)))
    assert weight_counts(bare) == (8192, 8192)
    biased = _int8(nn.Sequential(nn.Linear(64, 64)))
    assert weight_counts(biased) == (4160, 4352)
    fp32 = nn.Sequential(nn.Linear(64, 64, bias=False))
    assert weight_counts(fp32) == (4096, 4 * 4096)


def test_features_of_an_int8_model(tiny: tuple[Any, Any]) -> None:
    q = _int8(tiny[0])
    f = model_features(q, quantization=q.config._llm_energy_quantization)
    v = len(tiny[1])
    n, b = 2 * 9216 + 64 * v + 160, (2 * 9216 + 32 * v) + 4 * (32 * v + 160)
    assert (f["parameters"], f["weight_bytes"]) == (n, b)
    assert f["bytes_per_param"] == pytest.approx(b / n)


def test_skip_reasons_and_bad_values() -> None:
    assert skip_reason(None, None, None, True) is None
    assert skip_reason("int8", None, "cpu", False) is None
    assert "CPU only" in str(skip_reason("int8", None, "cuda", True))
    assert "float32" in str(skip_reason("int8", "bfloat16", "cpu", True))
    with pytest.raises(InvalidInputError, match="quantization must be"):
        skip_reason("int4", None, None, True)
    with pytest.raises(InvalidInputError, match="grid quantization values"):
        grid_points({"quantization": ["int4"]})


def test_predict_uses_the_counted_bytes_per_param() -> None:
    """A run whose features say 1.25 bytes a weight (mostly int8): the fit's weight bytes are
    parameters · 1.25, not the fp32 dtype's 4."""
    feats = {"parameters": 1000, "dtype": "float32", "kv_cache_bytes_per_token": 10,
             "bytes_per_param": 1.25}  # fmt: skip
    [pt] = points_from_runs([law_run(8, 5, 0.6, 0.25, features=feats)])
    assert pt.bytes_per_param == 1.25
    assert pt.columns()["weight_bytes"] == 1250.0
