"""Which architectures the layer profiler sees into, and how much of their layer time it names.

Run: `.venv/bin/python benchmarks/arch_matrix.py [--tokens 8] [ARCH ...]`.
For every tiny random config in `tests/support/archs.py` (2 layers, hidden 64, no download):
greedy-generate `--tokens` tokens under `LayerProfiler(level="component")` and print one row:
how the components were discovered (a registry entry or the generic discovery), how many per
layer, the share of the layer time in "other" (`core.breakdown.other_share`: over all tokens, and
for a typical token: per layer, the token of median layer time; over 30 % of the latter the
run's summary warns), whether profiling left the generated ids unchanged, and the MoE routing seen
(experts per token and the routing entropy's range, in nats). Times are CPU wall times of tiny
models: the shares say what the discovery covers, not what a real model spends where.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's package and test support


def row(arch: str, tokens: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from support.archs import BoundaryStreamer, build, config_of, generate, prompt_ids

    from llm_energy_widget.core.breakdown import other_share
    from llm_energy_widget.profiling.layer_profiler import LayerProfiler

    model = build(arch)
    ids = prompt_ids()
    reference = generate(model, ids, tokens)
    prof = LayerProfiler(model, "component")
    rows: list[Any] = []
    streamer = BoundaryStreamer(lambda: rows.append(prof.collect()))
    with prof:
        out = generate(model, ids, tokens, streamer=streamer)
    d = prof.disc
    values = np.stack([v for v, _ in rows])
    share = other_share(values, prof.component_names)
    per_layer = sorted({len(c) for c in d.components})
    moe = "-"
    routed = [li for li, r in enumerate(d.routers) if r is not None]
    if routed:
        ent = np.array([ex["moe_routing_entropy"][routed] for _, ex in rows], dtype=float)
        k = rows[0][1]["moe_experts"].shape[1]
        n = prof.summary.get("moe", {}).get("n_experts")
        moe = (
            f"top-{k} of {n}, {len(routed)}/{d.n_layers} layers, "
            f"H {np.nanmin(ent):.2f}-{np.nanmax(ent):.2f} (max {math.log(n or 1):.2f})"
        )
    return {
        "arch": arch,
        "model_type": config_of(model).model_type,
        "how": d.how.split(":")[0],
        "components": "/".join(str(n) for n in per_layer),
        "gaps": ",".join(g[0] for g in d.gaps) or "-",
        "other": share,
        "other_typical": other_share(values, prof.component_names, typical=True),
        "same": bool(torch.equal(out, reference)),
        "moe": moe,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("archs", nargs="*")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    from support.archs import MATRIX_ARCHS

    archs = args.archs or MATRIX_ARCHS
    head = (
        "architecture",
        "discovered",
        "components",
        "gaps",
        "other (all)",
        "other (median token)",
        "ids same",
        "MoE routing",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for arch in archs:
        try:
            r = row(arch, args.tokens)
        except Exception as exc:  # one architecture failing must not hide the others
            print(f"| {arch} | failed: {type(exc).__name__}: {exc} | | | | | | |")
            continue
        other, typical = (
            f"{r[k] * 100:.1f} %" if r[k] is not None else "-" for k in ("other", "other_typical")
        )
        print(
            f"| {arch} | {r['how']} | {r['components']} | {r['gaps']} | {other} | {typical} | "
            f"{'yes' if r['same'] else 'NO'} | {r['moe']} |"
        )


if __name__ == "__main__":
    main()
