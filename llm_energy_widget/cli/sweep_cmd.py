"""`llm-energy sweep`: models x prompts x a settings grid through `analysis.sweep.sweep()`,
stored as one experiment, then the comparison table (`Comparison.to_text`, or `--json`).

The grid comes from flags (`--max-new-tokens 8,16 --dtype float32,bfloat16`) and/or a TOML or
JSON file (`--grid FILE`); an axis given both ways is an error, not a silent choice. Everything
that can be checked before a model loads is (models, dtypes, devices, the power source, the
store), so a typo fails in milliseconds with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RunError
from .checks import DTYPES, resolve_device
from .progress import no_hf_progress_bar

__all__ = [
    "DASK_CONNECT_S",
    "EXECUTORS",
    "GRID_FLAGS",
    "cmd_sweep",
    "grid_from_args",
    "make_executor",
    "read_grid",
    "register",
]

EXECUTORS = "sequential, process:N, dask:ADDRESS, local-cluster:N"
DASK_CONNECT_S = 10.0
"""How long `dask:ADDRESS` waits for its scheduler before the sweep is an input error."""
GRID_FLAGS: dict[str, type] = {
    "max_new_tokens": int,
    "input_tokens": int,
    "batch_size": int,
    "dtype": str,
    "device": str,
    "do_sample": bool,
    "temperature": float,
}
"""Grid axes settable by a flag (`--max-new-tokens 8,16`), each value parsed as its type."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="profile every combination of models x prompts x a settings grid and compare them",
        description="Profile models x prompts x a grid of settings, store the runs as one "
        "experiment, and print their comparison. Axes are comma-separated lists "
        "(--max-new-tokens 8,16) or a --grid file (TOML or JSON: setting = [values]). "
        "Exit status 1 when some points failed (the others are stored and compared).",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="PATH",
        help="a local transformers model directory or .gguf file (repeatable; default: SmolLM2)",
    )
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    p.add_argument(
        "--grid",
        metavar="FILE",
        help="a TOML or JSON file of setting -> list of values (default: none, the flags only)",
    )
    for name, kind in GRID_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        what = {int: "positive whole numbers", float: "numbers", bool: "true/false"}.get(
            kind, "names"
        )
        extra = {
            "dtype": f" ({', '.join(d for d in DTYPES if d != 'auto')})",
            "device": " (cpu, cuda, cuda:N, mps)",
            "do_sample": "; alone: true",
        }.get(name, "")
        p.add_argument(
            flag,
            dest=f"axis_{name}",
            metavar="LIST",
            nargs="?" if kind is bool else None,
            const="true" if kind is bool else None,
            help=f"axis {name}: comma-separated {what}{extra} (default: not swept, the "
            "profiler's default)",
        )
    p.add_argument(
        "--level",
        default="token",
        help="token, layer, component or deep (default: token, the cheapest)",
    )
    p.add_argument(
        "--power",
        default="auto",
        help="power source, as for profile (default: auto, the first that works here)",
    )
    p.add_argument(
        "--baseline-s",
        type=float,
        default=1.0,
        help="seconds of idle power measured before each run (default: 1)",
    )
    p.add_argument(
        "--interval-ms", type=float, default=100.0, help="power sampling interval (default: 100)"
    )
    p.add_argument(
        "--executor",
        default="sequential",
        help=f"where points run: {EXECUTORS} (default: sequential, one after another here)",
    )
    p.add_argument(
        "--overlap",
        action="store_true",
        help="let points on one machine run at the same time (each run is flagged; default: "
        "they take turns on the power counters)",
    )
    p.add_argument(
        "--experiment", help="experiment name (default: sweep-YYYYMMDD-HHMMSS, the start time)"
    )
    p.add_argument(
        "--store", metavar="PATH", help="run store (default: $LLM_ENERGY_STORE or user data)"
    )
    p.add_argument("--no-store", action="store_true", help="do not save the runs")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (schema docs/schemas/sweep.schema.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_sweep)


# -- the grid -------------------------------------------------------------------------------------
def _parse_value(text: str, kind: type, flag: str) -> Any:
    v = text.strip()
    if kind is bool:
        if v.lower() in ("true", "yes", "1"):
            return True
        if v.lower() in ("false", "no", "0"):
            return False
        raise InvalidInputError(f"{flag}: {v!r} is not true or false")
    if kind is int:
        try:
            n = int(v)
        except ValueError:
            raise InvalidInputError(f"{flag}: {v!r} is not a whole number") from None
        if n <= 0:
            raise InvalidInputError(f"{flag}: values must be positive, got {n}")
        return n
    if kind is float:
        try:
            return float(v)
        except ValueError:
            raise InvalidInputError(f"{flag}: {v!r} is not a number") from None
    if not v:
        raise InvalidInputError(f"{flag}: an empty value")
    return v


def read_grid(path: str) -> dict[str, Any]:
    """A grid file: TOML (`max_new_tokens = [8, 16]`) or JSON (`{"max_new_tokens": [8, 16]}`)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidInputError(f"--grid {path}: no such file")
    text = file.read_bytes()
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text.decode("utf-8"))
        elif file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise InvalidInputError(f"--grid {path}: give a .toml or .json file")
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError
        raise InvalidInputError(f"--grid {path}: not valid {file.suffix[1:]}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"--grid {path}: must be a table of setting -> values")
    return data


def grid_from_args(args: argparse.Namespace) -> dict[str, Any]:
    grid: dict[str, Any] = read_grid(args.grid) if args.grid else {}
    for name, kind in GRID_FLAGS.items():
        raw = getattr(args, f"axis_{name}")
        if raw is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name in grid:
            raise InvalidInputError(f"{flag} is also in --grid {args.grid}: give it once")
        grid[name] = [_parse_value(x, kind, flag) for x in raw.split(",")]
    for v in _values(grid.get("dtype")):
        if v not in DTYPES or v == "auto":
            raise InvalidInputError(
                f"dtype {v!r}: one of {', '.join(d for d in DTYPES if d != 'auto')}"
            )
    if "device" in grid:
        grid["device"] = [resolve_device(str(v)) for v in _values(grid["device"])]
    return grid


def _values(axis: Any) -> list[Any]:
    if axis is None:
        return []
    return list(axis) if isinstance(axis, (list, tuple)) else [axis]


# -- executors ------------------------------------------------------------------------------------
def make_executor(spec: str) -> tuple[Any, list[Any]]:
    """(executor for sweep(), things to close afterwards) from `--executor`."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "sequential" and not arg:
        return None, []
    if kind in ("process", "local-cluster"):
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n <= 0:
            raise InvalidInputError(f"--executor {spec}: {kind}:N needs a worker count N >= 1")
        if kind == "process":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # a fresh interpreter per worker: forking a process that has imported torch is unsafe
            pool = ProcessPoolExecutor(
                n, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker
            )
            return pool, [pool]
        from distributed import Client, LocalCluster

        _quiet_dask()
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # no web server on a port nobody asked for
            silence_logs=logging.WARNING,  # its INFO lines are not this command's output
        )
        client = Client(cluster)
        client.run(_quiet_worker)
        return client, [client, cluster]
    if kind == "dask" and arg:
        from distributed import Client

        _quiet_dask()
        try:
            client = Client(arg, timeout=DASK_CONNECT_S)
        except (OSError, TimeoutError) as exc:
            raise InvalidInputError(
                f"--executor {spec}: cannot reach the Dask scheduler at {arg} ({exc})"
            ) from None
        client.run(_quiet_worker)
        return client, [client]
    raise InvalidInputError(f"--executor {spec!r}: one of {EXECUTORS}")


def _quiet_dask() -> None:
    """Dask's INFO lines (scheduler, nanny, worker start and stop) are not this command's output;
    `llm-energy -v` keeps them."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("distributed").setLevel(logging.WARNING)


def _quiet_worker() -> None:
    """A process-pool worker's start: no "Loading weights" bars on the command's stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _close(things: list[Any]) -> None:
    for thing in things:
        closer = getattr(thing, "shutdown", None) or getattr(thing, "close", None)
        if callable(closer):
            closer()


# -- the command ----------------------------------------------------------------------------------
def _models(args: argparse.Namespace) -> list[str]:
    if not args.model:
        from ..models import DEFAULT_GGUF, default_model_dir

        return [str(default_model_dir() / DEFAULT_GGUF)]
    for m in args.model:
        if not Path(m).expanduser().exists():
            raise InvalidInputError(
                f"--model {m}: no such file or directory (a local transformers model "
                "directory or a .gguf file)"
            )
    return [str(Path(m).expanduser()) for m in args.model]


def _check(args: argparse.Namespace) -> Any:
    """Everything but the runs, before any model loads; returns the store path (None: none)."""
    from ..power import get_source
    from ..profiler import check_settings
    from ..store import resolve_store

    for prompt in args.prompt:
        if not prompt.strip():
            raise InvalidInputError("--prompt is empty")
    check_settings(
        level=args.level,
        interval_ms=args.interval_ms,
        baseline_s=args.baseline_s,
        experiment=args.experiment,
    )
    get_source(args.power)
    if args.no_store:
        return None
    store = resolve_store(args.store or True)
    if store is None:
        return None
    store.check_writable()
    path = str(store.path)
    store.close()
    return path


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..analysis.sweep import SweepWarning, sweep

    grid = grid_from_args(args)
    models = _models(args)
    store_path = _check(args)
    executor, to_close = make_executor(args.executor)
    try:
        with warnings.catch_warnings(), no_hf_progress_bar():
            warnings.simplefilter("ignore", SweepWarning)  # the failures are printed below
            comparison = sweep(
                models,
                list(args.prompt),
                grid or None,
                executor=executor,
                experiment=args.experiment,
                store=store_path if store_path is not None else False,
                power=args.power,
                level=args.level,
                overlap=args.overlap,
                progress=False if args.quiet else None,
                baseline_s=args.baseline_s,
                interval_ms=args.interval_ms,
            )
    except RunError as exc:  # every point failed: nothing to compare
        print(f"llm-energy: sweep: {exc}", file=sys.stderr)
        return 1
    finally:
        _close(to_close)
    failures = list(comparison.failures)
    if args.json:
        doc = {
            "experiment": comparison.experiment,
            "store": store_path,
            "points": len(comparison.runs) + len(failures),
            "runs": comparison.records(),
            "failures": failures,
            "notes": list(comparison.notes),
        }
        print(json.dumps(doc, indent=1, allow_nan=False, default=str))
    else:
        print(comparison.to_text())
        where = f"stored in {store_path}" if store_path else "not stored (--no-store)"
        print(
            f"\nexperiment {comparison.experiment}: {len(comparison.runs)} run(s) {where}"
            + (f"; {len(failures)} point(s) failed" if failures else "")
        )
    return 1 if failures else 0
