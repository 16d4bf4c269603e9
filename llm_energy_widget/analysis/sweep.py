"""Profile every combination of models x prompts x a settings grid, store them as one experiment.

The executor contract (the worker side is in `analysis.sweep_workers`):

- Points go through an Executor-style object: `submit(fn, *args) -> future` (the default runs
  them one after another here; `ThreadPoolExecutor`, `ProcessPoolExecutor`, Dask's
  `client.get_executor()` or a `distributed.Client` itself, and `RayExecutor` all work).
- A model given by path is loaded once per worker process (never by two threads at once); a model
  given as an object is shared, so its points run one at a time. Across processes, give paths.
- Overlap: by default a point holds its machine's power-counter lock while it runs, so points
  on one machine never overlap, whatever the executor. With `overlap=True` they may; afterwards
  the driver compares the runs' wall-clock spans, and runs of different worker processes on the
  same host and power source that overlap get a `run.warnings` entry and
  `settings["concurrent_runs"]` (the other run's id, pid and seconds of overlap).
- One store: workers return `Run.to_dict()`, the driver (this process) writes every run to its
  store; SQLite is never written by the workers. Without overlap each run is stored as it comes
  back; with overlap, once all are back (their flags depend on the runs that come later).
- Skipped points: a point this machine cannot run (grid `quantization="4bit"` without
  bitsandbytes and CUDA, int8 on a GPU) is skipped, not failed: `comparison.skipped` lists them
  ({index, point, reason}) and `comparison.notes` says "k of n sweep points skipped: <reason>".
- Failures: a failed point never passes silently. `on_error="warn"` (the default) returns the
  runs that completed, with "k of n sweep points failed" first in `comparison.notes`, the
  failures in `comparison.failures`, a logged error and a `SweepWarning`; `on_error="raise"`
  raises a RunError with the same text once every point has ended. Every point failing raises.
- Progress: points done / total and an ETA, on stderr where it is a terminal (one line, rewritten)
  and as an updating text output in a notebook; quiet when piped (`progress=True` forces plain
  lines on stderr, `progress=False` silences it).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, as_completed
from typing import Any

from ..errors import InvalidInputError, RunError
from .compare import Comparison
from .sweep_workers import QUANTIZATIONS, PointSkipped, RayExecutor, SweepPoint, is_pair, run_point

__all__ = [
    "GRID_ALIASES",
    "INPUT_KEYS",
    "MODEL_KEYS",
    "RayExecutor",
    "SequentialExecutor",
    "SweepPoint",
    "SweepWarning",
    "flag_concurrent_runs",
    "grid_points",
    "run_point",
    "sweep",
]

log = logging.getLogger(__name__)

MODEL_KEYS = ("dtype", "device")
INPUT_KEYS = ("input_tokens", "batch_size")
GRID_ALIASES = {"input_length": "input_tokens", "batch": "batch_size"}


class SweepWarning(UserWarning):
    """Some points of a sweep failed (the sweep returned the others)."""


class SequentialExecutor:
    """`submit` runs the call at once and hands back a finished Future."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _models(models: Any) -> list[Any]:
    if is_pair(models) or isinstance(models, (str, os.PathLike)):
        return [models]
    if isinstance(models, Sequence) and models:
        out = list(models)
        for m in out:
            if not (is_pair(m) or isinstance(m, (str, os.PathLike))):
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
            if key == "quantization" and v not in QUANTIZATIONS:
                raise InvalidInputError(
                    f"grid quantization values must be None, 'int8' or '4bit'; got {v!r}"
                )
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


# -- progress -------------------------------------------------------------------------------------
class _Progress:
    """Points done / total and an ETA: a rewritten stderr line on a terminal, plain lines when
    forced onto a pipe, an updating text output in a notebook kernel, nothing otherwise."""

    def __init__(self, total: int, label: str, progress: bool | None) -> None:
        self.total, self.label = total, label
        self.t0 = time.monotonic()
        self.mode: str | None = None
        self._handle: Any = None
        if progress is False:
            return
        from ..notebook.cells import in_kernel

        if in_kernel():
            self.mode = "notebook"
        elif getattr(sys.stderr, "isatty", lambda: False)():
            self.mode = "tty"
        elif progress:
            self.mode = "lines"

    def text(self, done: int, failed: int) -> str:
        elapsed = time.monotonic() - self.t0
        out = f"{self.label}: {done}/{self.total} points done"
        if failed:
            out += f" ({failed} failed)"
        out += f", {elapsed:.1f} s"
        if 0 < done < self.total:
            out += f", ETA {elapsed / done * (self.total - done):.0f} s"
        return out

    def update(self, done: int, failed: int) -> None:
        if self.mode is None:
            return
        text = self.text(done, failed)
        if self.mode == "notebook":
            from IPython.display import display

            if self._handle is None:
                self._handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self._handle.update({"text/plain": text}, raw=True)
        elif self.mode == "tty":
            end = "\n" if done >= self.total else ""
            print(f"\r{text}\x1b[K", end=end, file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


# -- runs from several processes ------------------------------------------------------------------
def flag_concurrent_runs(runs: Sequence[Any]) -> int:
    """Flag runs of different worker processes, on one host and power source, that overlapped.

    Each such run gets a warning and `settings["concurrent_runs"]`: [{run_id, pid, overlap_s}]
    (from the wall-clock spans in `settings["sweep_worker"]`). Runs of one process are flagged by
    that process's run queue already. Returns the number of overlapping pairs."""
    spans = [(r, r.settings["sweep_worker"]) for r in runs if r.settings.get("sweep_worker")]
    pairs = 0
    for (a, wa), (b, wb) in itertools.combinations(spans, 2):
        if wa.get("host") != wb.get("host") or wa.get("pid") == wb.get("pid"):
            continue
        source = a.power_info.get("source")
        if source != b.power_info.get("source"):
            continue
        overlap_s = min(wa["end_unix_s"], wb["end_unix_s"]) - max(
            wa["start_unix_s"], wb["start_unix_s"]
        )
        if overlap_s <= 0:
            continue
        pairs += 1
        for run, w, other, wo in ((a, wa, b, wb), (b, wb, a, wa)):
            length_s = w["end_unix_s"] - w["start_unix_s"]
            run.settings.setdefault("concurrent_runs", []).append(
                {"run_id": other.run_id, "pid": wo.get("pid"), "overlap_s": round(overlap_s, 3)}
            )
            run.warnings.append(
                f"ran at the same time as run {other.run_id} (worker process {wo.get('pid')} on "
                f"this machine) for {overlap_s:.2f} s of its {length_s:.2f} s: both read the same "
                f"'{source}' power counters, so its energy figures include that run's work too "
                "(the sweep allowed overlap)"
            )
    return pairs


def _executor(executor: Any) -> Any:
    if executor is None:
        return SequentialExecutor()
    if callable(getattr(executor, "get_executor", None)):  # a distributed.Client
        return executor.get_executor()
    if not callable(getattr(executor, "submit", None)):
        raise InvalidInputError("executor must have submit(fn, *args) -> future")
    return executor


def _completed(ex: Any, tasks: list[SweepPoint]) -> Iterator[tuple[int, Any]]:
    """(index, future) as they finish where they are concurrent Futures, else in order; the
    sequential executor runs each point only when the one before has been reported."""
    if isinstance(ex, SequentialExecutor):
        for i, t in enumerate(tasks):
            yield i, ex.submit(run_point, t)
        return
    futures = [ex.submit(run_point, t) for t in tasks]
    if all(isinstance(f, Future) for f in futures):
        where = {id(f): i for i, f in enumerate(futures)}
        for f in as_completed(futures):
            yield where[id(f)], f
    else:
        yield from enumerate(futures)


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
    overlap: bool = False,
    progress: bool | None = None,
    on_error: str = "warn",
    **profiler_kw: Any,
) -> Comparison:
    """Run models x prompts x grid, store every run under `experiment`, and compare them.

    grid keys: max_new_tokens, input_tokens (prompt cut or repeated to N tokens), batch_size
    (prompt replicated), dtype, device, quantization (None, "int8", "4bit": see
    `sweep_workers`), and any `generate` setting (do_sample, temperature, …).
    executor: see the module docstring (give models by path to process or cluster executors).
    overlap: let points on one machine run at the same time (flagged in each run); by default
    they take turns on the machine's power counters.
    progress: None (auto: terminal or notebook), True (also when piped), False.
    on_error: "warn" returns the completed runs and says how many points failed; "raise" raises.
    """
    if on_error not in ("warn", "raise"):
        raise InvalidInputError(f"on_error must be 'warn' or 'raise', not {on_error!r}")
    ex = _executor(executor)
    experiment = experiment or "sweep-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    store_path = _store_path(store)
    points = [
        (m, p, pt) for m in _models(models) for p in _prompts(prompts) for pt in grid_points(grid)
    ]
    tasks = [
        SweepPoint(m, p, pt, store_path, experiment, power, level, dict(profiler_kw), overlap, i)
        for i, (m, p, pt) in enumerate(points)
    ]
    bar = _Progress(len(tasks), f"sweep {experiment}", progress)
    bar.update(0, 0)
    results: dict[int, Any] = {}
    failures: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    db = _open_store(store_path)
    try:
        for i, fut in _completed(ex, tasks):
            try:
                run = _from_dict(fut.result())
            except PointSkipped as exc:
                log.info("sweep point %s skipped: %s", tasks[i].point, exc)
                skipped.append({"index": i, "point": dict(tasks[i].point), "reason": str(exc)})
            except Exception as exc:
                task = tasks[i]
                log.error("sweep point %s failed: %s", task.point, exc)
                failures.append(
                    {
                        "index": i,
                        "point": dict(task.point),
                        "prompt": task.prompt if isinstance(task.prompt, str) else None,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
            else:
                results[i] = run
                if db is not None and not overlap:
                    db.save(run)  # stored as it comes back: a crash later keeps it
            bar.update(len(results) + len(failures) + len(skipped), len(failures))
        runs = [results[i] for i in sorted(results)]
        if overlap:
            flag_concurrent_runs(runs)
            if db is not None:
                for run in runs:
                    db.save(run)
    finally:
        if db is not None:
            db.close()
    failures.sort(key=lambda f: f["index"])
    skipped.sort(key=lambda f: f["index"])
    lines = [f"point {f['point']} failed: {f['error']}" for f in failures]
    headline = f"{len(failures)} of {len(tasks)} sweep points failed"
    reasons = list(dict.fromkeys(s["reason"] for s in skipped))
    skip_note = f"{len(skipped)} of {len(tasks)} sweep points skipped: " + "; ".join(reasons)
    if not runs:
        if not failures:
            raise RunError(f"every sweep point was skipped ({skip_note})")
        raise RunError(f"every sweep point failed ({headline}): " + "; ".join(lines))
    if failures and on_error == "raise":
        raise RunError(f"{headline}: " + "; ".join(lines))
    comparison = Comparison(runs)
    if skipped:
        comparison.notes.append(skip_note)
    if failures:
        comparison.notes.extend([headline, *lines])
        warnings.warn(f"{headline}: " + "; ".join(lines), SweepWarning, stacklevel=2)
    comparison.experiment = experiment
    comparison.failures = failures
    comparison.skipped = skipped
    return comparison


def _open_store(path: str | None) -> Any:
    if path is None:
        return None
    from ..store import Store

    return Store(path)


def _from_dict(d: dict[str, Any]) -> Any:
    from ..run import Run

    return Run.from_dict(d)
