"""On a CUDA machine: device-event timing, on-device statistics, unchanged outputs, cleanup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.archs import BoundaryStreamer, build, generate, hook_count, prompt_ids, token_rows

from llm_energy_widget.core.schema import METRICS
from llm_energy_widget.profiling.layer_profiler import LayerProfiler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mixtral", "gemma3_text"])
@pytest.mark.parametrize("level", ["layer", "component", "deep"])
def test_cuda_levels(arch: str, level: str) -> None:
    model = build(arch).to("cuda")
    try:
        ids = prompt_ids().to("cuda")
        reference = generate(model, ids)
        prof = LayerProfiler(model, level)
        rows: list[np.ndarray] = []
        extras: list[dict] = []

        def on_token() -> None:
            values, ex = prof.collect()
            rows.append(values)
            extras.append(ex)

        with prof:
            summary = prof.summary
            out = generate(model, ids, streamer=BoundaryStreamer(on_token))
        assert summary["timing_method"] == "cuda_events"
        assert summary["device"].startswith("cuda")
        assert torch.equal(out, reference)
        assert hook_count(model) == 0
        ti = METRICS.index("time_ms")
        names = prof.disc.component_names if level != "layer" else ["layer"]
        hooked = [prof.component_names.index(c) for c in names]
        times = np.stack([r[:, hooked, ti] for r in rows])
        assert np.nanmin(times) > 0
        assert np.isfinite(times).mean() > 0.5
        if level != "layer":
            stats = np.stack([r[:, hooked, METRICS.index("act_mean") :] for r in rows])
            assert np.isfinite(stats).mean() > 0.9
        if level == "deep" and summary["deep"]["attention"]:
            assert np.isfinite(extras[-1]["attn_entropy"]).all()
    finally:
        model.to("cpu")


@pytest.mark.parametrize("side_stream", [False, True])
@pytest.mark.parametrize("level", ["component", "deep"])
def test_cuda_reducer_thread_equals_collect(level: str, side_stream: bool) -> None:
    """The reducer thread reads events and reduces on the generating thread's stream."""
    model = build("llama").to("cuda")
    try:
        ids = prompt_ids().to("cuda")
        stream = torch.cuda.Stream() if side_stream else torch.cuda.current_stream()
        with torch.cuda.stream(stream):
            sync, _ = token_rows(LayerProfiler(model, level), model, ids, 10, False)
            rows, _ = token_rows(LayerProfiler(model, level), model, ids, 10, True)
        torch.cuda.synchronize()
        assert [r[0] for r in rows] == list(range(10))
        ti, si = METRICS.index("time_ms"), METRICS.index("act_mean")
        for (_, a, ax), (_, s, sx) in zip(rows, sync, strict=True):
            assert np.nanmin(a[:, :, ti]) > 0
            np.testing.assert_allclose(a[:, :, si:], s[:, :, si:], rtol=1e-5, atol=1e-6)
            assert ax.keys() == sx.keys()
        assert hook_count(model) == 0
    finally:
        model.to("cpu")


def test_cuda_energy_profiler_run() -> None:
    from support.sources import ConstantSource

    from llm_energy_widget.profiler import EnergyProfiler

    model = build("llama").to("cuda")
    try:
        ids = prompt_ids().to("cuda")
        reference = generate(model, ids, n=8)
        prof = EnergyProfiler(
            model,
            None,
            power=ConstantSource(50.0),
            level="component",
            sample="all",
            store=False,
            baseline_s=0,
            interval_ms=10,
        )
        run = prof.generate(
            ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0
        )
        assert run.wait(120), run.end_reason
        assert run.status == "completed", run.end_reason
        assert [t["token_id"] for t in run.tokens()] == reference[0, ids.shape[1] :].tolist()
        layers = run.layers
        assert layers.shape[0] == 8
        ti = METRICS.index("time_ms")
        assert np.isfinite(layers[:, :, :, ti]).any(axis=(1, 2)).all()  # every token has times
        assert np.isfinite(layers[:, :, :, METRICS.index("act_mean")]).mean() > 0.5
        assert run.to_dict()["layers"]["values"]
        assert not [w for w in run.warnings if w.startswith("layer profiling")]
        assert hook_count(model) == 0
    finally:
        model.to("cpu")


def test_cuda_one_event_per_boundary_pooled() -> None:
    """A Llama layer has 15 distinct boundaries at the component level (see
    test_shared_boundaries), against a pair for each of its 11 timed modules; the pool holds
    exactly one token's events after each collect, and stops growing."""
    model = build("llama").to("cuda")
    try:
        ids = prompt_ids().to("cuda")
        prof = LayerProfiler(model, "component")
        sizes: list[int] = []

        def on_token() -> None:
            prof.collect()
            assert prof._clock is not None
            sizes.append(len(prof._clock.pool))

        with prof:
            generate(model, ids, n=6, streamer=BoundaryStreamer(on_token))
        assert sizes
        assert set(sizes) == {15 * prof.disc.n_layers}
        assert hook_count(model) == 0
    finally:
        model.to("cpu")
