"""Batched statistics equal per-tensor ones bit for bit; forward wrappers come off cleanly."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
from support.archs import build, generate, hook_count, prompt_ids

from llm_energy_widget.profiling.layer_profiler import LayerProfiler
from llm_energy_widget.profiling.stats import (
    N_STATS,
    Batcher,
    row_neg_frac,
    row_stats,
    to_host,
)


def _one_by_one(rows: list[int], tensors: list[torch.Tensor], fn: Any, n_out: int) -> np.ndarray:
    out = np.full((max(rows) + 1, n_out), np.nan, dtype=np.float32)
    for r, t in zip(rows, tensors, strict=True):
        if t.numel():
            out[r] = fn(t.reshape(1, -1).clone())[0].float().numpy()
    return out


def _batched(b: Batcher, rows: list[int], tensors: list[torch.Tensor], n_out: int) -> np.ndarray:
    out = np.full((max(rows) + 1, n_out), np.nan, dtype=np.float32)
    to_host(out, b.reduce(rows, tensors))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("lead", [(1, 1), (2, 3)])
@pytest.mark.parametrize(("fn", "n_out"), [(row_stats, N_STATS), (row_neg_frac, 1)])
def test_batched_equals_one_by_one(
    dtype: torch.dtype, lead: tuple[int, ...], fn: Any, n_out: int
) -> None:
    g = torch.Generator().manual_seed(0)
    widths = [8, 8, 4, 16, 8, 4, 0, 16]
    tensors = [torch.randn(*lead, w, generator=g).to(dtype) for w in widths]
    tensors[1][..., :3] = 0  # some exact zeros for sparsity
    rows = [5, 0, 2, 3, 1, 4, 7, 6]
    expected = _one_by_one(rows, tensors, fn, n_out)
    b = Batcher(fn)
    for _ in range(2):  # the second call reuses the plan
        out = _batched(b, rows, tensors, n_out)
        np.testing.assert_array_equal(out, expected)  # bit for bit (NaN where NaN)
    assert np.isnan(out[7]).all()  # empty output: no numbers invented


def test_plan_follows_changed_shapes_and_mixed_dtypes() -> None:
    rows = [0, 1, 2]
    b = Batcher()
    _batched(b, rows, [torch.randn(1, 1, 4), torch.randn(1, 1, 4), torch.randn(1, 1, 6)], N_STATS)
    same_rows = [torch.randn(1, 5, 4), torch.randn(1, 1, 4), torch.randn(1, 5, 6)]  # prefill-like
    out = _batched(b, rows, same_rows, N_STATS)
    np.testing.assert_array_equal(out, _one_by_one(rows, same_rows, row_stats, N_STATS))
    mixed = [torch.randn(1, 1, 4), torch.randn(1, 1, 4).double(), torch.randn(1, 1, 6)]
    out = _batched(b, rows, mixed, N_STATS)
    expected = _one_by_one(rows, mixed, row_stats, N_STATS)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_batcher_never_changes_the_held_outputs() -> None:
    held = [torch.randn(1, 1, 8) for _ in range(4)]
    copies = [t.clone() for t in held]
    to_host(np.empty((4, N_STATS), dtype=np.float32), Batcher().reduce([0, 1, 2, 3], held))
    assert all(torch.equal(a, b) for a, b in zip(held, copies, strict=True))


def test_wrappers_replace_forward_and_restore_it() -> None:
    model = build("llama")
    q0 = model.get_submodule("model.layers.0.self_attn.q_proj")
    before = inspect.signature(q0.forward)
    with LayerProfiler(model, "component") as prof:
        assert "forward" in q0.__dict__  # wrapped: no hook dispatch per call
        assert inspect.signature(q0.forward) == before
        assert prof.summary["hooks"] > 0
    assert hook_count(model) == 0
    assert "forward" not in q0.__dict__


def test_an_existing_instance_forward_is_kept_and_restored() -> None:
    """e.g. accelerate's device hooks replace `module.forward` on the instance."""
    model = build("llama")
    q0 = model.get_submodule("model.layers.0.self_attn.q_proj")
    calls = {"n": 0}
    original = q0.forward

    def theirs(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    q0.forward = theirs
    try:
        reference = generate(model, prompt_ids())
        n_plain = calls["n"]
        with LayerProfiler(model, "component") as prof:
            values, _ = prof.collect()
            with torch.inference_mode():
                model(prompt_ids())
            values, _ = prof.collect()
        assert q0.__dict__["forward"] is theirs
        assert calls["n"] == n_plain + 1  # theirs still ran, inside our wrapper
        assert torch.equal(generate(model, prompt_ids()), reference)
        qi = prof.component_names.index("q_proj")
        assert values[0, qi, 0] > 0
    finally:
        del q0.forward


def test_a_forward_replaced_after_attach_is_left_to_its_owner() -> None:
    model = build("llama")
    q0 = model.get_submodule("model.layers.0.self_attn.q_proj")
    prof = LayerProfiler(model, "component")
    prof.attach()
    ours = q0.forward

    def later(*args: Any, **kwargs: Any) -> Any:
        return ours(*args, **kwargs)

    q0.forward = later
    prof.detach()
    assert q0.__dict__["forward"] is later  # not ours to remove
    del q0.forward
    assert hook_count(model) == 0
