"""Tiny random models of every architecture the profiler knows, from configs (no downloads)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
import transformers as T

VOCAB = 256
_IDS: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": VOCAB,
    "max_position_embeddings": 128,
    **_IDS,
}


def _configs() -> dict[str, Callable[[], Any]]:
    mha = {k: v for k, v in _COMMON.items() if k != "num_key_value_heads"}
    return {
        "llama": lambda: T.LlamaConfig(**_COMMON),
        "mistral": lambda: T.MistralConfig(**_COMMON, sliding_window=8),
        "mixtral": lambda: T.MixtralConfig(**_COMMON, num_local_experts=4, num_experts_per_tok=2),
        "phi": lambda: T.PhiConfig(**mha),
        "phi3": lambda: T.Phi3Config(**_COMMON),
        "qwen2": lambda: T.Qwen2Config(**_COMMON),
        "qwen2_moe": lambda: T.Qwen2MoeConfig(
            **_COMMON,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
        ),
        "qwen3": lambda: T.Qwen3Config(**_COMMON, head_dim=16),
        "gemma": lambda: T.GemmaConfig(**_COMMON, head_dim=16),
        "gemma2": lambda: T.Gemma2Config(**_COMMON, head_dim=16, sliding_window=8),
        "gemma3_text": lambda: T.Gemma3TextConfig(**_COMMON, head_dim=16, sliding_window=8),
        "stablelm": lambda: T.StableLmConfig(**_COMMON),
        "gpt2": lambda: T.GPT2Config(
            n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=128
        ),
        "gpt_neox": lambda: T.GPTNeoXConfig(**mha),
        # not in the registry: generic discovery
        "opt": lambda: T.OPTConfig(
            hidden_size=64,
            ffn_dim=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=VOCAB,
            word_embed_proj_dim=64,
            max_position_embeddings=128,
            **_IDS,
        ),
        "olmo2": lambda: T.Olmo2Config(**_COMMON),
        "granite": lambda: T.GraniteConfig(**_COMMON),
        "bloom": lambda: T.BloomConfig(
            hidden_size=64, n_layer=2, n_head=4, vocab_size=VOCAB, **_IDS
        ),
        **_matrix_configs(),
    }


def _auto(model_type: str, **kw: Any) -> Callable[[], Any]:
    return lambda: T.AutoConfig.for_model(model_type, **kw)


def _matrix_configs() -> dict[str, Callable[[], Any]]:
    """More families for the architecture matrix (tests/profiling/test_arch_matrix.py)."""
    mha = {k: v for k, v in _COMMON.items() if k != "num_key_value_heads"}
    gpt = {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB, "n_positions": 128, **_IDS}
    moe = {"num_local_experts": 4, "num_experts_per_tok": 2}
    mla = {  # deepseek multi-head latent attention, tiny
        "kv_lora_rank": 16,
        "q_lora_rank": 32,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 16,
        "moe_intermediate_size": 32,
        "n_routed_experts": 4,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "first_k_dense_replace": 1,  # layer 0 dense, layer 1 routed
        "n_group": 1,
        "topk_group": 1,
    }
    return {
        "olmo": _auto("olmo", **_COMMON),
        "olmo3": _auto("olmo3", **_COMMON),
        "starcoder2": _auto("starcoder2", **_COMMON),
        "cohere": _auto("cohere", **_COMMON),
        "cohere2": _auto("cohere2", **_COMMON, sliding_window=8),
        "smollm3": _auto("smollm3", **_COMMON),
        "ernie4_5": _auto("ernie4_5", **_COMMON),
        "seed_oss": _auto("seed_oss", **_COMMON),
        "helium": _auto("helium", **_COMMON, head_dim=16),
        "exaone4": _auto("exaone4", **_COMMON),
        "glm": _auto("glm", **_COMMON, head_dim=16),
        "glm4": _auto("glm4", **_COMMON, head_dim=16),
        "apertus": _auto("apertus", **_COMMON),
        "arcee": _auto("arcee", **_COMMON),
        "nemotron": _auto("nemotron", **_COMMON),
        "bitnet": _auto("bitnet", **_COMMON),
        "vaultgemma": _auto("vaultgemma", **_COMMON, head_dim=16),
        "persimmon": _auto("persimmon", **mha),
        "biogpt": _auto("biogpt", **mha),
        "xglm": _auto(
            "xglm",
            d_model=64,
            ffn_dim=128,
            num_layers=2,
            attention_heads=4,
            vocab_size=VOCAB,
            max_position_embeddings=128,
            **_IDS,
        ),
        "falcon": _auto("falcon", **mha),
        "gptj": _auto("gptj", **gpt, rotary_dim=16),
        "codegen": _auto("codegen", **gpt, n_ctx=128, rotary_dim=16),
        "gpt_bigcode": _auto("gpt_bigcode", **gpt),
        "mpt": _auto(
            "mpt",
            d_model=64,
            n_heads=4,
            n_layers=2,
            expansion_ratio=2,
            vocab_size=VOCAB,
            max_seq_len=128,
            **_IDS,
        ),
        # mixture of experts
        "qwen3_moe": _auto(
            "qwen3_moe",
            **_COMMON,
            head_dim=16,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            mlp_only_layers=[0],  # layer 0 dense, layer 1 routed
        ),
        "olmoe": _auto("olmoe", **_COMMON, num_experts=4, num_experts_per_tok=2),
        "granitemoe": _auto("granitemoe", **_COMMON, **moe),
        "granitemoeshared": _auto(
            "granitemoeshared", **_COMMON, **moe, shared_intermediate_size=64
        ),
        "phimoe": _auto("phimoe", **_COMMON, **moe),
        "gpt_oss": _auto("gpt_oss", **_COMMON, **moe, head_dim=16, sliding_window=8),
        "deepseek_v2": _auto("deepseek_v2", **mha, **{**mla, "q_lora_rank": None}),
        "deepseek_v3": _auto("deepseek_v3", **mha, **mla),
        "glm4_moe": _auto(
            "glm4_moe",
            **_COMMON,
            head_dim=16,
            **{k: mla[k] for k in ("moe_intermediate_size", "n_routed_experts", "n_group")},
            num_experts_per_tok=2,
            n_shared_experts=1,
            first_k_dense_replace=1,
            topk_group=1,
        ),
        "ernie4_5_moe": _auto(
            "ernie4_5_moe",
            **_COMMON,
            moe_num_experts=4,
            moe_k=2,
            moe_intermediate_size=32,
            moe_num_shared_experts=1,
            moe_layer_start_index=1,
        ),
        "llama4_text": _auto(  # every layer routed (interleave_moe_layer_step=1)
            "llama4_text",
            **_COMMON,
            head_dim=16,
            intermediate_size_mlp=128,
            num_local_experts=4,
            num_experts_per_tok=1,
        ),
        # not in the registry: generic discovery
        "diffllama": _auto("diffllama", **_COMMON),
        "jetmoe": _auto(
            "jetmoe",
            **{k: v for k, v in mha.items() if k != "intermediate_size"},
            kv_channels=16,
            num_local_experts=4,
            num_experts_per_tok=2,
            ffn_hidden_size=64,
        ),
        "minimax": _auto("minimax", **_COMMON, **moe, head_dim=16),
    }


CONFIGS = _configs()
# the per-level suites (tests/profiling/test_layer_profiler.py and others) run on these; the
# architecture matrix (test_arch_matrix.py) on every config
REGISTRY_ARCHS = list(CONFIGS)[: list(CONFIGS).index("bloom") + 1]
GENERIC_ARCHS = ["diffllama"]  # in no registry entry: the generic discovery
MATRIX_ARCHS = list(CONFIGS)
_cache: dict[str, torch.nn.Module] = {}


def build(arch: str) -> torch.nn.Module:
    """The same tiny model per arch for the whole session (weights seeded, eval mode)."""
    if arch not in _cache:
        torch.manual_seed(0)
        config = CONFIGS[arch]()
        if arch == "gpt2":
            config.bos_token_id = config.eos_token_id = 2
        model = T.AutoModelForCausalLM.from_config(config).eval()
        with torch.no_grad():  # random init is near-uniform: sharpen it so statistics vary
            for p in model.parameters():
                if p.dim() >= 2:
                    p.mul_(4.0)
        _cache[arch] = model
    return _cache[arch]


def config_of(model: torch.nn.Module) -> T.PretrainedConfig:
    """`model.config` as what it is (torch types a Module's attributes as Tensor | Module)."""
    return cast(T.PretrainedConfig, model.config)


def prompt_ids(n: int = 9, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (1, n), generator=g)


def generate(model: torch.nn.Module, ids: torch.Tensor, n: int = 4, **kw: Any) -> torch.Tensor:
    with torch.inference_mode():
        # transformers' generate: torch types a Module's attribute as Tensor | Module
        return cast("Callable[..., torch.Tensor]", model.generate)(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            **kw,
        )


def hook_count(model: torch.nn.Module) -> int:
    """Hooks plus forward wrappers (an instance-level `forward`) left on the model."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + ("forward" in m.__dict__)
        for m in model.modules()
    )


class BoundaryStreamer:
    """Marks token boundaries the way EnergyProfiler's TokenClock does (the prompt is skipped)."""

    def __init__(self, on_token: Callable[[], None]) -> None:
        self.on_token = on_token
        self.seen_prompt = False

    def put(self, value: Any) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.on_token()

    def end(self) -> None:
        pass


def token_rows(
    prof: Any,
    model: torch.nn.Module,
    ids: torch.Tensor,
    n: int,
    asynchronous: bool,
    deliver_delay_s: float = 0.0,
) -> tuple[list[tuple[int, Any, dict[str, Any]]], list[int]]:
    """Generate n tokens under `prof`, collecting each token's row (sync or via the reducer);
    also returns the reducer's backlog seen at each boundary."""
    rows: list[tuple[int, Any, dict[str, Any]]] = []
    pending: list[int] = []

    def on_token() -> None:
        i = len(pending)
        if not asynchronous:
            pending.append(0)
            rows.append((i, *prof.collect()))
            return

        def deliver(values: Any, extras: dict[str, Any]) -> None:
            time.sleep(deliver_delay_s)
            rows.append((i, values, extras))

        prof.collect_async(deliver)
        pending.append(prof.pending)

    with prof:
        generate(model, ids, n=n, streamer=BoundaryStreamer(on_token))
    return rows, pending


@pytest.fixture
def tiny() -> Callable[[str], torch.nn.Module]:
    return build
