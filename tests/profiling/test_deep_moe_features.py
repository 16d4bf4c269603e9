"""Discovery, deep attention/MLP statistics, MoE routing and model features on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers as T
from support.archs import (
    GENERIC_ARCHS,
    REGISTRY_ARCHS,
    BoundaryStreamer,
    build,
    config_of,
    generate,
    prompt_ids,
)

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiling.architectures import discover
from llm_energy_widget.profiling.deep import attention_stats
from llm_energy_widget.profiling.features import kv_cache_bytes, model_features
from llm_energy_widget.profiling.layer_profiler import LayerProfiler
from llm_energy_widget.profiling.stats import row_neg_frac, row_stats

EXPECTED = {
    "llama": ["input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj",
              "post_attention_layernorm", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["ln_1", "c_attn", "attn.c_proj", "ln_2", "c_fc", "mlp.c_proj"],
    "gpt_neox": ["input_layernorm", "query_key_value", "dense", "post_attention_layernorm",
                 "dense_h_to_4h", "dense_4h_to_h"],
    "phi3": ["input_layernorm", "qkv_proj", "o_proj", "post_attention_layernorm",
             "gate_up_proj", "down_proj"],
    "mixtral": ["input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj",
                "post_attention_layernorm", "router", "experts"],
    "qwen2_moe": ["input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj",
                  "post_attention_layernorm", "shared_expert", "router", "experts",
                  "shared_expert_gate"],
    "qwen3": ["input_layernorm", "q_proj", "q_norm", "k_proj", "k_norm", "v_proj", "o_proj",
              "post_attention_layernorm", "gate_proj", "up_proj", "down_proj"],
}  # fmt: skip


@pytest.mark.parametrize("arch", REGISTRY_ARCHS)
def test_registry_discovery(arch: str) -> None:
    d = discover(build(arch))
    assert d.how == f"registry:{config_of(build(arch)).model_type}"
    assert d.n_layers == 2
    if arch in EXPECTED:
        assert d.component_names == EXPECTED[arch]
    for row in d.components:
        assert set(row) <= set(d.component_names)
        assert row
    assert all(a is not None for a in d.attention)


@pytest.mark.parametrize("arch", GENERIC_ARCHS)
def test_generic_discovery(arch: str) -> None:
    model = build(arch)
    d = discover(model)
    assert d.how == "generic"
    assert d.n_layers == 2
    linears = [n for n, m in d.layers[0].named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) >= 4
    assert len(d.component_names) >= len(linears)  # every Linear is a component (plus norms)
    assert len(set(d.component_names)) == len(d.component_names)


def test_generic_on_a_custom_block_model() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.LayerNorm(8)
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc(self.norm(x))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.ModuleList([torch.nn.Linear(8, 8)])
            self.blocks = torch.nn.ModuleList([Block() for _ in range(3)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return x

    net = Net()
    with LayerProfiler(net, "component") as prof:
        summary = prof.summary
        net(torch.randn(1, 8))
        values, _ = prof.collect()
    assert summary["discovered_by"] == "generic"
    assert summary["layers_path"] == "blocks"
    assert prof.component_names == ["norm", "fc", "other"]
    assert values.shape == (3, 3, 6)
    assert np.isfinite(values[:, :2, 0]).all()
    assert "deep" not in summary


def _deep_extras(arch: str, n: int = 3) -> tuple[list[dict], dict]:
    model = build(arch)
    prof = LayerProfiler(model, "deep")
    got: list[dict] = []
    streamer = BoundaryStreamer(lambda: got.append(prof.collect()[1]))
    with prof:
        summary = prof.summary
        generate(model, prompt_ids(), n, streamer=streamer)
    return got, summary


@pytest.mark.parametrize("arch", REGISTRY_ARCHS + GENERIC_ARCHS)
def test_deep_statistics_in_valid_ranges(arch: str) -> None:
    extras, summary = _deep_extras(arch)
    deep = summary["deep"]
    heads = config_of(build(arch)).num_attention_heads
    n_prompt = prompt_ids().shape[1]
    if deep["attention"] is None:
        assert deep["attention_skipped"]  # says why, and no numbers are invented
        assert "attn_entropy" not in extras[0]
    else:
        for t, ex in enumerate(extras):
            kv_len = n_prompt + t
            ent, mx, sp = ex["attn_entropy"], ex["attn_max_weight"], ex["attn_sparsity"]
            assert ent.shape == mx.shape == sp.shape == (2, heads)
            assert np.isfinite(ent).all(), f"{arch} token {t}"
            assert (ent >= -1e-5).all()
            assert (ent <= math.log(kv_len) + 1e-4).all()
            assert ((mx > 0) & (mx <= 1 + 1e-6)).all()
            assert ((sp >= 0) & (sp <= 1)).all()
    if deep["mlp_gate"] is not None:
        for ex in extras:
            kill = ex["mlp_gate_kill"]
            assert kill.shape == (2,)
            assert ((kill >= 0) & (kill <= 1)).all()
            assert np.isfinite(kill).all()


def test_bloom_deep_attention_is_skipped_with_a_reason() -> None:
    _, summary = _deep_extras("bloom", 1)
    assert summary["deep"]["attention"] is None
    assert "AttentionInterface" in summary["deep"]["attention_skipped"]


def test_attention_stats_match_eager_attention_weights() -> None:
    """The tap's statistics equal those of the probabilities eager attention materializes."""
    torch.manual_seed(0)
    cfg = T.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
    )
    model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(6.0)
    ids = prompt_ids(12)
    with torch.no_grad():
        weights = model(ids, output_attentions=True).attentions  # eager: [b, h, q, kv]
    with LayerProfiler(model, "deep") as prof, torch.no_grad():
        model(ids)
        extras = prof.collect()[1]
    for layer, w in enumerate(weights):
        p = w.float()
        allowed = torch.ones(12, 12, dtype=torch.bool).tril()
        ent = -(torch.special.xlogy(p, p)).sum(-1).mean(dim=(0, 2))
        small = ((p < 0.01) & allowed).sum(-1).float() / allowed.sum(-1).float()
        np.testing.assert_allclose(extras["attn_entropy"][layer], ent.numpy(), atol=1e-4)
        np.testing.assert_allclose(
            extras["attn_max_weight"][layer], p.amax(-1).mean(dim=(0, 2)).numpy(), atol=1e-4
        )
        np.testing.assert_allclose(
            extras["attn_sparsity"][layer], small.mean(dim=(0, 2)).numpy(), atol=1e-4
        )
    assert model.config._attn_implementation == "eager"


def test_attention_stats_decode_row_and_masks() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 1, 8), torch.randn(1, 2, 5, 8)
    res = attention_stats(q, k, None, None)
    kk = k.repeat_interleave(2, dim=1)
    p = torch.softmax((q @ kk.transpose(-1, -2)) / math.sqrt(8), -1)
    np.testing.assert_allclose(res[:, 0], -(p * p.log()).sum(-1)[0, :, 0], rtol=1e-5)
    # a boolean mask hiding the first two keys == attention over the last three only
    mask = torch.tensor([False, False, True, True, True]).view(1, 1, 1, 5)
    masked = attention_stats(q, k, mask, None)
    only = attention_stats(q, k[:, :, 2:], None, None)
    np.testing.assert_allclose(masked[:, :2], only[:, :2], rtol=1e-5)
    # an additive float mask (eager style) gives the same numbers
    fmask = torch.where(mask, 0.0, torch.finfo(torch.float32).min)
    np.testing.assert_allclose(attention_stats(q, k, fmask, None), masked, rtol=1e-5)


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe"])
def test_moe_routing(arch: str) -> None:
    model = build(arch)
    config = config_of(model)
    n_experts = config.num_local_experts if arch == "mixtral" else config.num_experts
    extras, summary = _deep_extras(arch)
    assert summary["moe"]["top_k"] == 2
    assert summary["moe"]["n_experts"] == n_experts
    assert "experts" in LayerProfiler(model, "component").component_names
    for ex in extras:
        experts = ex["moe_experts"]
        assert experts.shape == (2, 2)
        assert experts.dtype == np.int64
        assert ((experts >= 0) & (experts < n_experts)).all()
        assert all(len(set(row)) == 2 for row in experts.tolist())
        ent = ex["moe_routing_entropy"]
        assert ((ent >= 0) & (ent <= math.log(n_experts) + 1e-5)).all()


def test_moe_experts_are_the_routers_choice() -> None:
    model = build("mixtral")
    routers = discover(model).routers
    seen: list[torch.Tensor] = []
    router = routers[1]
    assert router is not None
    h = router.register_forward_hook(lambda m, a, o: seen.append(o[2][-1].clone()))
    try:
        with LayerProfiler(model, "component") as prof, torch.inference_mode():
            model(prompt_ids())
            extras = prof.collect()[1]
    finally:
        h.remove()
    assert extras["moe_experts"][1].tolist() == seen[-1].tolist()


def test_row_stats_reference() -> None:
    x = torch.tensor([[0.0, -2.0, 3.0, 5e-5, -1.0, 1.0]])
    got = row_stats(x)[0].numpy()
    ref = x[0].numpy()
    np.testing.assert_allclose(
        got,
        [np.abs(ref).mean(), ref.std(), 3.0, 2 / 6],
        rtol=1e-6,
    )
    assert row_neg_frac(x)[0, 0].item() == pytest.approx(2 / 6)
    half = torch.randn(3, 1000, dtype=torch.bfloat16)
    assert row_stats(half).dtype == torch.float32


def test_features_llama_gqa() -> None:
    model = build("llama")
    f = model_features(model, quantization="Q4_1 (GGUF)")
    assert f["model_type"] == "llama"
    assert f["architecture"] == "LlamaForCausalLM"
    assert f["layers"] == 2
    assert f["hidden_size"] == 64
    assert f["heads"] == 4
    assert f["kv_heads"] == 2
    assert f["head_dim"] == 16
    assert f["attention_type"] == "GQA"
    assert f["moe"] is False
    assert f["experts"] is None
    assert f["dtype"] == "float32"
    assert f["quantization"] == "Q4_1 (GGUF)"
    assert f["vocab_size"] == 256
    assert f["max_context"] == 128
    assert f["parameters"] == sum(p.numel() for p in model.parameters())
    assert f["kv_cache_bytes_per_token"] == 2 * 2 * 2 * 16 * 4
    assert kv_cache_bytes(f, 100) == 100 * 512
    with pytest.raises(InvalidInputError):
        kv_cache_bytes(f, -1)


def test_features_other_layouts() -> None:
    assert model_features(build("gpt2"))["attention_type"] == "MHA"
    moe = model_features(build("mixtral"))
    assert moe["moe"] is True
    assert moe["experts"] == 4
    assert moe["experts_top_k"] == 2
    from support.archs import CONFIGS

    qwen = T.AutoModelForCausalLM.from_config(CONFIGS["qwen2"]()).to(torch.bfloat16)
    half = model_features(qwen)
    assert half["dtype"] == "bfloat16"
    assert half["kv_cache_bytes_per_token"] == 2 * 2 * 2 * 16 * 2
    with pytest.raises(InvalidInputError):
        model_features("llama")  # type: ignore[arg-type]
