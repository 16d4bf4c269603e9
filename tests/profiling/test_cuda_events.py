"""On a CUDA machine: device-event timing, on-device statistics, unchanged outputs, cleanup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prof_tiny import build, generate, hook_count, prompt_ids

from llm_energy_widget.profiling.hooks import LayerProfiler
from llm_energy_widget.run import METRICS

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

        class S:
            first = True

            def put(self, v: torch.Tensor) -> None:
                if self.first:
                    self.first = False
                    return
                values, ex = prof.collect()
                rows.append(values)
                extras.append(ex)

            def end(self) -> None:
                pass

        with prof:
            summary = prof._summary
            out = generate(model, ids, streamer=S())
        assert summary["timing_method"] == "cuda_events" and summary["device"].startswith("cuda")
        assert torch.equal(out, reference)
        assert hook_count(model) == 0
        ti = METRICS.index("time_ms")
        names = prof.disc.component_names if level != "layer" else ["layer"]
        hooked = [prof.component_names.index(c) for c in names]
        times = np.stack([r[:, hooked, ti] for r in rows])
        assert np.nanmin(times) > 0 and np.isfinite(times).mean() > 0.5
        if level != "layer":
            stats = np.stack([r[:, hooked, METRICS.index("act_mean") :] for r in rows])
            assert np.isfinite(stats).mean() > 0.9
        if level == "deep" and summary["deep"]["attention"]:
            assert np.isfinite(extras[-1]["attn_entropy"]).all()
    finally:
        model.to("cpu")
