"""`llm-energy predict`: the energy and time of a generation before running it, learned from the
store's runs (`analysis.predict`); every figure it prints is **modeled**."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["cmd_predict", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..analysis.predict import DEFAULT_COVERAGE

    help_ = "Predict a generation's energy and time from the store's past runs (modeled)."
    p = sub.add_parser("predict", help=help_, description=help_)
    p.add_argument(
        "--model",
        metavar="PATH|NAME",
        help="a local transformers model directory or .gguf file (loaded for its size), or the "
        "name of a model with runs in the store (default: the default model, SmolLM2-135M; its "
        "size is read from the store's runs of it when there are any, else it is loaded)",
    )
    p.add_argument(
        "--prompt-tokens", type=int, default=32, metavar="N", help="prompt tokens (default: 32)"
    )
    p.add_argument(
        "--new-tokens", type=int, default=64, metavar="N", help="generated tokens (default: 64)"
    )
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default: 1)")
    p.add_argument(
        "--dtype",
        help="weight dtype (float32, bfloat16, float16, …; default: the model's own)",
    )
    p.add_argument("--device", default="cpu", help="device type: cpu, cuda or mps (default: cpu)")
    p.add_argument(
        "--store",
        metavar="PATH",
        help="run store to learn from (default: $LLM_ENERGY_STORE or user data; none: a "
        "first-principles estimate)",
    )
    p.add_argument(
        "--source",
        help="learn only from runs of this power source (default: the source with most runs, "
        "measured before estimated)",
    )
    p.add_argument(
        "--kind",
        choices=("measured", "estimated"),
        help="learn only from runs of this kind (default: measured when there are enough)",
    )
    p.add_argument(
        "--include-estimates",
        action="store_true",
        help="mix measured and estimated runs and all power sources in one fit (default: one "
        "source and kind only)",
    )
    p.add_argument(
        "--machine",
        metavar="HOST",
        help=f"learn from runs of this machine (default: this host, {platform.node()})",
    )
    p.add_argument(
        "--coverage",
        type=float,
        default=DEFAULT_COVERAGE,
        metavar="F",
        help=f"coverage of the intervals, in (0, 1) (default: {DEFAULT_COVERAGE:g})",
    )
    p.add_argument(
        "--accelerator",
        help="GPU name for the first-principles figures, e.g. 'NVIDIA H200' (default: the "
        "one the runs name)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the prediction as JSON (docs/schemas/predict.schema.json; default: text)",
    )
    p.set_defaults(func=cmd_predict)


def _check(args: argparse.Namespace) -> None:
    """The bad arguments, named before anything is loaded."""
    for flag, v in (
        ("--prompt-tokens", args.prompt_tokens),
        ("--new-tokens", args.new_tokens),
        ("--batch", args.batch),
    ):
        if v < 1:
            raise InvalidInputError(f"{flag} must be a positive number, got {v}")
    if not 0 < args.coverage < 1:
        raise InvalidInputError(f"--coverage must be between 0 and 1, got {args.coverage:g}")
    if str(args.device).split(":", 1)[0].lower() not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"--device must be cpu, cuda or mps, got {args.device!r}")
    if args.include_estimates and (args.source or args.kind):
        raise InvalidInputError("--include-estimates mixes every source: not with --source/--kind")


def _open_store(path: str | None) -> Any:
    """The store read-only (a prediction never writes one); None when the default one does not
    exist yet; a named one that does not exist is an error."""
    from ..store import Store, default_path

    if path is None:
        return Store(default_path(), read_only=True) if default_path().is_file() else None
    if not Path(path).expanduser().is_file():
        raise InvalidInputError(f"--store {path}: no such store file")
    return Store(path, read_only=True)


def _model_arg(model: str | None, store: Any) -> Any:
    """What `predict` takes for the model: its name in the store (no load) when it has runs
    there, else the loaded model."""
    from ..models import DEFAULT_MODEL_NAME, load_default_model, load_model

    if model is None:
        if store is not None and _has_runs(store, DEFAULT_MODEL_NAME):
            return DEFAULT_MODEL_NAME
        return load_default_model()
    if Path(model).expanduser().exists():
        return load_model(Path(model).expanduser())
    if store is not None and _has_runs(store, model):
        return model
    raise InvalidInputError(
        f"--model {model}: neither a local model directory or .gguf file nor a model with runs "
        "in the store"
    )


def _has_runs(store: Any, name: str) -> bool:
    return bool(store.run_records(model=name, limit=1))


def cmd_predict(args: argparse.Namespace) -> int:
    from ..analysis.predict import predict
    from .progress import no_hf_progress_bar

    _check(args)
    store = _open_store(args.store)
    with no_hf_progress_bar():  # predict loads the model for its features
        pred = _predict(args, store, predict)
    if args.json:
        print(json.dumps(pred.to_dict(), indent=1, allow_nan=False))
    else:
        print(pred.to_text())
    return 0


def _predict(args: argparse.Namespace, store: Any, predict: Any) -> Any:
    return predict(
        _model_arg(args.model, store),
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        batch=args.batch,
        dtype=args.dtype,
        device=args.device,
        store=store,
        runs=[] if store is None else None,
        machine=args.machine,
        source=args.source,
        kind=args.kind,
        mix=args.include_estimates,
        coverage=args.coverage,
        accelerator=args.accelerator,
    )
