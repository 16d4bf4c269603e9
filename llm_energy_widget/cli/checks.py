"""What `llm-energy profile` can check before it loads a model: every setting, the power source,
the store and the output path, so a typo fails in milliseconds instead of after a 5-20 s load
(and never leaves a failed run behind)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["DEVICES", "DTYPES", "check_before_load", "prompt_batch", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("auto", "float32", "float16", "bfloat16")


def prompt_batch(args: argparse.Namespace) -> str | list[str]:
    """The prompt (one --prompt) or the batch: several --prompt, or one --prompt --batch N."""
    prompts = [args.prompt] if isinstance(args.prompt, str) else list(args.prompt)
    batch = getattr(args, "batch", 1)
    for i, p in enumerate(prompts):
        if not p.strip():
            raise InvalidInputError("--prompt is empty" + (f" (prompt {i})" if i else ""))
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(f"--batch must be a positive integer, got {batch!r}")
    if batch > 1 and len(prompts) > 1:
        raise InvalidInputError(
            f"--batch {batch} replicates one prompt; with {len(prompts)} --prompt the batch is "
            "those prompts (drop --batch)"
        )
    if batch > 1:
        return prompts * batch
    return prompts[0] if len(prompts) == 1 else prompts


def check_before_load(args: argparse.Namespace) -> dict[str, Any]:
    """Raise the error a bad argument would raise later; return what was opened on the way
    (`source`: the power source, `store`: the Store or False), for the profiler to use."""
    from ..core.summary import env_carbon_g_per_kwh, env_price_per_kwh
    from ..power import get_source
    from ..profiler import check_settings
    from ..profiling.inputs import check_generate_kwargs
    from ..profiling.sampling import sampling_from
    from ..store import resolve_store

    if args.max_new_tokens <= 0:
        raise InvalidInputError(f"--max-new-tokens must be positive, got {args.max_new_tokens}")
    prompt_batch(args)
    check_settings(
        level=args.level,
        interval_ms=args.interval_ms,
        baseline_s=args.baseline_s,
        tags=args.tag,
        experiment=args.experiment,
    )
    try:
        sampling_from(getattr(args, "sample", None), getattr(args, "overhead_budget", None))
    except InvalidInputError as exc:
        raise InvalidInputError(f"--sample / --overhead-budget: {exc}") from None
    gen = {"do_sample": bool(args.do_sample)}
    if args.temperature is not None:
        gen["temperature"] = args.temperature
    check_generate_kwargs(gen, None)
    if getattr(args, "device", None) is not None:
        args.device = resolve_device(args.device)
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise InvalidInputError(f"--seed must be a whole number >= 0, got {args.seed}")
    env_price_per_kwh()  # a bad LLM_ENERGY_PRICE_PER_KWH is named now, not after the run
    env_carbon_g_per_kwh()
    if args.model and not Path(args.model).expanduser().exists():
        raise InvalidInputError(
            f"--model {args.model}: no such file or directory (a local transformers model "
            "directory or a .gguf file)"
        )
    json_path = getattr(args, "json", None)
    if json_path and json_path != "-":
        _check_output(Path(json_path).expanduser(), "--json")
    source = get_source(args.power)
    store: Any = False
    if not args.no_store:
        store = resolve_store(args.store or True)
        if store is not None:
            store.check_writable()
        else:
            store = False
    return {"source": source, "store": store}


def resolve_device(name: str) -> str:
    """`--device` as a torch device string that exists here: "auto" is the first of cuda, mps,
    cpu that is available; asking for a device this machine lacks is an error before the load."""
    import torch

    spec = name.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise InvalidInputError(f"--device {name!r}: not a device (one of {DEVICES})") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InvalidInputError(f"--device {name}: no CUDA device here")
        if dev.index is not None and dev.index >= n:
            raise InvalidInputError(
                f"--device {name}: there are {n} CUDA device(s), cuda:0 to cuda:{n - 1}"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidInputError(f"--device {name}: MPS (Apple GPU) is not available here")
    elif dev.type != "cpu":
        raise InvalidInputError(f"--device {name!r}: not a device (one of {DEVICES})")
    return str(dev)


def _check_output(path: Path, flag: str) -> None:
    """The file can be written: its nearest existing folder is a folder we may write in
    (missing folders below it are created when the run is written, as `to_json` does)."""
    import os

    if path.is_dir():
        raise InvalidInputError(f"{flag} {path}: is a directory; give a file path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInputError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise InvalidInputError(f"{flag} {path}: cannot write in {parent}")
