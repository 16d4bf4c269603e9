"""Is the first run of a process representative? TTFT and prefill energy, warm-up off and on.

Run: `.venv/bin/python benchmarks/first_run.py [--runs 3] [--rounds 5] [--device cpu|cuda]`.
Each configuration runs in a fresh Python process (one-time work is per process and per
thread, so only a fresh process shows it): load the default model, then profile the same prompt
`--runs` times in a row with `EnergyProfiler(warmup=False)` or `warmup=True` (the default), the
way a notebook user would. The two processes run one after the other, never at once, in an
order that alternates from round to round; the table shows medians over the rounds, side by
side. Energy is the estimate source (CPU time x watts per core) on CPU, `auto` on CUDA: compare
the runs with each other, not with a meter. Other programs on the machine show in every
figure (the load average is printed per round): measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "Why is the sky blue?"
FIGURES = ("ttft_ms", "prefill_energy_j", "decode_tokens_per_s")


def child(warmup: bool, runs: int, tokens: int, device: str, power: str) -> None:
    """One fresh process: print one JSON line per run."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))  # this checkout's package, not an installed one
    import llm_energy_widget as lew

    model, tok = lew.load_default_model()
    if device != "cpu":
        model.to(device)
    prof = lew.EnergyProfiler(model, tok, power=power, store=False, warmup=warmup)
    for i in range(runs):
        run = prof.generate(PROMPT, max_new_tokens=tokens, do_sample=False)
        run.wait()
        s = run.summary()
        row = {k: s.get(k) for k in FIGURES}
        row.update(run=i + 1, status=run.status, warmup=run.settings.get("warmup"))
        row["energy_kind"] = run.power_info.get("kind")
        print(json.dumps(row), flush=True)


def one(warmup: bool, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--child", "on" if warmup else "off"]
    cmd += ["--runs", str(args.runs), "--tokens", str(args.tokens)]
    cmd += ["--device", args.device, "--power", args.power]
    env = {**os.environ, "LLM_ENERGY_NO_STORE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _med(values: list[Any]) -> float:
    nums = [float(v) for v in values if v is not None]
    return statistics.median(nums) if nums else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of the same prompt per process")
    ap.add_argument("--rounds", type=int, default=5, help="fresh-process pairs (medians)")
    ap.add_argument("--tokens", type=int, default=16, help="max_new_tokens per run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--power", default=None, help="default: estimate on CPU, auto otherwise")
    ap.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.power is None:
        args.power = "estimate" if args.device == "cpu" else "auto"
    if args.child:
        child(args.child == "on", args.runs, args.tokens, args.device, args.power)
        return
    results: dict[bool, list[list[dict[str, Any]]]] = {False: [], True: []}
    t0 = time.perf_counter()
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for warm in order:
            rows = one(warm, args)
            results[warm].append(rows)
            line = ", ".join(f"{row['ttft_ms']:.0f}" for row in rows)
            load = os.getloadavg()[0]
            print(
                f"round {r + 1} warmup={'on ' if warm else 'off'}: TTFT ms {line}"
                f"  (load average {load:.2f} on {os.cpu_count()} cores)",
                flush=True,
            )
    kind = results[True][0][0]["energy_kind"]
    print(
        f"\n{PROMPT!r}, {args.tokens} new tokens, {args.device}, power {args.power} ({kind}); "
        f"medians of {args.rounds} fresh processes per column ({time.perf_counter() - t0:.0f} s)"
    )
    head = (
        f"{'run':>3}  {'TTFT off':>9} {'TTFT on':>9}   {'prefill J off':>13} {'prefill J on':>12}"
        f"   {'decode tok/s off':>16} {'on':>6}"
    )
    print(head)
    for i in range(args.runs):

        def med(warm: bool, key: str, i: int = i) -> float:
            return _med([rows[i][key] for rows in results[warm] if len(rows) > i])

        ttft = (med(False, "ttft_ms"), med(True, "ttft_ms"))
        energy = (med(False, "prefill_energy_j"), med(True, "prefill_energy_j"))
        rate = (med(False, "decode_tokens_per_s"), med(True, "decode_tokens_per_s"))
        print(
            f"{i + 1:>3}  {ttft[0]:>6.0f} ms {ttft[1]:>6.0f} ms   {energy[0]:>11.2f} J "
            f"{energy[1]:>10.2f} J   {rate[0]:>16.1f} {rate[1]:>6.1f}"
        )
    warm_ms = [rows[0]["warmup"].get("duration_ms") for rows in results[True]]
    warm_tokens = results[True][0][0]["warmup"].get("tokens")
    print(
        f"warm-up (on): {warm_tokens} tokens, {_med(warm_ms):.0f} ms median, before run 1 only, "
        "not counted in its figures"
    )
    for warm in (False, True):
        first = _med([rows[0]["ttft_ms"] for rows in results[warm]])
        rest = _med([row["ttft_ms"] for rows in results[warm] for row in rows[1:]])
        name = "on " if warm else "off"
        print(f"warmup={name}: run 1 TTFT / later runs' median = {first / rest:.2f}")


if __name__ == "__main__":
    main()
