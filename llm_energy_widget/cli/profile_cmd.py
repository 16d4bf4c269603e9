"""`llm-energy profile` (the main job) and `llm-energy demo` (what `make demo` runs).

The run is printed by `run_text.print_run` (also `llm-energy show`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..core.schema import LEVELS
from ..run import Run
from .checks import DEVICES, DTYPES, check_before_load, prompt_batch
from .progress import RunProgress, no_hf_progress_bar
from .run_text import print_run

__all__ = ["DEMO_PROMPT", "cmd_demo", "cmd_profile", "register", "run_profile"]

DEMO_PROMPT = "What is the capital of France? Answer in one word."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="profile one generation and print per-token energy and the summary",
        description="Profile one generation: phases, per-token energy, layer x component table.",
    )
    _add_profile_args(p)
    p.set_defaults(func=cmd_profile)

    d = sub.add_parser(
        "demo",
        help="the main job on the default model: profile, notebook and HTML report under demo/",
    )
    d.add_argument("--out", default="demo", help="output folder (default: demo)")
    d.add_argument(
        "--max-new-tokens", type=int, default=24, help="tokens to generate at most (default: 24)"
    )
    d.add_argument("--power", default="auto", help="power source, as for profile (default: auto)")
    d.add_argument(
        "--no-notebook", action="store_true", help="skip executing the quickstart notebook"
    )
    d.add_argument(
        "--quiet",
        action="store_true",
        help="print only the summary, and no progress line on a terminal",
    )
    d.set_defaults(func=cmd_demo)


def _add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompt",
        required=True,
        action="append",
        help="the prompt (through the model's chat template unless --no-chat); repeat it to "
        "profile several prompts as one batch (left-padded, one run)",
    )
    p.add_argument(
        "--batch",
        metavar="N",
        type=int,
        default=1,
        help="profile one --prompt N times as one batch (default: 1, no batch)",
    )
    p.add_argument(
        "--model", help="local transformers model directory or .gguf file (default: SmolLM2)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=32, help="tokens to generate at most (default: 32)"
    )
    p.add_argument(
        "--level",
        choices=LEVELS,
        default="component",
        help="how deep to time: token, layer, component or deep (default: component)",
    )
    p.add_argument(
        "--power",
        default="auto",
        help="auto, estimate, nvml, rapl, powermetrics, macmon, replay:PATH, powermetrics:PATH "
        "(default: auto, the first that works here)",
    )
    p.add_argument(
        "--interval-ms",
        type=float,
        default=100.0,
        help="power sampling interval in ms (default: 100)",
    )
    p.add_argument(
        "--baseline-s",
        type=float,
        default=1.0,
        help="seconds of idle power measured before the run (default: 1)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help=f"where the model runs: {DEVICES} (default: auto, the first of cuda, mps, cpu "
        "available here)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="the model's weights and compute type (default: auto, as the model loads)",
    )
    chat = p.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat",
        dest="chat",
        action="store_const",
        const=True,
        default="auto",
        help="always apply the tokenizer's chat template (an error if it has none); default: "
        "apply it when the tokenizer has one",
    )
    chat.add_argument(
        "--no-chat",
        "--raw",
        dest="chat",
        action="store_const",
        const=False,
        help="send the prompt as plain text, no chat template (--raw is the old name)",
    )
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the unmeasured warm-up generate (a few tokens) before the run; without it "
        "the run also measures the process's one-time set-up",
    )
    p.add_argument(
        "--sample",
        metavar="all|K",
        type=_sample_arg,
        help="which tokens run with the layer instrumentation: 'all', or K (the prefill and "
        "every K-th decode token); the rest run bare, at plain speed, and carry J/token and "
        "tokens/s (default: an adaptive 0.5 %% overhead budget)",
    )
    p.add_argument(
        "--overhead-budget",
        metavar="F",
        type=float,
        help="let the profiler choose the instrumented tokens so that they add at most F (a "
        "fraction in (0, 1), e.g. 0.02) to the decode time; not with --sample (default: "
        "0.005)",
    )
    p.add_argument(
        "--do-sample",
        action="store_true",
        help="sample the next token instead of greedy decoding (default: greedy)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature, with --do-sample (default: the model's generation config)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed torch's random generators before the run, so a sampled run repeats "
        "(default: none, unseeded)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="write the whole run as JSON to PATH ('-' for stdout; default: none; schema "
        "docs/schemas/run.schema.json)",
    )
    p.add_argument("--store", metavar="PATH", help="run store (default: the user data directory)")
    p.add_argument("--no-store", action="store_true", help="do not save the run")
    p.add_argument(
        "--tag", action="append", default=[], help="tag the run (repeatable; default: no tags)"
    )
    p.add_argument("--experiment", help="experiment name (default: none)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the summary, and no progress line on a terminal",
    )


def _sample_arg(value: str) -> int | str:
    """'all' or a whole number as an int; anything else is passed on for the profiler to refuse
    with its own message (InvalidInputError: exit code 2)."""
    v = value.strip()
    return int(v) if v.lstrip("+-").isdigit() else v


def _load(model_arg: str | None) -> tuple[Any, Any]:
    from ..models import load_default_model, load_model

    return load_model(model_arg) if model_arg else load_default_model()


def _place(model: Any, device: str | None, dtype: str | None) -> Any:
    """The model on `--device` in `--dtype` ("auto" dtype: as loaded)."""
    import torch

    torch_dtype = None if dtype in (None, "auto") else getattr(torch, str(dtype))
    if device is not None and str(getattr(model, "device", device)) == device:
        device = None  # already there (a model without a device is left as it is)
    if torch_dtype is not None and getattr(model, "dtype", None) == torch_dtype:
        torch_dtype = None
    if device is not None or torch_dtype is not None:
        model = model.to(device=device, dtype=torch_dtype)
    return model


def run_profile(args: argparse.Namespace, out: Any = sys.stdout) -> Run:
    from ..profiler import EnergyProfiler

    progress = RunProgress(sys.stderr, quiet=bool(args.quiet))
    opened = check_before_load(args)  # every setting, the source and the store, before the load
    sample = getattr(args, "sample", None)
    budget = getattr(args, "overhead_budget", None)
    progress.phase("loading")
    t0 = time.perf_counter()
    with no_hf_progress_bar():
        model, tok = _load(args.model)
    model = _place(model, getattr(args, "device", None), getattr(args, "dtype", None))
    progress.note(f"loaded {model.config._llm_energy_name} in {time.perf_counter() - t0:.1f} s")
    prof = EnergyProfiler(
        model,
        tok,
        power=opened["source"],
        level=args.level,
        interval_ms=args.interval_ms,
        baseline_s=args.baseline_s,
        store=opened["store"],
        tags=args.tag,
        experiment=args.experiment,
        warmup=getattr(args, "warmup", True),
        sample=sample,
        overhead_budget=budget,
    )
    gen: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "do_sample": bool(args.do_sample)}
    if args.temperature is not None:
        gen["temperature"] = args.temperature
    if getattr(args, "seed", None) is not None:
        import torch

        torch.manual_seed(args.seed)  # every device's generator: sampled tokens repeat
    run = prof.generate(prompt_batch(args), chat=getattr(args, "chat", "auto"), **gen)
    progress.follow(run)
    try:
        try:
            run.wait()
        except KeyboardInterrupt:
            args.interrupted = True  # exit 130, as a shell expects after Ctrl-C
            run.cancel()
            run.wait(30)
            progress.note(f"interrupted: the partial run {run.run_id} keeps what it measured")
        writer = getattr(run, "store_writer", None)
        if writer is not None:
            progress.phase("saving")
            writer.wait(10)
    finally:
        progress.close()
    print_run(run, out, quiet=args.quiet)
    if args.json:
        if args.json == "-":
            from ..core.jsonsafe import strict_json

            json.dump(strict_json(run.to_dict()), sys.stdout, allow_nan=False)
            sys.stdout.write("\n")
        else:
            path = run.to_json(args.json)
            print(f"wrote {path}", file=sys.stderr)
    return run


def cmd_profile(args: argparse.Namespace) -> int:
    run = run_profile(args, out=sys.stderr if args.json == "-" else sys.stdout)
    if getattr(args, "interrupted", False):
        return 130
    return 0 if run.status in ("completed", "cancelled") else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Profile the default model, then execute the quickstart notebook and write an HTML report."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(
        prompt=DEMO_PROMPT,
        model=None,
        max_new_tokens=args.max_new_tokens,
        level="component",
        power=args.power,
        interval_ms=100.0,
        baseline_s=1.0,
        chat="auto",
        warmup=True,
        do_sample=False,
        temperature=None,
        seed=None,
        device=None,
        dtype=None,
        sample=None,
        overhead_budget=None,
        json=str(out / "run.json"),
        store=None,
        no_store=False,
        tag=["demo"],
        experiment="demo",
        quiet=args.quiet,
    )
    run = run_profile(ns)
    report = run.to_html(out / "report.html")
    print(f"\nHTML report: {report.resolve()}")
    print(f"run JSON:    {(out / 'run.json').resolve()}")
    if not args.no_notebook:
        from ..notebook.execute import execute_notebook

        nb = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
        if nb.is_file():
            executed = execute_notebook(nb, out / "quickstart.ipynb", cwd=out)
            print(
                f"executed notebook (its runs saved as images, text and HTML): {executed.resolve()}"
            )
        else:
            print(f"(no quickstart notebook at {nb}; skipped)")
    print("\nOpen JupyterLab on the notebooks with: make lab")
    return 0 if run.status in ("completed", "cancelled") else 1
