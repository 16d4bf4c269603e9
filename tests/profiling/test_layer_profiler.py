"""LayerProfiler on tiny models of every architecture and level: shapes, values, cleanup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.archs import (
    GENERIC_ARCHS,
    REGISTRY_ARCHS,
    build,
    config_of,
    generate,
    hook_count,
    prompt_ids,
)

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiling import forward_wrap
from llm_energy_widget.profiling.layer_profiler import LayerProfiler
from llm_energy_widget.profiling.stats import row_stats

ALL_ARCHS = REGISTRY_ARCHS + GENERIC_ARCHS
LEVELS = ("layer", "component", "deep")
TI = METRICS.index("time_ms")
EI = METRICS.index("energy_j")


class Collector:
    """A streamer that calls collect() after each forward, like the real profiler's token clock."""

    def __init__(self, prof: LayerProfiler) -> None:
        self.prof = prof
        self.rows: list[np.ndarray] = []
        self.extras: list[dict] = []
        self.first = True

    def put(self, value: torch.Tensor) -> None:
        if self.first:  # the prompt
            self.first = False
            return
        values, extras = self.prof.collect()
        self.rows.append(values)
        self.extras.append(extras)

    def end(self) -> None:
        pass


def profiled_generate(arch: str, level: str, n: int = 4) -> tuple[torch.Tensor, Collector, dict]:
    model = build(arch)
    prof = LayerProfiler(model, level)
    col = Collector(prof)
    with prof as p:
        summary = p.summary
        out = generate(model, prompt_ids(), n, streamer=col)
    return out, col, summary


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("level", LEVELS)
def test_shapes_values_cleanup_and_unchanged_outputs(arch: str, level: str) -> None:
    model = build(arch)
    impl = config_of(model)._attn_implementation
    ids = prompt_ids()
    reference = generate(model, ids)
    with torch.inference_mode():
        ref_logits = model(ids).logits
    assert hook_count(model) == 0

    out, col, summary = profiled_generate(arch, level)

    assert torch.equal(out, reference), f"{arch}/{level}: profiling changed the generated ids"
    assert hook_count(model) == 0, "detach() left hooks behind"
    assert config_of(model)._attn_implementation == impl, "attention implementation not restored"
    json.dumps(summary)  # JSON-serializable registration summary
    assert summary["hooks"] > 0
    assert summary["n_layers"] == 2
    assert len(col.rows) == 4  # one collect per generated token
    prof = LayerProfiler(model, level)
    for row in col.rows:
        assert row.shape == (2, len(prof.component_names), len(METRICS))
        assert row.dtype == np.float32
        assert np.isnan(row[:, :, EI]).all(), "energy_j is the Run's to fill"
    times = np.stack([r[:, :, TI] for r in col.rows])
    if level == "layer":
        assert prof.component_names == ["layer"]
        assert (times > 0).all()
    else:
        hooked = list(prof.disc.component_names)
        idx = [prof.component_names.index(c) for c in hooked]
        assert np.nanmin(times[:, :, idx]) > 0
        assert (np.isfinite(times[:, :, idx]).sum(axis=(0, 1)) > 0).all(), "a component never timed"
        stats = np.stack([r[:, :, METRICS.index("act_mean") :] for r in col.rows])[:, :, idx]
        measured = np.isfinite(stats[..., 0])
        assert measured.mean() > 0.9, f"{arch}: too few statistics"
        assert np.isfinite(stats[measured]).all()
        s = stats[measured]
        assert (s[:, 0] >= 0).all()
        assert (s[:, 1] >= 0).all()
        assert (s[:, 2] >= s[:, 0] - 1e-6).all()
        assert ((s[:, 3] >= 0) & (s[:, 3] <= 1)).all()

    with prof:  # logits of one forward are bit-identical
        with torch.inference_mode():
            logits = model(ids).logits
        prof.collect()
    assert torch.equal(logits, ref_logits)
    assert hook_count(model) == 0


@pytest.mark.parametrize("arch", REGISTRY_ARCHS)
def test_deferred_statistics_equal_in_hook_statistics(arch: str) -> None:
    """Registry archs hold outputs until collect() under inference_mode (no version counter):
    this proves nothing changes them in place after their hook, so the statistics are theirs."""
    model = build(arch)
    prof = LayerProfiler(model, "component")
    seen: dict[int, torch.Tensor] = {}
    handles = []
    with prof:
        for name, mod in prof.disc.components[0].items():
            slot = prof.cell(0, name)

            def grab(m: torch.nn.Module, a: object, o: object, slot: int = slot) -> None:
                t = o if isinstance(o, torch.Tensor) else o[0]  # type: ignore[index]
                seen[slot] = row_stats(t.detach().reshape(1, -1).clone())[0]

            handles.append(mod.register_forward_hook(grab))
        with torch.inference_mode():
            model(prompt_ids(5))
        values, _ = prof.collect()
        for h in handles:
            h.remove()
    for slot, expected in seen.items():
        got = values.reshape(-1, len(METRICS))[slot, METRICS.index("act_mean") :]
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_times_are_per_token_and_reset() -> None:
    model = build("llama")
    with LayerProfiler(model, "component") as prof:
        values, extras = prof.collect()  # nothing ran yet
        assert np.isnan(values).all()
        assert extras == {}
        with torch.inference_mode():
            model(prompt_ids())
        first, _ = prof.collect()
        again, _ = prof.collect()
    assert np.isfinite(first[:, :, TI]).any()
    assert np.isnan(again).all()


def test_time_is_summed_over_forwards_since_last_collect() -> None:
    model = build("llama")
    ids = prompt_ids()
    with LayerProfiler(model, "layer") as prof:
        with torch.inference_mode():
            model(ids)
            one = prof.collect()[0][:, 0, TI]
            for _ in range(5):
                model(ids)
        five = prof.collect()[0][:, 0, TI]
    assert (five > 2.5 * one).all()


def test_gaps_and_other_cover_the_layer() -> None:
    model = build("llama")
    prof = LayerProfiler(model, "component")
    assert prof.component_names[-3:] == ["attention", "mlp_act", "other"]
    layer_prof = LayerProfiler(model, "layer")
    with prof, torch.inference_mode():
        model(prompt_ids(40))
        values, _ = prof.collect()
    with layer_prof, torch.inference_mode():
        model(prompt_ids(40))
        layer_ms = layer_prof.collect()[0][:, 0, TI]
    comp_total = np.nansum(values[:, :, TI], axis=1)
    assert (values[:, prof.component_names.index("attention"), TI] > 0).all()
    assert np.all(np.isfinite(values[:, -1, TI]))
    # all cells add up to the layer's own time (same order of magnitude as a layer-level run)
    assert np.all(comp_total > 0.2 * layer_ms)
    assert np.all(comp_total < 20 * layer_ms)


def test_invalid_level_and_non_module() -> None:
    with pytest.raises(InvalidInputError, match="level"):
        LayerProfiler(build("llama"), "tokens")
    with pytest.raises(InvalidInputError, match="Module"):
        LayerProfiler("gpt2", "layer")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="repeated block list"):
        LayerProfiler(torch.nn.Linear(4, 4), "layer")


def test_exception_inside_a_hook_still_detaches(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build("llama")
    reference = generate(model, prompt_ids())
    prof = LayerProfiler(model, "deep")
    prof.attach()
    calls = {"n": 0}

    def boom(i: int, out: object) -> None:
        calls["n"] += 1
        raise RuntimeError("injected hook failure")

    prof.detach()
    monkeypatch.setattr(prof, "_keep", boom)  # hooks bind it at attach
    monkeypatch.setattr(forward_wrap, "HOOK_STATS_ABOVE", -1)  # every output takes that path
    prof.attach()
    with pytest.raises(RuntimeError, match="injected hook failure"):
        generate(model, prompt_ids())
    assert calls["n"] == 1
    prof.detach()
    prof.detach()  # idempotent
    monkeypatch.undo()
    assert hook_count(model) == 0
    assert config_of(model)._attn_implementation == "sdpa"
    assert torch.equal(generate(model, prompt_ids()), reference)


def test_attach_failing_half_way_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build("llama")
    prof = LayerProfiler(model, "deep")

    def fail(self: object, dev: object) -> None:
        raise RuntimeError("injected attach failure")

    monkeypatch.setattr(LayerProfiler, "_attach_moe", fail)
    with pytest.raises(RuntimeError, match="injected attach failure"):
        prof.attach()
    assert hook_count(model) == 0
    assert config_of(model)._attn_implementation == "sdpa"
    prof.detach()


def test_statistics_failure_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build("llama")
    with LayerProfiler(model, "component") as prof:
        monkeypatch.setattr(prof._batcher, "fn", lambda x: 1 / 0)
        with torch.inference_mode():
            model(prompt_ids())
        values, _ = prof.collect()
    assert np.isfinite(values[:, :, TI]).any()
    assert np.isnan(values[:, :, METRICS.index("act_mean")]).all()
    assert any("ZeroDivisionError" in e for e in prof.errors)


def test_big_outputs_are_reduced_in_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build("llama")
    monkeypatch.setattr(forward_wrap, "HOOK_STATS_ABOVE", 0)
    with LayerProfiler(model, "component") as prof:
        with torch.inference_mode():
            model(prompt_ids())
        assert prof.n_held == 0
        values, _ = prof.collect()
    idx = [prof.component_names.index(c) for c in prof.disc.component_names]
    assert np.isfinite(values[:, idx, METRICS.index("act_mean") :]).all()


def test_outputs_changed_in_place_get_nan_not_wrong_numbers() -> None:
    model = build("llama")
    prof = LayerProfiler(model, "component")
    q0 = prof.disc.components[0]["q_proj"]

    def mutate(m: torch.nn.Module, a: object, out: torch.Tensor) -> None:
        out.mul_(2.0)  # runs after the profiler's hook: the held output changes

    with prof:
        h = q0.register_forward_hook(mutate)
        with torch.no_grad():  # outside inference_mode the version counter catches it
            model(prompt_ids())
        values, _ = prof.collect()
        with torch.no_grad():
            model(prompt_ids())
        values2, _ = prof.collect()
        h.remove()
    qi = prof.component_names.index("q_proj")
    assert np.isnan(values[0, qi, METRICS.index("act_mean")])
    assert np.isfinite(values2[0, qi, METRICS.index("act_mean")])  # reduced in the hook now
    assert np.isfinite(values[1, qi, METRICS.index("act_mean")])
