"""The worker side of `sweep()`: one grid point, run wherever the executor puts it.

What a worker guarantees (the driver side is in `analysis.sweep`):

- A model given by path is loaded once per worker process and kept (a cache keyed by the path, the
  dtype and the device), and never loaded by two threads of one process at once (a per-process
  lock around loading: two concurrent `from_pretrained` calls in one process once gave a model
  with random embeddings, profiled without a word).
- A model given as an object is shared: its points run one at a time (a lock per model object,
  held across the dtype/device change, the run and the restore), so a thread pool gives every
  point a completed run instead of one run and errors.
- Unless the sweep allows overlap, a point holds this machine's power-counter lock while it runs
  (an advisory file lock in the temp directory, so worker processes of one machine, and other
  sweeps there, take turns: RAPL and NVML count the whole package / device, not one process).
- The worker never writes the store: it returns `Run.to_dict()` with `settings["sweep_worker"]`
  (host, pid, wall-clock start and end of the measured run), and the driver stores it.
- Quantization (grid key `quantization`): None (the model as given), "int8" (torch dynamic
  quantization of every nn.Linear, CPU only: a quantized copy, the given model is untouched),
  "4bit" (bitsandbytes NF4 at load: a model given by path on a CUDA device). A point this
  machine cannot run raises `PointSkipped` with the reason: the driver reports it as skipped,
  not failed. `settings["quantization"]` records it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError, RunError

__all__ = [
    "POWER_LOCK_ENV",
    "QUANTIZATIONS",
    "PointSkipped",
    "RayExecutor",
    "SweepPoint",
    "clear_loaded",
    "is_pair",
    "machine_power_lock",
    "power_lock_path",
    "preload",
    "run_point",
    "skip_reason",
]

POWER_LOCK_ENV = "LLM_ENERGY_POWER_LOCK"
QUANTIZATIONS = (None, "int8", "4bit")
"""The values of the grid's `quantization` axis."""


class PointSkipped(Exception):
    """This machine cannot run the point (a missing library or device): skipped, not failed."""


@dataclass
class SweepPoint:
    """One run of the sweep: picklable when the model is given by path."""

    model: Any  # a name/path, or a (model, tokenizer) pair
    prompt: Any
    point: dict[str, Any]
    store: str | None  # the driver's store (the worker never writes it)
    experiment: str
    power: Any
    level: str
    profiler_kw: dict[str, Any] = field(default_factory=dict)
    overlap: bool = False
    index: int = 0


def is_pair(x: Any) -> bool:
    return (
        isinstance(x, (tuple, list))
        and len(x) == 2
        and callable(getattr(x[0], "generate", None))
        and not isinstance(x[1], (str, os.PathLike))
    )


# -- models, per process ---------------------------------------------------------------------------
_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str | None, str | None, str | None], tuple[Any, Any]] = {}
_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def clear_loaded() -> None:
    """Forget this process's loaded models (they are freed once no point uses them)."""
    with _LOAD_LOCK:
        _LOADED.clear()


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return None
    torch_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise InvalidInputError(f"unknown dtype {dtype!r} (e.g. 'float32', 'bfloat16')")
    return torch_dtype


def _load(path: Any, dtype: Any, device: Any, quantization: str | None = None) -> tuple[Any, Any]:
    """This process's copy of the model at `path` in `dtype` on `device` (quantized as asked),
    loaded at most once.

    One model per process at a time: a new key drops the old entry (points still running on it
    keep their reference), so a worker never holds every model of the sweep."""
    torch_dtype = _torch_dtype(dtype)
    key = (
        os.path.abspath(os.fspath(path)),
        None if dtype is None else str(dtype),
        None if device is None else str(device),
        quantization,
    )
    with _LOAD_LOCK:  # never two loads at once in one process
        if key not in _LOADED:
            from ..models import load_model

            _LOADED.clear()
            if quantization == "4bit":
                model, tok = load_model(os.fspath(path), **_bnb_4bit(torch_dtype, device))
                model.config._llm_energy_quantization = "bitsandbytes nf4 4-bit"
            else:
                model, tok = load_model(os.fspath(path))
                if torch_dtype is not None or device is not None:
                    model.to(device=device, dtype=torch_dtype)
                if quantization == "int8":
                    model = _int8(model, inplace=True)
            _LOADED[key] = (model, tok)
        return _LOADED[key]


# -- quantization ----------------------------------------------------------------------------------
_INT8_COPIES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def skip_reason(quantization: Any, dtype: Any, device: Any, by_path: bool) -> str | None:
    """Why this machine cannot run the point's quantization (None: it can)."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise InvalidInputError(
            f"quantization must be None, 'int8' or '4bit'; got {quantization!r}"
        )
    dev = str(device or "cpu").split(":", 1)[0]
    if quantization == "int8":
        if dev != "cpu":
            return f"int8 (torch dynamic quantization) runs on the CPU only, not {device}"
        if dtype not in (None, "float32"):
            return f"int8 (torch dynamic quantization) quantizes a float32 model, not {dtype}"
        return None
    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        return "4bit needs bitsandbytes (pip install bitsandbytes) and a CUDA GPU: no bitsandbytes"
    if not torch.cuda.is_available():
        return "4bit needs bitsandbytes and a CUDA GPU: no CUDA device here"
    if dev != "cuda":
        return f"4bit (bitsandbytes) runs on a CUDA device, not {device or 'cpu'}"
    if not by_path:
        return "4bit quantizes the weights as they load: give the model by path"
    return None


def _int8(model: Any, inplace: bool = False) -> Any:
    """Every nn.Linear of `model` as a dynamically quantized int8 one (weights packed int8,
    activations quantized per batch); a copy unless `inplace`."""
    import torch
    from torch import nn

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        q = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8, inplace=inplace
        )
    if getattr(q, "config", None) is not None:  # what the profiler's features report
        q.config._llm_energy_quantization = "int8 dynamic (torch, nn.Linear)"
    return q


def _int8_copy(model: Any) -> Any:
    """The int8 copy of a shared model object, made once per object."""
    q = _INT8_COPIES.get(model)
    if q is None:
        q = _INT8_COPIES[model] = _int8(model)
    return q


def _bnb_4bit(torch_dtype: Any, device: Any) -> dict[str, Any]:
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch_dtype or _torch_dtype("bfloat16"),
        ),
        "device_map": str(device or "cuda"),
    }


def preload(model: Any, dtype: Any = None, device: Any = None) -> int:
    """Load `model` (a path) into this worker now; returns the worker's pid.

    `executor.submit(preload, path)` once per worker moves the load out of the first point."""
    _load(model, dtype, device)
    return os.getpid()


def _model_lock(model: Any) -> threading.Lock:
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.Lock()
        return lock


# -- the machine's power counters -----------------------------------------------------------------
_POWER_THREAD_LOCK = threading.Lock()


def power_lock_path() -> str:
    """The lock file all sweeps of this machine share (`LLM_ENERGY_POWER_LOCK` overrides it)."""
    return os.environ.get(POWER_LOCK_ENV) or os.path.join(
        tempfile.gettempdir(), "llm-energy-widget-power.lock"
    )


@contextlib.contextmanager
def machine_power_lock() -> Iterator[None]:
    """Hold this machine's power counters: one measured point at a time per machine.

    A thread lock for this process, then an advisory `flock` on `power_lock_path()` for the other
    processes (where `fcntl` exists; elsewhere only the threads of one process take turns)."""
    with _POWER_THREAD_LOCK:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(power_lock_path(), os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# -- one point ------------------------------------------------------------------------------------
def _input_ids(tokenizer: Any, prompt: Any, n_tokens: int | None, batch: int | None) -> Any:
    """The prompt as ids cut or repeated to n_tokens, replicated batch times, with its mask
    (the profiler's batched path: every row's tokens counted, J/token per generated token)."""
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
    rows = torch.tensor([ids] * (batch or 1), dtype=torch.long)
    return {"input_ids": rows, "attention_mask": torch.ones_like(rows)}


def _batched_prompt(tokenizer: Any, prompt: Any, n_tokens: int | None, batch: int | None) -> Any:
    """What a point profiles: without input_tokens, the prompt batch times as a batch of prompts
    (each through the chat template like a single prompt); with it, ids of that length."""
    if n_tokens is None and batch is not None and isinstance(prompt, (str, list)):
        return prompt if batch == 1 else [prompt] * batch
    return _input_ids(tokenizer, prompt, n_tokens, batch)


def run_point(task: SweepPoint) -> dict[str, Any]:
    """Profile one grid point; returns the run as a dict (picklable, for process executors).

    A run that does not complete is a RunError (the driver reports the point as failed)."""
    point = dict(task.point)
    n_tokens, batch = point.pop("input_tokens", None), point.pop("batch_size", None)
    dtype, device = point.pop("dtype", None), point.pop("device", None)
    quant = point.pop("quantization", None)
    reason = skip_reason(quant, dtype, device, by_path=not is_pair(task.model))
    if reason:
        raise PointSkipped(reason)
    if is_pair(task.model):
        model, tokenizer = task.model[0], task.model[1]
        with _model_lock(model):  # a shared model object: its points take turns
            before = (getattr(model, "dtype", None), getattr(model, "device", None))
            try:
                if dtype is not None or device is not None:
                    model.to(device=device, dtype=_torch_dtype(dtype))
                used = _int8_copy(model) if quant == "int8" else model
                return _profile(task, used, tokenizer, point, n_tokens, batch)
            finally:
                if before[0] is not None and (dtype is not None or device is not None):
                    model.to(device=before[1], dtype=before[0])
    model, tokenizer = _load(task.model, dtype, device, quant)
    return _profile(task, model, tokenizer, point, n_tokens, batch)


def _profile(
    task: SweepPoint,
    model: Any,
    tokenizer: Any,
    point: dict[str, Any],
    n_tokens: int | None,
    batch: int | None,
) -> dict[str, Any]:
    from ..profiler import EnergyProfiler

    prompt = (
        _batched_prompt(tokenizer, task.prompt, n_tokens, batch)
        if n_tokens is not None or batch is not None
        else task.prompt
    )
    profiler = EnergyProfiler(
        model,
        tokenizer,
        power=task.power,
        level=task.level,
        store=False,  # the driver stores the run (SQLite is never shared between processes)
        experiment=task.experiment,
        overlap=task.overlap,
        **task.profiler_kw,
    )
    extra: dict[str, Any] = {"sweep_point": dict(task.point)}
    if n_tokens is not None:
        extra["input_tokens"] = n_tokens
    if "quantization" in task.point:
        extra["quantization"] = task.point["quantization"]
    held = contextlib.nullcontext() if task.overlap else machine_power_lock()
    with held:
        times: dict[str, float] = {}

        def on_event(event: str, payload: Any) -> None:
            if event == "status" and payload.get("status") == "running":
                times.setdefault("start", time.time())

        run = profiler.generate(prompt, settings=extra, **point)
        unsubscribe = run.subscribe(on_event, replay=True)
        run.wait()
        end = time.time()
        unsubscribe()
    run.settings["sweep_worker"] = {
        "host": platform.node(),
        "pid": os.getpid(),
        "start_unix_s": times.get("start", end),
        "end_unix_s": end,
    }
    if run.status != "completed":
        raise RunError(f"run {run.run_id} {run.status}: {run.error_message or run.end_reason}")
    return run.to_dict()


# -- Ray ------------------------------------------------------------------------------------------
class RayExecutor:
    """`submit(fn, *args) -> concurrent.futures.Future` on Ray tasks (Ray has no Executor).

    Each task asks for `num_cpus` CPUs; Ray reuses its worker processes, so each keeps its
    loaded model between points."""

    def __init__(self, num_cpus: float = 1.0) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("RayExecutor needs Ray: pip install ray") from exc
        self._ray = ray
        self._num_cpus = num_cpus
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=self._num_cpus)(fn)
        fut: Future[Any] = remote.remote(*args, **kwargs).future()
        return fut
