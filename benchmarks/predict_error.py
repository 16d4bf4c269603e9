"""How well does `predict` learn from a short history? Held-out error of the fit, default model.

Run: `.venv/bin/python benchmarks/predict_error.py [--power estimate] [--level token]`.
Builds a temporary store with the default model (SmolLM2-135M) profiled at 10 settings of
prompt length x generation length (8 by default would do; 10 leaves two out as unseen), power
source `estimate`, and fits `predict` on the first 8: it prints each run's measured figures,
the leave-one-out (held-out) error of each fitted figure, then predicts the 2 settings it was not
given and measures them. Target: held-out error of decode J/token <= 15 % (mean |error|).

The estimate source is CPU time x watts per core: the error is the fit's against that estimate,
not against a meter; other programs on the machine show in every figure (the load average is
printed), so measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TRAIN = [(16, 8), (64, 8), (32, 12), (96, 10), (48, 16), (24, 20), (128, 8), (80, 14)]
UNSEEN = [(40, 12), (112, 10)]
TARGET = 0.15
PROMPT = "Why is the sky blue? Explain it to a child, in a few short sentences."


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--power", default="estimate")
    ap.add_argument("--level", default="token")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
    import torch

    import llm_energy_widget as lew
    from llm_energy_widget.analysis.predict import fit_points, points_from_runs
    from llm_energy_widget.store import Store

    t0 = time.perf_counter()
    model, tok = lew.load_default_model()
    store = Store(Path(tempfile.mkdtemp()) / "runs.sqlite")
    prof = lew.EnergyProfiler(
        model, tok, power=args.power, level=args.level, store=store, baseline_s=0.2
    )
    ids = tok(PROMPT)["input_ids"]

    def measure(p: int, n: int) -> lew.Run:
        prompt = torch.tensor([(ids * (p // len(ids) + 1))[:p]])
        run = prof.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        run.wait()
        store.flush()
        return run

    print(f"load average {os.getloadavg()[0]:.2f}; power {args.power}, level {args.level}")
    print(f"{'prompt':>6} {'new':>4} {'prefill J':>10} {'decode J/tok':>12} {'TTFT ms':>9} "
          f"{'ms/tok':>8}")  # fmt: skip
    train = []
    for p, n in TRAIN:
        run = measure(p, n)
        s = run.summary()
        tps = s["decode_tokens_per_s"]
        print(
            f"{p:>6} {n:>4} {_g(s['prefill_energy_j']):>10} {_g(s['decode_j_per_token']):>12} "
            f"{_g(s['ttft_ms']):>9} {_g(1000 / tps if tps else None):>8}"
        )
        train.append(run)
    pred = lew.predict((model, tok), prompt_tokens=UNSEEN[0][0], new_tokens=UNSEEN[0][1],
                       store=store)  # fmt: skip
    print()
    print(pred.to_text())
    print()
    fit = fit_points(points_from_runs(train), "decode_j_per_token")  # the fit predict() makes
    err = fit.loo_mape if fit is not None else None
    train_ids = {r.run_id for r in train}
    for p, n in UNSEEN:
        run = measure(p, n)
        # predicted from the training runs only (this run and the other unseen one left out)
        others = [r for r in store.ids() if r not in train_ids]
        pr = lew.predict((model, tok), prompt_tokens=p, new_tokens=n, store=store,
                         exclude=others)  # fmt: skip
        s = run.summary()
        for key, label in (("decode_j_per_token", "decode J/token"),
                           ("prefill_energy_j", "prefill energy")):  # fmt: skip
            v = pr.figures[key]
            m = s[key]
            if v is None or m is None:
                continue
            inside = "inside" if v[1] <= m <= v[2] else "OUTSIDE"
            print(
                f"unseen prompt {p}, new {n}: {label} predicted {v[0]:.4g} "
                f"[{v[1]:.4g}-{v[2]:.4g}], measured {m:.4g}: error "
                f"{100 * (v[0] - m) / m:+.1f} % ({inside} the interval)"
            )
    print()
    if err is None:
        print("decode J/token could not be fitted")
        return 1
    verdict = "met" if err <= TARGET else "NOT met"
    print(
        f"held-out (leave-one-out) error of decode J/token over {len(TRAIN)} runs: "
        f"{100 * err:.1f} % mean |error| (target <= {100 * TARGET:.0f} %: {verdict}); "
        f"{time.perf_counter() - t0:.0f} s in all, load average {os.getloadavg()[0]:.2f}"
    )
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
