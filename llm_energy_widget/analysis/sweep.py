"""Profile every combination of models x prompts x a settings grid, store them as one experiment.

Work goes through an Executor-style object (`submit(fn, *args) -> future`): the default runs the
points one after another in this process (one model per device at a time, so runs don't disturb
each other's power readings); Ray's or Dask's executor spreads them over a cluster, where models
should be given by name so each worker loads its own.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError, RunError
from .compare import Comparison

__all__ = [
    "GRID_ALIASES",
    "INPUT_KEYS",
    "MODEL_KEYS",
    "SequentialExecutor",
    "SweepPoint",
    "grid_points",
    "run_point",
    "sweep",
]

log = logging.getLogger(__name__)

MODEL_KEYS = ("dtype", "device")
INPUT_KEYS = ("input_tokens", "batch_size")
GRID_ALIASES = {"input_length": "input_tokens", "batch": "batch_size"}


class SequentialExecutor:
    """`submit` runs the call at once and hands back a finished Future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


@dataclass
class SweepPoint:
    """One run of the sweep: picklable when the model is given by name."""

    model: Any  # a name/path, or a (model, tokenizer) pair
    prompt: Any
    point: dict[str, Any]
    store: str | None
    experiment: str
    power: Any
    level: str
    profiler_kw: dict[str, Any] = field(default_factory=dict)


def _is_pair(x: Any) -> bool:
    return (
        isinstance(x, (tuple, list))
        and len(x) == 2
        and callable(getattr(x[0], "generate", None))
        and not isinstance(x[1], (str, os.PathLike))
    )


def _models(models: Any) -> list[Any]:
    if _is_pair(models) or isinstance(models, (str, os.PathLike)):
        return [models]
    if isinstance(models, Sequence) and models:
        out = list(models)
        for m in out:
            if not (_is_pair(m) or isinstance(m, (str, os.PathLike))):
                raise InvalidInputError(
                    "models must be a (model, tokenizer) pair, a model name/path, or a list of "
                    f"those; got an item of type {type(m).__name__}"
                )
        return out
    raise InvalidInputError(
        "models must be a (model, tokenizer) pair, a model name/path, or a non-empty list of those"
    )


def _prompts(prompts: Any) -> list[Any]:
    if isinstance(prompts, str) or (
        isinstance(prompts, list) and prompts and all(isinstance(m, dict) for m in prompts)
    ):
        return [prompts]  # one text, or one chat
    if isinstance(prompts, Sequence) and prompts:
        return list(prompts)
    raise InvalidInputError("prompts must be a prompt or a non-empty list of prompts")


def grid_points(grid: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values (a scalar is a one-value axis)."""
    if grid is None:
        return [{}]
    if not isinstance(grid, Mapping):
        raise InvalidInputError(
            f"grid must be a dict of setting -> values, got {type(grid).__name__}"
        )
    axes: dict[str, list[Any]] = {}
    for given, values in grid.items():
        if not isinstance(given, str):
            raise InvalidInputError(f"grid keys must be setting names, got {given!r}")
        key = GRID_ALIASES.get(given, given)
        vals = list(values) if isinstance(values, (list, tuple, range)) else [values]
        if not vals:
            raise InvalidInputError(f"grid axis {key!r} has no values")
        for v in vals:
            if key in ("input_tokens", "batch_size", "max_new_tokens") and (
                not isinstance(v, int) or isinstance(v, bool) or v <= 0
            ):
                raise InvalidInputError(f"grid {key} values must be positive integers; got {v!r}")
        axes[key] = vals
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _store_path(store: Any) -> str | None:
    from ..store import Store, default_path, storing_disabled

    if store is None or store is False:
        return None
    if store is True:
        return None if storing_disabled() else str(default_path())
    if isinstance(store, Store):
        return str(store.path)
    if isinstance(store, (str, os.PathLike)):
        return os.fspath(store)
    raise InvalidInputError(
        f"store must be True, False, a path or a Store, not {type(store).__name__}"
    )


_LOADED: dict[str, tuple[Any, Any]] = {}


def _load(model: Any) -> tuple[Any, Any]:
    if _is_pair(model):
        return model[0], model[1]
    key = os.fspath(model)
    if key not in _LOADED:
        from ..models import load_model

        _LOADED.clear()  # one loaded model per worker at a time
        _LOADED[key] = load_model(key)
    return _LOADED[key]


def _input_ids(tokenizer: Any, prompt: Any, n_tokens: int | None, batch: int | None) -> Any:
    """The prompt as ids, cut or repeated to n_tokens, replicated batch times."""
    import torch

    if tokenizer is None:
        raise InvalidInputError("input_tokens/batch_size in a sweep need a tokenizer")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        ids = list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
        if ids and isinstance(ids[0], list):
            ids = ids[0]
    else:
        ids = list(tokenizer(prompt)["input_ids"])
    if not ids:
        raise InvalidInputError("the prompt encodes to no tokens")
    if n_tokens is not None:
        ids = (ids * (n_tokens // len(ids) + 1))[:n_tokens]  # truncate, or pad by repeating
    return torch.tensor([ids] * (batch or 1), dtype=torch.long)


def run_point(task: SweepPoint) -> dict[str, Any]:
    """Profile one grid point; returns the run as a dict (picklable, for remote executors)."""
    import torch

    from ..profiler import EnergyProfiler
    from ..store import Store

    model, tokenizer = _load(task.model)
    point = dict(task.point)
    n_tokens, batch = point.pop("input_tokens", None), point.pop("batch_size", None)
    dtype, device = point.pop("dtype", None), point.pop("device", None)
    before = (getattr(model, "dtype", None), getattr(model, "device", None))
    try:
        if dtype is not None or device is not None:
            torch_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
            if dtype is not None and not isinstance(torch_dtype, torch.dtype):
                raise InvalidInputError(f"unknown dtype {dtype!r} (e.g. 'float32', 'bfloat16')")
            model.to(device=device, dtype=torch_dtype)
        prompt = (
            _input_ids(tokenizer, task.prompt, n_tokens, batch)
            if n_tokens is not None or batch is not None
            else task.prompt
        )
        # Our own Store object, so we can wait until the finished run is on disk.
        store = Store(task.store) if task.store is not None else None
        profiler = EnergyProfiler(
            model,
            tokenizer,
            power=task.power,
            level=task.level,
            store=store if store is not None else False,
            experiment=task.experiment,
            **task.profiler_kw,
        )
        extra: dict[str, Any] = {"sweep_point": dict(task.point)}
        if n_tokens is not None:
            extra["input_tokens"] = n_tokens
        run = profiler.generate(prompt, settings=extra, **point)
        run.wait()
        if store is not None:
            store.flush()
            store.close()
        if run.status == "failed":
            raise RunError(f"run {run.run_id} failed: {run.error_message}")
        return run.to_dict()
    finally:
        if before[0] is not None and (dtype is not None or device is not None):
            model.to(device=before[1], dtype=before[0])


def sweep(
    models: Any,
    prompts: Any,
    grid: Mapping[str, Any] | None = None,
    *,
    executor: Any = None,
    experiment: str | None = None,
    store: Any = True,
    power: Any = "auto",
    level: str = "token",
    **profiler_kw: Any,
) -> Comparison:
    """Run models x prompts x grid, store every run under `experiment`, and compare them.

    grid keys: max_new_tokens, input_tokens (prompt cut or repeated to N tokens), batch_size
    (prompt replicated), dtype, device, and any `generate` setting (do_sample, temperature, …).
    """
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InvalidInputError("executor must have submit(fn, *args) -> future")
    experiment = experiment or "sweep-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    store_path = _store_path(store)
    tasks = [
        SweepPoint(m, p, pt, store_path, experiment, power, level, dict(profiler_kw))
        for m in _models(models)
        for p in _prompts(prompts)
        for pt in grid_points(grid)
    ]
    ex = executor or SequentialExecutor()
    futures = [ex.submit(run_point, t) for t in tasks]
    results, failures = [], []
    for task, fut in zip(tasks, futures, strict=True):
        try:
            results.append(fut.result())
        except Exception as exc:
            log.error("sweep point %s failed: %s", task.point, exc)
            failures.append(f"point {task.point} failed: {type(exc).__name__}: {exc}")
    if not results:
        raise RunError("every sweep point failed: " + "; ".join(failures))
    comparison = Comparison([_from_dict(d) for d in results])
    comparison.notes.extend(failures)
    comparison.experiment = experiment
    return comparison


def _from_dict(d: dict[str, Any]) -> Any:
    from ..run import Run

    return Run.from_dict(d)
