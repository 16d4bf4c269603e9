"""A tiny random Llama saved as a transformers folder, for CLI runs that load a model by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hidden 32, 2 layers, the SmolLM2 tokenizer (its chat template too)."""
    tok = smollm_tokenizer
    model = tiny_llama(vocab_size=len(tok), max_positions=512, heads=2, kv_heads=1)
    folder = tmp_path_factory.mktemp("tiny-llama-cli")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
