"""One run as text for `llm-energy profile` and `llm-energy show`.

Every figure is printed under its `core.schema` name (SUMMARY_LABELS) with its unit, and the
names that could be read two ways are defined under the summary (SUMMARY_DEFINITIONS). The power
line says the kind with its scope ("estimated · process") and the real resolution; the warnings
of the summary are printed with it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS
from ..core.schema import SUMMARY_DEFINITIONS, SUMMARY_LABELS
from ..run import Run
from ..view.static import basis_groups, range_note, sampling_lines
from ..view.text import fmt_sig, format_cost, kind_text, window_note

__all__ = ["fmt", "power_line", "print_run", "summary_rows"]

RAIL_NAMES = {"cpu_w": "CPU", "gpu_w": "GPU", "ane_w": "ANE", "dram_w": "DRAM"}
DEFINED = (
    "decode_j_per_token", "prefill_j_per_prompt_token", "decode_tokens_per_s", "tokens_per_s",
    "avg_power_w", "peak_power_w", "layer_coverage", "tail_energy_j", "decode_energy_j",
)  # fmt: skip
"""The names defined under the summary: the ones a reader could take two ways."""


def fmt(v: Any, unit: str = "", digits: int = 4) -> str:
    """`0.75 J`; `n/a` for a figure that cannot be known."""
    return fmt_sig(v, unit, digits, missing="n/a")


def power_line(run: Run) -> str:
    """'power: estimate [estimated · process], resolution 100 ms — …' (the real resolution)."""
    p = run.power_info
    res = run.resolution_ms
    parts = [f"resolution {fmt(res, ' ms')}"]
    interval = p.get("interval_ms")
    if isinstance(interval, (int, float)) and res is not None and interval != res:
        parts.append(f"polled every {interval:g} ms")
    win = window_note(p.get("power_window_ms"))
    if win:
        parts.append(f"power readings are {win}s")
    about = f" — {p['description']}" if p.get("description") else ""
    kind = kind_text(p.get("kind"), p.get("scope"))
    return f"power: {p.get('source')} [{kind}], {', '.join(parts)}{about}"


def _peak(s: dict[str, Any], window_ms: Any) -> str:
    peak = s.get("peak_power_w") or {}
    total = peak.get("total_w")
    if total is None:
        return "n/a"
    rails = [f"{name} {fmt(peak[col], ' W')}" for col, name in RAIL_NAMES.items()
             if peak.get(col) is not None]  # fmt: skip
    text = f"{fmt(total, ' W')} total" + (f" ({', '.join(rails)})" if rails else "")
    win = window_note(window_ms)
    if win:
        text += f", from {win} readings (shorter peaks are smoothed)"
    return text


def _j(v: Any) -> str:
    return fmt(v, " J")


_RANGE_FMT = {
    "decode_tokens_per_j": fmt,
    "avg_power_w": lambda v: fmt(v, " W"),
    "edp_js": lambda v: fmt(v, " J·s"),
    "cost_usd": lambda v: format_cost(v, "n/a"),
    "co2_g": lambda v: fmt(v, " g"),
}
"""How the estimate range of a figure reads (energies: `_j`)."""


def summary_rows(run: Run, price_note: str | None = None) -> list[tuple[str, str]]:
    """(name, value) lines of the summary, headline first; optional rows left out when empty."""
    s = run.summary()
    kind = kind_text(s.get("energy_kind"), s.get("energy_scope"))
    rows: list[tuple[str, str]] = []

    def row(key: str, value: str, optional: bool = False) -> None:
        if optional and value == "n/a":
            return
        if not value.startswith("n/a"):
            value += range_note(s, key, _RANGE_FMT.get(key, _j))
        rows.append((SUMMARY_LABELS.get(key, key), value))

    po = s.get("profiling_overhead") or {}
    n_bare = po.get("bare_tokens") or 0
    jpt_on = (
        f", from {n_bare} bare decode token{'' if n_bare == 1 else 's'} of {s.get('decode_tokens')}"
        if n_bare and po.get("instrumented_tokens")
        else ""
    )
    row("decode_j_per_token", f"{fmt(s.get('decode_j_per_token'), ' J')} ({kind}{jpt_on})")
    row("prefill_j_per_prompt_token", f"{fmt(s.get('prefill_j_per_prompt_token'), ' J')} ({kind})")
    row("decode_tokens_per_j", fmt(s.get("decode_tokens_per_j")))
    row("decode_tokens_per_s", fmt(s.get("decode_tokens_per_s")))
    row("tokens_per_s", fmt(s.get("tokens_per_s")))
    row("ttft_ms", fmt(s.get("ttft_ms"), " ms"))
    row("prefill_energy_j", fmt(s.get("prefill_energy_j"), " J"))
    row("decode_energy_j", fmt(s.get("decode_energy_j"), " J"))
    tail = fmt(s.get("tail_energy_j"), " J")
    if tail != "n/a" and s.get("tail_ms") is not None:
        tail += f" over {fmt(s['tail_ms'], ' ms')}"
    row("tail_energy_j", tail, optional=True)
    row("total_energy_j", f"{fmt(s.get('total_energy_j'), ' J')} ({kind})")
    net = fmt(s.get("net_energy_j"), " J")
    if s.get("net_energy_reliable") is False:
        net += "  UNRELIABLE (see warning)"
    row("net_energy_j", net)
    row("baseline_w", fmt(s.get("baseline_w"), " W"))
    row("avg_power_w", fmt(s.get("avg_power_w"), " W"))
    row("peak_power_w", _peak(s, s.get("power_window_ms")))
    cov = s.get("layer_coverage")
    row("layer_coverage", "n/a" if cov is None else f"{100 * cov:.1f} %", optional=True)
    row("outside_layers_energy_j", fmt(s.get("outside_layers_energy_j"), " J") + " (modeled)"
        if s.get("outside_layers_energy_j") is not None else "n/a", optional=True)  # fmt: skip
    row("edp_js", fmt(s.get("edp_js"), " J·s"))
    price = s.get("price_per_kwh")
    carbon = s.get("carbon_g_per_kwh")
    cost = f"{format_cost(s.get('cost_usd'), 'n/a')} (modeled, at {fmt(price)} USD/kWh)"
    co2 = f"{fmt(s.get('co2_g'), ' g')} (modeled, at {fmt(carbon)} g/kWh)"
    if price_note:
        cost += f" — {price_note}"
        co2 += f" — {price_note}"
    row("cost_usd", cost)
    row("co2_g", co2)
    return rows


def print_run(
    run: Run, out: Any = sys.stdout, quiet: bool = False, price_note: str | None = None
) -> None:
    """The run's header, tokens, phases and layers (unless quiet), then its summary."""
    w = out.write
    w(f"run {run.run_id}  status {run.status} ({run.end_reason})\n")
    w(power_line(run) + "\n")
    if run.error_message:
        w(f"error: {run.error_message}\n")
    for msg in run.warnings:
        w(f"warning: {msg}\n")
    if not quiet:
        _print_tokens(run, w)
        w("\nphases:\n")
        for ph in run.phases():
            w(
                f"  {ph['name']:<11} {fmt(ph['duration_ms'], ' ms'):>10}  "
                f"{fmt(ph['energy_j'], ' J', 3):>10}  {fmt(ph['avg_power_w'], ' W', 3):>8}\n"
            )
        _print_layers(run, w)
    s = run.summary()
    if run.n_sequences > 1:
        _print_sequences(s, w)
    else:
        w(f"\nresponse: {run.response!r}\n")
    kind = kind_text(s.get("energy_kind"), s.get("energy_scope"))
    layers = f"; layer shares and '{OUTSIDE_LAYERS}' modeled" if run.layers.size else ""
    w(f"summary ({kind} energy{layers}):\n")
    rows = summary_rows(run, price_note)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        w(f"  {name:<{width}}  {value}\n")
    for line in sampling_lines(run):
        w(f"  {line}\n")
    groups = basis_groups(run, [name for name, _ in rows])
    if groups:
        w("figures rest on:\n")
        for on, names in groups:
            w(f"  {', '.join(names)}: {on}\n")
    from ..view.predicted import predicted_of, predicted_text

    for line in predicted_text(predicted_of(run)):  # the store's earlier runs, when enough
        w(f"{line}\n")
    shown = {name for name, _ in rows}
    w("where:\n")
    for key in DEFINED:
        name = SUMMARY_LABELS.get(key, key)
        if key in SUMMARY_DEFINITIONS and name in shown:
            w(f"  {name}: {SUMMARY_DEFINITIONS[key]}\n")
    for msg in s.get("warnings") or []:
        if msg not in run.warnings:
            w(f"warning: {msg}\n")


def _print_sequences(s: dict[str, Any], w: Any) -> None:
    """A batch: each sequence's text, tokens and energy (its shares of the steps, modeled)."""
    seqs = s.get("sequences") or []
    w(
        f"\nbatch of {len(seqs)} sequences (each step's energy split equally among the "
        "sequences that chose a token in it: modeled; the prefill split equally):\n"
    )
    for q in seqs:
        w(
            f"  sequence {q['sequence']}: {q['tokens']} tokens, {fmt(q['energy_j'], ' J', 3)}"
            f"  {q['text']!r}\n"
        )


def _print_tokens(run: Run, w: Any) -> None:
    tokens = run.tokens()
    layered = any(t.get("layer_coverage") is not None for t in tokens)
    sampled = any(t.get("instrumented") is False for t in tokens)
    batched = run.n_sequences > 1
    cov_h = f" {'layers':>7}" if layered else ""
    seq_h = f" {'seq':>3}" if batched else ""
    w(f"\n{'#':>3}{seq_h}  {'token':<18} {'phase':<8} {'ms':>8} {'J':>10} {'W':>7}{cov_h}\n")
    for t in tokens:
        text = json.dumps(t["text"], ensure_ascii=False)[1:-1][:18]
        mark = "*" if t.get("below_resolution") else " "
        inst = "+" if sampled and t.get("instrumented") else " "
        ms = "n/a" if t["duration_ms"] is None else f"{t['duration_ms']:.1f}"
        cov = t.get("layer_coverage")
        cov_s = (f" {'n/a' if cov is None else f'{100 * cov:.0f} %':>7}") if layered else ""
        seq = f" {t.get('sequence', 0):>3}" if batched else ""
        w(
            f"{t['index']:>3}{seq}{inst} {text:<18} {t['phase']:<8} {ms:>8} "
            f"{fmt(t['energy_j'], '', 3):>9}{mark} {fmt(t['avg_power_w'], '', 3):>7}{cov_s}\n"
        )
    if any(t.get("below_resolution") for t in tokens):
        w(
            f"  * shorter than the power source's resolution ({fmt(run.resolution_ms, ' ms')}): "
            "energy interpolated between readings\n"
        )
    if batched:
        w("  J: the token's equal share of its step's energy (modeled); W: the step's power\n")
    if layered:
        w("  layers: time inside the hooked decoder layers / token time\n")
    if sampled:
        w("  + instrumented (the layer hooks ran); the others ran bare, at plain speed\n")


def _print_layers(run: Run, w: Any) -> None:
    arr = run.layers
    if arr.size == 0:
        return
    ei = run.metric_names.index("energy_j")
    ti = run.metric_names.index("time_ms")
    energy = np.nansum(arr[:, :, :, ei], axis=0)
    time_ms = np.nansum(arr[:, :, :, ti], axis=0)
    nl, nc = energy.shape
    tokens = run.tokens()
    cov = run.summary().get("layer_coverage")
    cov_s = f"; {SUMMARY_LABELS['layer_coverage']} {100 * cov:.1f} %" if cov is not None else ""
    n_inst = sum(1 for t in tokens if t.get("instrumented") is not False)
    over = f", over {n_inst} instrumented tokens of {len(tokens)}" if n_inst < len(tokens) else ""
    w(
        f"\nlayer x component: {nl} layers x {nc} components "
        f"({', '.join(run.component_names)}){cov_s}{over}\n"
    )
    per_comp = energy.sum(axis=0)
    per_comp_t = time_ms.sum(axis=0)
    outside_j = sum(e for t in tokens if (e := t.get("outside_layers_j")) is not None)
    outside_ms = sum(
        max((t.get("duration_ms") or 0.0) - h, 0.0)
        for t in tokens
        if (h := t.get("layers_ms")) is not None and t.get("outside_layers_j") is not None
    )
    total = float(per_comp.sum()) + outside_j or 1.0
    w("  component                 time ms   energy J (modeled)   share of token energy\n")
    for j in np.argsort(-per_comp):
        w(
            f"  {run.component_names[j]:<24} {per_comp_t[j]:>8.1f}   {per_comp[j]:>12.4f}"
            f"        {100 * per_comp[j] / total:>5.1f} %\n"
        )
    w(
        f"  {OUTSIDE_LAYERS:<24} {outside_ms:>8.1f}   {outside_j:>12.4f}"
        f"        {100 * outside_j / total:>5.1f} %\n"
    )
