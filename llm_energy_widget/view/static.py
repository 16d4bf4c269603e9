"""A static rendering of a run (SVG + text) for renderers without widgets: GitHub, nbviewer.

Everything from the run that is text (token text, prompt, names, errors) is escaped: token text is
untrusted model output.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.attribution import OUTSIDE_LAYERS
from ..core.schema import METRIC_LABELS, METRIC_UNITS, SUMMARY_LABELS
from ..power.record import RAILS
from .palette import CATEGORICAL, NEUTRAL, PHASE_COLORS, RAIL_COLORS, sequential_hex
from .predicted import predicted_html, predicted_of, predicted_text
from .text import esc as _esc
from .text import fmt_energy, format_cost, kind_text, response_texts
from .text import fmt_num as _num
from .text import fmt_pct as _pct
from .text import window_adjective as _window

if TYPE_CHECKING:
    from ..run import Run

__all__ = [
    "SUMMARY_HEADERS",
    "basis_groups",
    "below_resolution_line",
    "instrumented_line",
    "mean_rows",
    "overhead_line",
    "phase_rows",
    "range_note",
    "render_html",
    "render_svg",
    "render_text",
    "sampling_lines",
    "source_line",
    "summary_rows",
    "summary_table_rows",
    "summary_warnings",
    "token_note",
]


def range_note(s: Mapping[str, Any], key: str, fmt: Any) -> str:
    """' (0.6–1.8 J, estimate ±50 %)' for a figure of an estimate (`energy_ranges_j`), else ''."""
    ranges = s.get("energy_ranges_j")
    r = ranges.get(key) if isinstance(ranges, dict) else None
    if not isinstance(r, (list, tuple)) or len(r) != 2 or not callable(fmt):
        return ""
    u = _uncertainty(s)
    pm = f", estimate ±{u * 100:.3g} %" if u is not None else ", estimate"
    return f" ({fmt(r[0])}–{fmt(r[1])}{pm})"


def _uncertainty(s: Mapping[str, Any]) -> float | None:
    """The estimate's relative uncertainty, read back from the total energy's range."""
    ranges = s.get("energy_ranges_j")
    r = ranges.get("total_energy_j") if isinstance(ranges, dict) else None
    v = s.get("total_energy_j")
    if not isinstance(r, (list, tuple)) or len(r) != 2 or not isinstance(v, (int, float)) or v <= 0:
        return None
    return float(r[1]) / float(v) - 1.0


def summary_rows(run: Run) -> list[tuple[str, str, str]]:
    """(figure, value, kind) for the headline figures, shared by the text, HTML and report.

    Names are `core.schema.SUMMARY_LABELS`, headline first; energy and power kinds carry the
    source's scope; the peak says its rail and averaging window; an unreliable net energy says so.
    """
    s = run.summary()
    labels = run.labels()
    scope = s.get("energy_scope") or run.power_info.get("scope")
    ek = kind_text(s.get("energy_kind") or labels["energy"], scope)
    pk = kind_text(labels["power"], scope)
    phk = kind_text(labels["phases"], scope)
    timing = labels["timing"]
    rows: list[tuple[str, str, str]] = []

    fmts = {
        "decode_tokens_per_j": _num,
        "avg_power_w": lambda v: _num(v, "W"),
        "edp_js": lambda v: _num(v, "J·s"),
        "cost_usd": format_cost,
        "co2_g": lambda v: _num(v, "g"),
    }

    def add(key: str, value: str, kind: str) -> None:
        if value != "–":
            value += range_note(s, key, fmts.get(key, fmt_energy))
        rows.append((SUMMARY_LABELS[key], value, kind))

    add("decode_j_per_token", fmt_energy(s.get("decode_j_per_token")), ek)
    add("decode_tokens_per_j", _num(s.get("decode_tokens_per_j")), ek)
    add("prefill_j_per_prompt_token", fmt_energy(s.get("prefill_j_per_prompt_token")), ek)
    add("prefill_energy_j", fmt_energy(s.get("prefill_energy_j")), phk)
    add("decode_energy_j", fmt_energy(s.get("decode_energy_j")), phk)
    if s.get("tail_energy_j") is not None:
        add("tail_energy_j", fmt_energy(s.get("tail_energy_j")), phk)
    add("total_energy_j", fmt_energy(s.get("total_energy_j")), ek)
    if s.get("net_energy_j") is not None:
        net = fmt_energy(s.get("net_energy_j"))
        add(
            "net_energy_j",
            f"{net} (unreliable)" if s.get("net_energy_reliable") is False else net,
            ek,
        )
    peak = (s.get("peak_power_w") or {}).get("total_w")
    window = s.get("power_window_ms")
    rail = "total" + (f", {_window(window)} average" if window else "")
    add("peak_power_w", f"{_num(peak, 'W')} ({rail})" if peak is not None else "–", pk)
    add("avg_power_w", _num(s.get("avg_power_w"), "W"), pk)
    add("decode_tokens_per_s", _num(s.get("decode_tokens_per_s")), timing)
    add("tokens_per_s", _num(s.get("tokens_per_s")), timing)
    add("ttft_ms", _num(s.get("ttft_ms"), "ms"), timing)
    add("edp_js", _num(s.get("edp_js"), "J·s"), ek)
    add("cost_usd", format_cost(s.get("cost_usd")), labels["cost"])
    add("co2_g", _num(s.get("co2_g"), "g"), labels["co2"])
    if s.get("layer_coverage") is not None:
        add("layer_coverage", _pct(s.get("layer_coverage")), timing)
    if s.get("outside_layers_energy_j") is not None:
        add(
            "outside_layers_energy_j",
            fmt_energy(s["outside_layers_energy_j"]),
            labels["layers.outside"],
        )
    return rows


_KEY_OF_LABEL = {v: k for k, v in SUMMARY_LABELS.items()}


def summary_table_rows(run: Run) -> list[list[str]]:
    """`summary_rows` with a fourth column: the tokens each figure rests on (`figure_basis`)."""
    basis = run.summary().get("figure_basis") or {}
    return [
        [name, value, kind, str(basis.get(_KEY_OF_LABEL.get(name, ""), ""))]
        for name, value, kind in summary_rows(run)
    ]


def basis_groups(run: Run, labels: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(what they rest on, [figure names]) in the order first seen: every summary figure shown
    (`labels`, default the static rows) says which tokens it rests on (`figure_basis`)."""
    basis = run.summary().get("figure_basis") or {}
    names = labels if labels is not None else [r[0] for r in summary_rows(run)]
    groups: dict[str, list[str]] = {}
    for name in names:
        on = basis.get(_KEY_OF_LABEL.get(name, ""))
        if on:
            groups.setdefault(str(on), []).append(name)
    return list(groups.items())


def instrumented_line(run: Run, limit: int = 24) -> str | None:
    """'instrumented tokens: 0, 7, 15, 22 (4 of 24)'; None for a token-level run (nothing to
    instrument) or a run with no tokens yet."""
    if run.level == "token":
        return None
    toks = run.tokens()
    if not toks:
        return None
    inst = [t["index"] for t in toks if t.get("instrumented") is not False]
    if len(inst) == len(toks):
        return f"instrumented tokens: all {len(toks)}"
    shown = ", ".join(str(i) for i in inst[:limit]) + (", …" if len(inst) > limit else "")
    return f"instrumented tokens: {shown or 'none'} ({len(inst)} of {len(toks)})"


def overhead_line(run: Run) -> str | None:
    """'profiling overhead +4.1 % on 5 instrumented decode tokens, 19 bare (...)': the slowdown
    of instrumented decode tokens against bare ones in this run (`profiling_overhead`)."""
    if run.level == "token":
        return None
    po = run.summary().get("profiling_overhead")
    if not isinstance(po, dict):
        return None
    n_i, n_b = po.get("instrumented_tokens", 0), po.get("bare_tokens", 0)
    on = f"on {n_i} instrumented decode token{'' if n_i == 1 else 's'}, {n_b} bare"
    f = po.get("fraction")
    if not isinstance(f, (int, float)) or not math.isfinite(f):
        why = po.get("why_none")
        return f"profiling overhead: not measured ({why or 'no comparison'}; {on})"
    added = po.get("added_fraction")
    extra = (
        f"; added {_pct(added)} to the decode time"
        if isinstance(added, (int, float)) and math.isfinite(added)
        else ""
    )
    return f"profiling overhead {f * 100:+.1f} % {on} ({po.get('basis', '')}{extra})"


def sampling_lines(run: Run) -> list[str]:
    """Which tokens ran instrumented and the profiler's measured overhead, where they apply."""
    return [x for x in (instrumented_line(run), overhead_line(run)) if x]


def token_note(t: dict[str, object], sampled: bool) -> str:
    """A token table's note: below the resolution; with sampled instrumentation (`sampled`: the
    run has bare tokens) whether the layer hooks ran."""
    notes = []
    if sampled and t.get("instrumented") is True:
        notes.append("instrumented: layer hooks ran")
    elif t.get("instrumented") is False:
        notes.append("bare: ran at plain speed, no layer row")
    if t.get("below_resolution"):
        notes.append("< resolution, interpolated")
    return "; ".join(notes)


def summary_warnings(run: Run) -> list[str]:
    """The summary's warnings (unreliable net energy, tokens below the resolution...)."""
    return [str(w) for w in run.summary().get("warnings") or []]


def below_resolution_line(run: Run, limit: int = 20) -> str | None:
    """Which tokens are shorter than the power source's resolution (None when none are)."""
    toks = run.tokens()
    below = [t["index"] for t in toks if t.get("below_resolution")]
    if not below:
        return None
    res = run.resolution_ms
    shown = ", ".join(f"#{i}" for i in below[:limit]) + (", …" if len(below) > limit else "")
    return f"tokens < resolution ({res:g} ms), interpolated: {len(below)} of {len(toks)} ({shown})"


def source_line(run: Run) -> str:
    """The power source, its kind and scope, the energy figures' real resolution (the source's
    native one, not the poll interval), the poll interval where it differs, and the power
    averaging window where readings are averages."""
    p = run.power_info
    parts = [kind_text(p.get("kind", "estimated"), p.get("scope"))]
    res = run.resolution_ms
    if res is not None:
        parts.append(f"resolution {res:g} ms")
    interval = p.get("interval_ms")
    if isinstance(interval, (int, float)) and res is not None and interval != res:
        parts.append(f"polled every {interval:g} ms")
    window = p.get("power_window_ms")
    if isinstance(window, (int, float)) and window > 0:
        parts.append(f"power: {_window(window)} average")
    return f"power source: {p.get('source', '–')} ({', '.join(parts)})"


def render_text(run: Run) -> str:
    """Plain-text summary (the `text/plain` of the display bundle)."""
    lines = [
        f"Run {run.run_id} · {run.status}"
        + (f" ({run.end_reason})" if run.end_reason else "")
        + f" · model {run.model.get('name', '–')}",
        source_line(run),
        f"tokens: {run.prompt_tokens} in, {run.n_tokens} out",
    ]
    if run.n_tokens or run.done:
        rows = summary_rows(run)
        lines += [f"{label}: {value} ({kind})" for label, value, kind in rows]
        lines += sampling_lines(run)
        groups = basis_groups(run, [r[0] for r in rows])
        if groups:
            lines.append("figures rest on:")
            lines += [f"  {', '.join(names)}: {on}" for on, names in groups]
        below = below_resolution_line(run)
        if below:
            lines.append(below)
        lines += [f"warning: {w}" for w in summary_warnings(run)]
        lines += predicted_text(predicted_of(run))
    if run.error_message:
        lines.append(f"error: {run.error_message}")
    for label, text in response_texts(run):
        lines.append(f"{label}: {text if len(text) <= 300 else text[:300] + '…'}")
    return "\n".join(lines)


def _power_svg(run: Run, x: float, y: float, w: float, h: float) -> list[str]:
    pw = run.power_arrays()
    t = pw["t_ms"] / 1000.0
    out = [f'<g transform="translate({x:.0f},{y:.0f})">']
    out.append('<text x="0" y="-18" class="t">Power (W)</text>')
    out.append(f'<text x="0" y="-5" class="m">{_esc(source_line(run))}</text>')
    if t.size < 2:
        out.append(f'<text x="10" y="{h / 2:.0f}" class="m">no power samples</text></g>')
        return out
    phases = run.phases()
    t0 = min(float(t[0]), *(p["start_ms"] / 1000 for p in phases)) if phases else float(t[0])
    t1 = max(float(t[-1]), t0 + 1e-3)
    total = pw["total_w"]
    ymax = float(np.nanmax(total)) * 1.1 if np.isfinite(total).any() else 1.0
    ymax = ymax if ymax > 0 else 1.0

    def px(ts: float) -> float:
        return (ts - t0) / (t1 - t0) * w

    def py(v: float) -> float:
        return h - v / ymax * h

    out.append(f'<rect x="0" y="0" width="{w:.0f}" height="{h:.0f}" class="frame"/>')
    for p in phases:
        a = px(p["start_ms"] / 1000)
        b = px((p["end_ms"] if p["end_ms"] is not None else t[-1] * 1000) / 1000)
        color = PHASE_COLORS.get(p["name"], NEUTRAL)
        out.append(
            f'<rect x="{a:.1f}" y="0" width="{max(1.0, b - a):.1f}" height="{h:.0f}" '
            f'fill="{color}" fill-opacity="0.15"><title>{_esc(p["name"])}</title></rect>'
        )
        if b - a > 40:
            out.append(f'<text x="{a + 3:.1f}" y="12" class="m">{_esc(p["name"])}</text>')
    for rail in (*RAILS, "total"):
        col = pw[f"{rail}_w"]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(t[ok], col[ok], strict=True))
        width = 2 if rail == "total" else 1.2
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{RAIL_COLORS[rail]}" '
            f'stroke-width="{width}"><title>{rail}</title></polyline>'
        )
    device = {k[:-2]: v for k, v in run.rail_arrays().items() if k.endswith("_w")}
    for k, (rail, col) in enumerate(device.items()):  # one thin dashed line per GPU
        ok = np.isfinite(col)
        if len(device) < 2 or not ok.any():
            continue  # a single GPU's line is the gpu rail itself
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(t[ok], col[ok], strict=True))
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{CATEGORICAL[k % len(CATEGORICAL)]}" '
            f'stroke-width="1" stroke-dasharray="4 2" class="device-rail"><title>{rail}</title>'
            "</polyline>"
        )
    for v in (0.0, ymax / 2, ymax / 1.1):
        out.append(f'<text x="-4" y="{py(v) + 4:.1f}" class="m" text-anchor="end">{v:.3g}</text>')
    out.append(f'<text x="0" y="{h + 14:.0f}" class="m">{t0:.2f} s</text>')
    out.append(f'<text x="{w:.0f}" y="{h + 14:.0f}" class="m" text-anchor="end">{t1:.2f} s</text>')
    # phases named in a legend too: a short one (the tail, say) is too narrow for its label
    lx = 60.0
    for name in dict.fromkeys(p["name"] for p in phases):
        color = PHASE_COLORS.get(name, NEUTRAL)
        out.append(
            f'<rect x="{lx:.0f}" y="{h + 6:.0f}" width="10" height="9" fill="{color}" '
            f'fill-opacity="0.35" class="phase-key"><title>{_esc(name)}</title></rect>'
        )
        out.append(f'<text x="{lx + 13:.0f}" y="{h + 14:.0f}" class="m">{_esc(name)}</text>')
        lx += 22 + 6 * len(name)
    out.append("</g>")
    return out


def mean_rows(run: Run) -> tuple[np.ndarray, list[int], str]:
    """(layers of the tokens the mean is over, their indices, what to call it).

    The decode tokens only: the prefill token carries the whole prompt's work. A run with no
    decode token yet shows its prefill token, and says so.
    """
    toks = run.tokens()
    n = min(len(toks), run.layers.shape[0])
    # bare tokens (sampled instrumentation) have no layer row: never in the mean, never zeros
    all_decode = [i for i in range(n) if toks[i]["phase"] != "prefill"]
    decode = [i for i in all_decode if toks[i].get("instrumented") is not False]
    if decode and len(decode) < len(all_decode):
        return (
            run.layers[decode],
            decode,
            f"mean over {len(decode)} instrumented tokens of {len(all_decode)} decode tokens "
            "(prefill excluded; bare tokens have no layer row)",
        )
    if decode:
        return (
            run.layers[decode],
            decode,
            f"mean over {len(decode)} decode tokens (prefill excluded)",
        )
    first = [i for i in range(min(n, 1)) if toks[i].get("instrumented") is not False]
    return run.layers[first], first, "prefill token only (no instrumented decode token yet)"


def _heatmap_svg(
    run: Run, x: float, y: float, w: float, cell_titles: bool = True
) -> tuple[list[str], float]:
    arr = run.layers
    if arr.size == 0 or "time_ms" not in run.metric_names:
        return [], 0.0
    rows, idx, what = mean_rows(run)
    if rows.shape[0] == 0:
        return [], 0.0
    ti = run.metric_names.index("time_ms")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        means = np.nanmean(rows.astype(np.float64), axis=0)  # [L, C, M]
    mean = means[..., ti]
    toks = run.tokens()
    hooked = [toks[i].get("layers_ms") for i in idx]
    token_ms = [
        max(toks[i]["duration_ms"] or 0.0, h)
        for i, h in zip(idx, hooked, strict=True)
        if h is not None
    ]
    hooked_ms = [h for h in hooked if h is not None]
    cov = sum(hooked_ms) / sum(token_ms) if token_ms and sum(token_ms) > 0 else None
    outside_j = [e for i in idx if (e := toks[i].get("outside_layers_j")) is not None]
    outside_ms = (sum(token_ms) - sum(hooked_ms)) / len(token_ms) if token_ms else None
    n_l, n_c = mean.shape
    ch = max(4.0, min(14.0, 300.0 / n_l))
    label_w, top = 50.0, 30.0
    cw = (w - label_w) / n_c
    ok = np.isfinite(mean)
    lo = float(mean[ok].min()) if ok.any() else 0.0
    hi = float(mean[ok].max()) if ok.any() else 1.0
    span = hi - lo if hi > lo else 1.0
    out = [f'<g transform="translate({x:.0f},{y:.0f})">']
    out.append(
        f'<text x="0" y="0" class="t">{_esc(METRIC_LABELS["time_ms"].capitalize())} per token by '
        f"layer × component (measured; {lo:.3g}–{hi:.3g} ms) · {_esc(what)}</text>"
    )
    if cov is not None:
        extra = f", {fmt_energy(sum(outside_j) / len(outside_j))}" if outside_j else ""
        out.append(
            f'<text x="0" y="14" class="m">layers cover {_pct(cov)} of token time · '
            f"{_esc(OUTSIDE_LAYERS)}: {_num(outside_ms, 'ms')}{extra} per token</text>"
        )

    def cell_tip(li: int, ci: int) -> str:
        parts = []
        for mi, m in enumerate(run.metric_names):
            v = float(means[li, ci, mi])
            if not math.isfinite(v):
                continue
            if m == "energy_j":
                val = f"{fmt_energy(v)} (modeled)"
            elif m == "sparsity":
                val = _pct(v)
            else:
                unit = METRIC_UNITS.get(m, "")
                val = f"{v:.4g} {unit}".strip()
            parts.append(f"{METRIC_LABELS.get(m, m)} {val}")
        return f"{run.layer_names[li]} · {run.component_names[ci]}: " + " · ".join(parts)

    for li in range(n_l):
        for ci in range(n_c):
            v = float(mean[li, ci])
            out.append(
                f'<rect x="{label_w + ci * cw:.1f}" y="{top + li * ch:.1f}" '
                f'width="{max(1.0, cw - 1):.1f}" height="{max(1.0, ch - 1):.1f}" '
                f'fill="{sequential_hex((v - lo) / span)}">'
                + (f"<title>{_esc(cell_tip(li, ci))}</title>" if cell_titles else "")
                + "</rect>"
            )
        if li % max(1, math.ceil(10 / ch)) == 0:
            out.append(
                f'<text x="{label_w - 4:.0f}" y="{top + li * ch + ch - 2:.1f}" class="m" '
                f'text-anchor="end">{_esc(run.layer_names[li])}</text>'
            )
    names = "  ·  ".join(run.component_names)
    out.append(
        f'<text x="{label_w:.0f}" y="{top + n_l * ch + 12:.1f}" class="m">{_esc(names)}</text>'
    )
    out.append("</g>")
    return out, top + n_l * ch + 20


def render_svg(run: Run, width: int = 720, cell_titles: bool = True) -> str:
    """SVG: the power curve with phase bands, then the layer × component heatmap (if any).

    `cell_titles=False` leaves out each cell's hover text (every metric of it): the report does,
    since its interactive view has them and they made its no-script fallback 90 KB for 30 x 12.
    """
    w = float(width)
    power_h = 160.0
    top = 36.0  # the title and the source line above the chart
    parts = _power_svg(run, 44, top, w - 60, power_h)
    heat, heat_h = _heatmap_svg(run, 0, top + power_h + 44, w - 10, cell_titles)
    height = top + power_h + 44 + heat_h + (0 if heat else -30)
    title = f"{run.model.get('name', 'run')} · {run.run_id} · {run.status}"
    style = (
        "<style>.t{font:600 12px sans-serif;fill:#333}.m{font:10px sans-serif;fill:#666}"
        ".frame{fill:none;stroke:#ccc}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{_esc(title)}">'
        f"<title>{_esc(title)}</title>{style}"
        f'<rect width="100%" height="100%" fill="#fff"/>'
        + "".join(parts)
        + "".join(heat)
        + "</svg>"
    )


SUMMARY_HEADERS = ["figure", "value", "kind", "rests on"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def phase_rows(run: Run) -> list[list[str]]:
    kind = kind_text(run.labels()["phases"], run.power_info.get("scope"))
    return [
        [
            p["name"],
            _num(p["duration_ms"], "ms"),
            fmt_energy(p["energy_j"]),
            _num(p["avg_power_w"], "W"),
            kind,
        ]
        for p in run.phases()
    ]


def render_html(run: Run) -> str:
    """HTML fragment: title, SVG, summary and phase tables, response text (all escaped)."""
    parts = [
        '<div class="llm-energy-static">',
        f"<p><strong>{_esc(render_text(run).splitlines()[0])}</strong><br>"
        f"{_esc(source_line(run))}</p>",
        render_svg(run),
    ]
    if run.n_tokens or run.done:
        parts += [f'<p class="warning">⚠ {_esc(w)}</p>' for w in summary_warnings(run)]
        below = below_resolution_line(run)
        if below:
            parts.append(f"<p>{_esc(below)}</p>")
        parts += [f"<p>{_esc(x)}</p>" for x in sampling_lines(run)]
        parts.append(_table(SUMMARY_HEADERS, summary_table_rows(run)))
        parts.append(predicted_html(predicted_of(run)))
    if run.phases():
        parts.append(_table(["phase", "duration", "energy", "avg power", "kind"], phase_rows(run)))
    if run.error_message:
        parts.append(f'<p class="error">Error: {_esc(run.error_message)}</p>')
    for label, text in response_texts(run):
        if run.n_sequences > 1:
            parts.append(f"<p><strong>{_esc(label)}</strong></p>")
        parts.append(f'<pre style="white-space:pre-wrap">{_esc(text)}</pre>')
    parts.append("</div>")
    return "".join(parts)
