"""Predicted energy and time of a generation, learned from the store's runs (all of it **modeled**).

`predict(model_or_features, prompt_tokens=…, new_tokens=…, batch=…, dtype=…, device=…)` fits
four small physically shaped linear laws on the completed runs of one machine and one power
source (never estimate and measured runs together, never two machines, unless asked):

    prefill energy (J)   = a · FLOPs + b             FLOPs = 2 · parameters · prompt tokens · batch
    TTFT (ms)            = a' · FLOPs + b'
    decode J/token       = c · weight bytes + d · KV bytes + e
    decode ms/token      = c' · weight bytes + d' · KV bytes + e'
        weight bytes = parameters · bytes per parameter (decode reads every weight once a step:
        memory-bound); KV bytes = batch · mean context · KV-cache bytes per token, mean context
        = prompt tokens + new tokens / 2 (the cache a decode step reads, on average)

by ordinary least squares (numpy). A column that does not vary in the training runs folds into the
intercept (one model in the history is the common case), so the fit cannot say what another value
of it would cost: a target outside what the runs vary in falls back to the first-principles
estimate. The fit's error is held out: every run is predicted by the fit on the others
(leave-one-out, through the hat matrix: e_i / (1 − h_ii)), and the interval of a prediction is
[prediction / (1 + q), prediction / (1 − q)] (no upper bound when q ≥ 1), q the jackknife
quantile of the relative held-out errors |predicted / measured − 1| at the stated coverage
(the ⌈(n + 1) · coverage⌉-th smallest, the largest when there are too few runs, and then the
coverage is nominal). Totals add the parts: energy = prefill + decode J/token ×
(new tokens − 1), time = TTFT + decode ms/token × (new tokens − 1); the tail (`generate`'s wrap-up,
a few % of a run) is not modeled. Their interval adds the parts' intervals (conservative).

With no runs to learn from (cold start) the figures come from first principles: a decode step
reads the weights and the KV cache once, at the device's peak memory bandwidth; the prefill
does its FLOPs at the device's peak throughput (or reads the weights, whichever is slower);
energy is the device's busy power × that time, plus a per-layer step overhead of every forward
pass (kernel launches and Python: what keeps a small model from being bandwidth-bound) at a
fraction of that power (`analysis.devices`: documented figures, each
overridable), with an interval of x0.3 to x3, labelled "first-principles estimate".
"""

from __future__ import annotations

import math
import platform
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.jsonsafe import strict_json
from ..errors import InvalidInputError
from ..run import Run
from ..view.text import esc, fmt_sig
from .devices import COLD_HIGH, COLD_LOW, device_figures
from .theme import PALETTE, compact, style

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..store import Store

__all__ = [
    "COLD_LABEL",
    "DEFAULT_COVERAGE",
    "FIGURES",
    "TARGETS",
    "Fit",
    "Prediction",
    "RunPoint",
    "bytes_per_param",
    "fit_points",
    "points_from_runs",
    "predict",
    "predict_cli_text",
    "predicted_vs_measured",
]

COLD_LABEL = "first-principles estimate (no runs of this model on this machine)"
DEFAULT_COVERAGE = 0.8
"""The stated coverage of an interval learned from runs (jackknife: nominal when runs are few)."""

# target -> (summary-derived figure, columns in priority order, unit, label)
TARGETS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "prefill_energy_j": (("prefill_flops",), "J", "prefill energy"),
    "ttft_ms": (("prefill_flops",), "ms", "TTFT"),
    "decode_j_per_token": (("weight_bytes", "kv_bytes"), "J/token", "decode J/token"),
    "decode_ms_per_token": (("weight_bytes", "kv_bytes"), "ms/token", "decode ms/token"),
}
FIGURES: dict[str, tuple[str, str]] = {
    "total_energy_j": ("J", "total energy (prefill + decode)"),
    "prefill_energy_j": ("J", "prefill energy"),
    "prefill_j_per_prompt_token": ("J/token", "prefill J/prompt token"),
    "decode_j_per_token": ("J/token", "decode J/token"),
    "total_time_ms": ("ms", "generation time (TTFT + decode)"),
    "ttft_ms": ("ms", "TTFT"),
    "decode_ms_per_token": ("ms/token", "decode ms/token"),
    "decode_tokens_per_s": ("tokens/s", "decode tokens/s"),
}
"""The figures a Prediction gives, in display order: name -> (unit, label)."""

_DTYPE_BYTES = {
    "float64": 8.0, "double": 8.0, "float32": 4.0, "float": 4.0, "tfloat32": 4.0,
    "float16": 2.0, "half": 2.0, "bfloat16": 2.0, "float8_e4m3fn": 1.0, "float8_e5m2": 1.0,
    "int8": 1.0, "uint8": 1.0, "int4": 0.5,
}  # fmt: skip


def bytes_per_param(dtype: str | None, quantization: str | None = None) -> float | None:
    """Bytes one weight takes: a quantization's bits when it says them, else the dtype's size
    (a GGUF loaded "de-quantized to float32" takes the dtype's)."""
    if quantization and "de-quantized" not in str(quantization):
        m = re.search(r"(\d+)\s*-?\s*bit", str(quantization))
        if m:
            return int(m.group(1)) / 8.0
    if not dtype:
        return None
    return _DTYPE_BYTES.get(str(dtype).replace("torch.", "").lower())


@dataclass(frozen=True)
class RunPoint:
    """What a fit needs of one run: its setting (the columns) and its measured figures."""

    run_id: str
    model: str
    host: str
    device: str
    accelerator: str | None
    source: str
    kind: str
    parameters: float
    bytes_per_param: float
    kv_bytes_per_token: float
    prompt_tokens: int
    new_tokens: int
    batch: int
    figures: dict[str, float | None]

    @property
    def group(self) -> tuple[str, str, str, str]:
        """Runs are fitted together only within one (machine, device, source, kind)."""
        return (self.host, self.device, self.source, self.kind)

    def columns(self) -> dict[str, float]:
        return _columns(
            self.parameters, self.bytes_per_param, self.kv_bytes_per_token,
            self.prompt_tokens, self.new_tokens, self.batch,
        )  # fmt: skip


def _columns(
    params: float, bpp: float, kv_per_token: float, prompt: int, new: int, batch: int
) -> dict[str, float]:
    mean_context = prompt + new / 2.0
    return {
        "prefill_flops": 2.0 * params * prompt * batch,
        "weight_bytes": params * bpp,
        "kv_bytes": batch * mean_context * kv_per_token,
    }


def _device_type(device: Any) -> str:
    return str(device or "cpu").split(":", 1)[0].lower()


def _point(run: Run) -> RunPoint | None:
    """The run as a RunPoint, or None when it lacks what a fit needs (not completed, no model
    features, no figures)."""
    if run.status != "completed":
        return None
    return _point_from(
        run.run_id, run.model or {}, run.settings, run.power_info, run.summary(), run.prompt_tokens
    )


def _point_from(
    run_id: str,
    model: dict[str, Any],
    settings: dict[str, Any],
    info: dict[str, Any],
    s: dict[str, Any],
    prompt_tokens: int | None = None,
) -> RunPoint | None:
    feats = model.get("features") or {}
    params = feats.get("parameters")
    dtype = settings.get("dtype") or feats.get("dtype")
    # the weights as stored (packed int8 included), where the features counted them
    bpp = feats.get("bytes_per_param") or bytes_per_param(dtype, feats.get("quantization"))
    if not params or bpp is None:
        return None
    kv = feats.get("kv_cache_bytes_per_token") or 0.0
    prompt = s.get("input_tokens") or prompt_tokens
    n_out = s.get("output_tokens") or 0
    if not prompt or not n_out:
        return None
    tps = s.get("decode_tokens_per_s")
    figures: dict[str, float | None] = {
        "prefill_energy_j": s.get("prefill_energy_j"),
        "ttft_ms": s.get("ttft_ms"),
        "decode_j_per_token": s.get("decode_j_per_token") if n_out > 1 else None,
        "decode_ms_per_token": 1000.0 / tps if tps and n_out > 1 else None,
    }
    figures = {
        k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None)
        for k, v in figures.items()
    }
    machine = settings.get("machine") or {}
    return RunPoint(
        run_id=run_id,
        model=str(model.get("name") or "model"),
        host=str(machine.get("host") or "unknown"),
        device=_device_type(settings.get("device")),
        accelerator=machine.get("accelerator"),
        source=str(info.get("source") or "unknown"),
        kind=str(info.get("kind") or "unknown"),
        parameters=float(params),
        bytes_per_param=float(bpp),
        kv_bytes_per_token=float(kv),
        prompt_tokens=int(prompt),
        new_tokens=int(n_out),
        batch=int(settings.get("batch_size") or 1),
        figures=figures,
    )


def points_from_runs(runs: Iterable[Run]) -> list[RunPoint]:
    """The runs a fit can use, as RunPoints (the others are left out)."""
    return [p for r in runs if (p := _point(r)) is not None]


_SUMMARY_KEYS = ("input_tokens", "output_tokens", "prefill_energy_j", "decode_j_per_token")


def _points_from_store(store: Store, host: str | None, device: str) -> list[RunPoint]:
    """Completed runs of `device` (and `host`, when given) from the store.

    The figures come from each run's stored summary (one query for all runs); a run is loaded
    only for its model's features, once per model name, or when its summary lacks a figure.
    """
    out = []
    # (name, dtype, quantization): the KV bytes follow the dtype, the weight bytes both
    models: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in store.run_records(status="completed"):
        settings = rec.get("settings") or {}
        if _device_type(settings.get("device")) != device:
            continue
        rec_host = (settings.get("machine") or {}).get("host") or "unknown"
        if host is not None and rec_host != host:
            continue
        summary = rec.get("summary") or {}
        name = (
            str(rec.get("model") or ""),
            str(settings.get("dtype")),
            str(settings.get("quantization")),
        )
        if name not in models or not all(k in summary for k in _SUMMARY_KEYS):
            run = store.load(rec["run_id"])
            models.setdefault(name, run.model or {})
            p = _point(run)
        else:
            info = {"source": rec.get("power_source"), "kind": rec.get("power_kind")}
            p = _point_from(rec["run_id"], models[name], settings, info, summary)
        if p is not None:
            out.append(p)
    return out


# -- the fit ----------------------------------------------------------------------------------


@dataclass
class Fit:
    """One target's least-squares law and its held-out (leave-one-out) errors."""

    target: str
    columns: list[str]
    """The columns fitted (those that vary in the training runs), besides the intercept."""
    folded: dict[str, float]
    """Columns that did not vary, folded into the intercept, with the one value they had."""
    coefficients: dict[str, float]
    """Per column (unit of the target per unit of the column) and `intercept`."""
    run_ids: list[str]
    measured: list[float]
    loo_predicted: list[float]
    """Each run's prediction by the fit on the other runs."""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.run_ids)

    @property
    def loo_relative_errors(self) -> list[float]:
        """(held-out prediction − measured) / measured, per run."""
        return [
            (p - m) / m if m else float("nan")
            for p, m in zip(self.loo_predicted, self.measured, strict=True)
        ]

    @property
    def loo_mape(self) -> float:
        """Mean |relative held-out error| (leave-one-out)."""
        e = [abs(x) for x in self.loo_relative_errors if math.isfinite(x)]
        return float(np.mean(e)) if e else float("nan")

    @property
    def loo_max(self) -> float:
        e = [abs(x) for x in self.loo_relative_errors if math.isfinite(x)]
        return float(max(e)) if e else float("nan")

    def quantile(self, coverage: float) -> tuple[float, bool]:
        """The interval's relative half-width at `coverage`, and whether the coverage holds
        (False: too few runs, the largest error is used and the coverage is nominal)."""
        e = sorted(abs(x) for x in self.loo_relative_errors if math.isfinite(x))
        if not e:
            return float("nan"), False
        k = math.ceil((len(e) + 1) * coverage)
        return (e[k - 1], True) if k <= len(e) else (e[-1], False)

    def predict(self, cols: dict[str, float]) -> float:
        y = self.coefficients["intercept"]
        for c in self.columns:
            y += self.coefficients[c] * cols[c]
        return y

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "columns": list(self.columns),
            "folded_into_intercept": dict(self.folded),
            "coefficients": dict(self.coefficients),
            "n_runs": self.n,
            "loo_mape": _finite(self.loo_mape),
            "loo_max_error": _finite(self.loo_max),
            "runs": [
                {"run_id": r, "measured": m, "loo_predicted": p}
                for r, m, p in zip(self.run_ids, self.measured, self.loo_predicted, strict=True)
            ],
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _design(
    points: Sequence[RunPoint], wanted: Sequence[str]
) -> tuple[list[str], dict[str, float]]:
    """The columns that vary (kept, in priority order, while independent) and those folded."""
    n = len(points)
    kept: list[str] = []
    folded: dict[str, float] = {}
    for c in wanted:
        v = np.array([p.columns()[c] for p in points])
        if np.ptp(v) <= 1e-9 * max(abs(float(v.max())), 1.0):
            folded[c] = float(v[0])
            continue
        trial = [*kept, c]
        X = _matrix(points, trial)
        # one more column only if it is independent of the others and leaves >= 2 runs spare
        if np.linalg.matrix_rank(X / np.abs(X).max(axis=0)) == X.shape[1] and n >= X.shape[1] + 2:
            kept = trial
        else:
            folded[c] = float("nan")  # not separable from the others in these runs
    return kept, folded


def _matrix(points: Sequence[RunPoint], cols: Sequence[str]) -> np.ndarray:
    return np.array([[1.0, *(p.columns()[c] for c in cols)] for p in points])


def fit_points(points: Sequence[RunPoint], target: str) -> Fit | None:
    """Least squares of `target` on its columns over the runs that have it; None under 3 runs."""
    if target not in TARGETS:
        raise InvalidInputError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    pts = [p for p in points if p.figures.get(target) is not None]
    if len(pts) < 3:
        return None
    cols, folded = _design(pts, TARGETS[target][0])
    X = _matrix(pts, cols)
    y = np.array([float(p.figures[target]) for p in pts])  # type: ignore[arg-type]
    # scale columns to unit size: FLOPs are ~1e11 and intercepts ~1, lstsq is happier
    scale = np.abs(X).max(axis=0)
    Xs = X / scale
    beta_s, *_ = np.linalg.lstsq(Xs, y, rcond=None)
    beta = beta_s / scale
    resid = y - X @ beta
    hat = np.einsum("ij,jk,ik->i", Xs, np.linalg.pinv(Xs.T @ Xs), Xs)
    loo = y - resid / np.clip(1.0 - hat, 1e-12, None)
    ranges = {c: (float(X[:, i + 1].min()), float(X[:, i + 1].max())) for i, c in enumerate(cols)}
    return Fit(
        target=target,
        columns=cols,
        folded=folded,
        coefficients={
            "intercept": float(beta[0]),
            **{c: float(beta[i + 1]) for i, c in enumerate(cols)},
        },
        run_ids=[p.run_id for p in pts],
        measured=[float(v) for v in y],
        loo_predicted=[float(v) for v in loo],
        ranges=ranges,
    )


# -- the result -------------------------------------------------------------------------------


@dataclass
class Prediction:
    """Predicted figures, each (value, low, high), all modeled; `basis` names what they rest on.

    Displayed: a table of the figures with their intervals and the runs they were learned from,
    then the parity plot (each training run's leave-one-out prediction against its measurement).
    """

    figures: dict[str, tuple[float, float, float] | None]
    """name (`FIGURES`) -> (predicted, low, high); None where it cannot be predicted."""
    method: str
    """"fit" (learned from runs) or "first-principles"."""
    label: str
    setting: dict[str, Any]
    basis: dict[str, Any]
    coverage: float | None
    fits: dict[str, Fit] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kind: str = "modeled"

    def value(self, name: str) -> float | None:
        f = self.figures.get(name)
        return f[0] if f else None

    @property
    def held_out_error(self) -> dict[str, float | None]:
        """Mean |relative leave-one-out error| of each fitted figure (None: not fitted)."""
        return {t: (_finite(f.loo_mape) if f else None) for t, f in self._all_fits().items()}

    def _all_fits(self) -> dict[str, Fit | None]:
        return {t: self.fits.get(t) for t in TARGETS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers as None): what `llm-energy predict --json` prints."""
        out: dict[str, Any] = strict_json(self._dict())
        return out

    def _dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "label": self.label,
            "setting": dict(self.setting),
            "figures": {
                k: (
                    {
                        "value": _finite(v[0]),
                        "low": _finite(v[1]),
                        "high": _finite(v[2]),
                        "unit": FIGURES[k][0],
                    }
                    if v
                    else None
                )
                for k, v in self.figures.items()
            },
            "coverage": self.coverage,
            "basis": dict(self.basis),
            "held_out_error": self.held_out_error,
            "fits": {k: f.to_dict() for k, f in self.fits.items()},
            "notes": list(self.notes),
        }

    # -- text ---------------------------------------------------------------------------------
    def _basis_line(self) -> str:
        b = self.basis
        if self.method != "fit":
            return f"from {b.get('device_origin')}"
        return (
            f"learned from {b['n_runs']} run{'s' if b['n_runs'] != 1 else ''} "
            f"({', '.join(b['models'])}) of power source {b['source']} ({b['kind']}) "
            f"on {b['host']}, {b['device']}"
        )

    def _coverage_text(self) -> str:
        if self.method != "fit":
            return f"interval x{COLD_LOW:g} to x{COLD_HIGH:g}"
        cov = self.coverage or 0.0
        nominal = "" if self.basis.get("coverage_holds") else ", nominal: few runs"
        return f"interval: {100 * cov:.0f} % leave-one-out (jackknife){nominal}"

    def to_text(self) -> str:
        s = self.setting
        lines = [
            f"predicted ({self.kind}, {self.label}) for {s.get('model')}: "
            f"{s['prompt_tokens']} prompt tokens, {s['new_tokens']} new tokens, "
            f"batch {s['batch']}, "
            f"{s.get('dtype')}, {s['device']}",
            f"  {self._basis_line()}; {self._coverage_text()}",
        ]
        width = max(len(v[1]) for v in FIGURES.values())
        for k, (unit, label) in FIGURES.items():
            f = self.figures.get(k)
            val = "–" if not f else f"{fmt_sig(f[0])} {unit}  [{fmt_sig(f[1])} – {fmt_sig(f[2])}]"
            lines.append(f"  {label:<{width}}  {val}")
        if self.fits:
            errs = ", ".join(
                f"{TARGETS[t][2]} {100 * f.loo_mape:.1f} % (max {100 * f.loo_max:.1f} %, n={f.n})"
                for t, f in self.fits.items()
            )
            lines.append(f"  held-out error (leave-one-out, mean |error|): {errs}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    # -- html and figure ----------------------------------------------------------------------
    def _repr_html_(self) -> str:
        rows = []
        for k, (unit, label) in FIGURES.items():
            f = self.figures.get(k)
            cells = (
                "<td>–</td><td>–</td>"
                if not f
                else f'<td style="text-align:right">{esc(fmt_sig(f[0]))} {esc(unit)}</td>'
                f'<td style="text-align:right">{esc(fmt_sig(f[1]))} – {esc(fmt_sig(f[2]))}</td>'
            )
            err = ""
            fit = self.fits.get(k)
            if fit is not None:
                err = f"{100 * fit.loo_mape:.1f} %"
            rows.append(
                f'<tr><td style="text-align:left">{esc(label)}</td>{cells}<td>{err}</td></tr>'
            )
        s = self.setting
        caption = (
            f"predict(): {esc(s.get('model'))}, {s['prompt_tokens']} prompt tokens, "
            f"{s['new_tokens']} new tokens, batch {s['batch']}, {esc(s.get('dtype'))}, "
            f"{esc(s['device'])}"
        )
        notes = "".join(f'<p style="margin:0.3em 0"><b>note:</b> {esc(n)}</p>' for n in self.notes)
        return (
            f'<div class="lew-predict"><p style="margin:0 0 0.4em 0"><b>{caption}</b></p>'
            f'<p style="margin:0 0 0.4em 0">{esc(self.kind)}: {esc(self.label)}; '
            f"{esc(self._basis_line())}; {esc(self._coverage_text())}</p>"
            '<table><thead><tr><th style="text-align:left">figure</th><th>predicted</th>'
            "<th>interval</th><th>held-out error</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{notes}</div>"
        )

    def parity_figure(self) -> go.Figure | None:
        """Leave-one-out prediction against measurement for the fitting runs (None: no fit)."""
        if not self.fits:
            return None
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fits = [(t, f) for t, f in self.fits.items()]
        titles = [
            f"{TARGETS[t][2]} ({TARGETS[t][1]}), held-out error {100 * f.loo_mape:.1f} %"
            for t, f in fits
        ]
        cols = min(2, len(fits))
        rows = math.ceil(len(fits) / cols)
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.12)
        for i, (t, f) in enumerate(fits):
            r, c = i // cols + 1, i % cols + 1
            lo = min(*f.measured, *f.loo_predicted)
            hi = max(*f.measured, *f.loo_predicted)
            fig.add_trace(
                go.Scatter(
                    x=[lo, hi], y=[lo, hi], mode="lines", showlegend=i == 0,
                    name="predicted = measured",
                    line={"dash": "dot", "color": "rgba(128,128,128,0.8)", "width": 1},
                    hoverinfo="skip",
                ),
                row=r, col=c,
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=compact(f.measured), y=compact(f.loo_predicted), mode="markers",
                    name="run (predicted without it)", showlegend=i == 0,
                    marker={"color": PALETTE[0], "size": 8},
                    text=[rid[:8] for rid in f.run_ids],
                    hovertemplate=(
                        f"run %{{text}}<br>measured %{{x:.4g}} {TARGETS[t][1]}<br>"
                        f"predicted %{{y:.4g}} {TARGETS[t][1]}<extra></extra>"
                    ),
                ),
                row=r, col=c,
            )  # fmt: skip
            unit = TARGETS[t][1]
            fig.update_xaxes(title_text=f"measured ({unit}, {self.basis['kind']})", row=r, col=c)
            fig.update_yaxes(title_text=f"predicted ({unit}, modeled)", row=r, col=c)
        b = self.basis
        details = (
            f"J, J/token, ms: modeled (leave-one-out) against {b['kind']}, source {b['source']}; "
            f"{b['n_runs']} runs on {b['host']}, {b['device']}"
        )
        return style(
            fig,
            "Predicted vs measured",
            details,
            height_px=330 * rows + 80,
            extra_top_px=20,
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from .html import display_figures

        display({"text/html": self._repr_html_(), "text/plain": self.to_text()}, raw=True)
        fig = self.parity_figure()
        if fig is not None:
            display_figures([fig])

    def to_html(self, include_plotlyjs: bool = True) -> str:
        from .html import figures_html

        fig = self.parity_figure()
        return self._repr_html_() + (
            figures_html([fig], include_plotlyjs=include_plotlyjs) if fig is not None else ""
        )


# -- predict ----------------------------------------------------------------------------------


def _features_of(model_or_features: Any, store: Store | None) -> tuple[str, dict[str, Any]]:
    """(model name, features) from features, a Run, a model (or (model, tokenizer)), or a name
    found in the store's runs."""
    obj = model_or_features
    if isinstance(obj, Run):
        return str(obj.model.get("name") or "model"), dict(obj.model.get("features") or {})
    if isinstance(obj, dict):
        if "features" in obj and isinstance(obj["features"], dict):  # a run's model dict
            return str(obj.get("name") or "model"), dict(obj["features"])
        return str(obj.get("name") or obj.get("architecture") or "model"), dict(obj)
    if isinstance(obj, str):
        st = store if store is not None else _default_store()
        if st is None:
            raise InvalidInputError(
                f"no run store to find a model named {obj!r} in: pass the model or its features"
            )
        for rec in st.run_records(model=obj):
            run = st.load(rec["run_id"])
            feats = run.model.get("features") or {}
            if feats.get("parameters"):
                return str(run.model.get("name") or obj), dict(feats)
        raise InvalidInputError(
            f"no run of a model named like {obj!r} with its features in {st.path}: pass the model "
            "or its features (run.model['features'])"
        )
    if isinstance(obj, tuple) and obj:
        obj = obj[0]
    if hasattr(obj, "parameters") and hasattr(obj, "config"):
        from ..profiler import EnergyProfiler

        prof = EnergyProfiler(obj, store=False, warmup=False, level="token")
        cfg = obj.config
        names = (getattr(cfg, a, None) for a in ("_llm_energy_name", "name_or_path"))
        return str(next((n for n in names if n), type(obj).__name__)), prof.model_features()
    raise InvalidInputError(
        "predict needs a model, (model, tokenizer), model features (a dict), a Run or a model "
        f"name; got {type(model_or_features).__name__}"
    )


def _default_store() -> Store | None:
    """The default store opened read-only (predicting never creates one); None if there is none."""
    from ..store import Store as _Store
    from ..store import default_path

    path = default_path()
    return _Store(path, read_only=True) if path.is_file() else None


def _positive_int(v: Any, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _choose_group(
    points: list[RunPoint], source: str | None, kind: str | None, mix: bool, min_runs: int
) -> tuple[list[RunPoint], list[str]]:
    """The runs of one power source and kind (the largest group; measured first), and notes."""
    notes: list[str] = []
    if source is not None:
        points = [p for p in points if p.source == source]
    if kind is not None:
        points = [p for p in points if p.kind == kind]
    if mix:
        groups = Counter((p.source, p.kind) for p in points)
        if len(groups) > 1:
            notes.append(
                "mixes power sources and kinds as asked (mix=True): "
                + ", ".join(f"{s} ({k}) {n}" for (s, k), n in groups.items())
            )
        return points, notes
    groups = Counter((p.source, p.kind) for p in points)
    if not groups:
        return [], notes
    enough = [g for g, n in groups.items() if n >= min_runs]
    measured = [g for g in enough if g[1] == "measured"]
    pool = measured or enough or list(groups)
    best = max(pool, key=lambda g: groups[g])
    others = [f"{s} ({k}): {n}" for (s, k), n in groups.items() if (s, k) != best]
    if others:
        notes.append(
            f"fitted on power source {best[0]} ({best[1]}) only; not mixed with "
            + ", ".join(others)
            + " (source=, kind= choose; mix=True mixes)"
        )
    return [p for p in points if (p.source, p.kind) == best], notes


def _cold(
    setting: dict[str, Any], cols: dict[str, float], dev: dict[str, Any]
) -> dict[str, tuple[float, float, float] | None]:
    """First-principles figures (see the module docstring) with their x0.3-x3 interval."""
    bw = dev["memory_bandwidth_gb_s"] * 1e9
    flops = dev["peak_tflops"] * 1e12
    w = dev["power_w"]
    # every forward pass: the per-layer step overhead, at a fraction of the busy power
    over_s = (setting.get("layers") or 0) * dev["step_overhead_ms_per_layer"] / 1000.0
    over_j = w * dev["overhead_power_fraction"] * over_s
    prefill_s = max(cols["prefill_flops"] / flops, cols["weight_bytes"] / bw)
    step_s = max(
        (cols["weight_bytes"] + cols["kv_bytes"]) / bw,
        2.0 * setting["parameters"] * setting["batch"] / flops,
    )
    n_dec = setting["new_tokens"] - 1
    vals = {
        "prefill_energy_j": w * prefill_s + over_j,
        "ttft_ms": 1000.0 * (prefill_s + over_s),
        "decode_j_per_token": w * step_s + over_j,
        "decode_ms_per_token": 1000.0 * (step_s + over_s),
    }
    vals["total_energy_j"] = vals["prefill_energy_j"] + n_dec * vals["decode_j_per_token"]
    vals["total_time_ms"] = vals["ttft_ms"] + n_dec * vals["decode_ms_per_token"]
    vals["prefill_j_per_prompt_token"] = vals["prefill_energy_j"] / setting["prompt_tokens"]
    out: dict[str, tuple[float, float, float] | None] = {
        k: (v, v * COLD_LOW, v * COLD_HIGH) for k, v in vals.items()
    }
    tps = 1000.0 / vals["decode_ms_per_token"]
    out["decode_tokens_per_s"] = (tps, tps / COLD_HIGH, tps / COLD_LOW)
    return {k: out[k] for k in FIGURES}


def _usable(fit: Fit, cols: dict[str, float]) -> str | None:
    """Why the fit cannot predict this setting (a folded column the target changes), or None."""
    for c, v in fit.folded.items():
        if not math.isfinite(v):
            return (
                f"{c} varies in the runs but cannot be fitted apart (too few runs for it, or it "
                "moves with another column)"
            )
        if abs(cols[c] - v) > 1e-6 * max(abs(v), 1.0):
            return f"the runs all have {c} = {v:.4g}, this setting {cols[c]:.4g}"
    return None


def _setting(
    model_or_features: Any, st: Store | None, prompt_tokens: int, new_tokens: int, batch: int,
    dtype: str | None, dev_type: str, host: str,
) -> dict[str, Any]:  # fmt: skip
    """What is predicted: the model's size, bytes per weight and per KV token, and the setting."""
    name, feats = _features_of(model_or_features, st)
    params = feats.get("parameters")
    if not params:
        raise InvalidInputError("the model's features lack its parameter count ('parameters')")
    own_dtype = feats.get("dtype")
    use_dtype = dtype or own_dtype
    bpp = (None if dtype else feats.get("bytes_per_param")) or bytes_per_param(
        use_dtype, None if dtype else feats.get("quantization")
    )
    if bpp is None:
        raise InvalidInputError(f"unknown dtype {use_dtype!r}: say dtype= (float32, bfloat16, …)")
    kv = float(feats.get("kv_cache_bytes_per_token") or 0.0)
    own_bpp = bytes_per_param(own_dtype)
    if dtype and own_bpp and bytes_per_param(own_dtype, feats.get("quantization")) == own_bpp:
        kv *= bpp / own_bpp  # the cache is kept in the model's dtype
    return {
        "model": name, "parameters": float(params), "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens, "batch": batch, "dtype": use_dtype, "device": dev_type,
        "host": host, "bytes_per_param": bpp, "kv_bytes_per_token": kv,
        "layers": feats.get("layers"),
    }  # fmt: skip


def _fits_for(
    group: list[RunPoint], cols: dict[str, float], min_runs: int
) -> tuple[dict[str, Fit], list[str]]:
    """The targets' fits that can predict `cols`, and why the others cannot."""
    fits: dict[str, Fit] = {}
    why_not: list[str] = []
    if len(group) < min_runs:
        return fits, why_not
    for t in TARGETS:
        f = fit_points(group, t)
        if f is None:
            why_not.append(f"{TARGETS[t][2]}: fewer than 3 runs have it")
            continue
        reason = _usable(f, cols)
        if reason:
            why_not.append(f"{TARGETS[t][2]}: {reason}")
            continue
        fits[t] = f
    return fits, why_not


def _fitted_figures(
    fits: dict[str, Fit], cols: dict[str, float], setting: dict[str, Any], coverage: float
) -> tuple[dict[str, tuple[float, float, float] | None], bool, list[str]]:
    """Each figure with its interval from the fits; whether the coverage holds; notes."""
    figures: dict[str, tuple[float, float, float]] = {}
    notes: list[str] = []
    holds = True
    for t, f in fits.items():
        v = f.predict(cols)
        q, ok = f.quantile(coverage)
        holds = holds and ok
        # |predicted / measured - 1| <= q  <=>  measured in [v / (1 + q), v / (1 - q)]
        figures[t] = (v, v / (1 + q), v / (1 - q) if q < 1 else math.inf)
        if q >= 1:
            notes.append(
                f"{TARGETS[t][2]}: held-out errors reach {100 * q:.0f} %, so the interval has "
                "no upper bound"
            )
        for c in f.columns:
            lo, hi = f.ranges[c]
            if cols[c] < lo * 0.8 or cols[c] > hi * 1.2:
                notes.append(
                    f"{TARGETS[t][2]}: {c} = {cols[c]:.4g} is outside the runs' "
                    f"{lo:.4g}–{hi:.4g} (extrapolated)"
                )
        if v <= 0:
            notes.append(f"{TARGETS[t][2]} is predicted <= 0: the linear law does not hold here")
    n_dec = setting["new_tokens"] - 1
    pe, dj = figures["prefill_energy_j"], figures["decode_j_per_token"]
    tt, dm = figures["ttft_ms"], figures["decode_ms_per_token"]

    def add(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
        return (a[0] + n_dec * b[0], a[1] + n_dec * b[1], a[2] + n_dec * b[2])

    figures["total_energy_j"] = add(pe, dj)
    figures["total_time_ms"] = add(tt, dm)
    n_prompt = setting["prompt_tokens"]
    figures["prefill_j_per_prompt_token"] = (pe[0] / n_prompt, pe[1] / n_prompt, pe[2] / n_prompt)
    figures["decode_tokens_per_s"] = (
        1000.0 / dm[0],
        1000.0 / dm[2] if dm[2] > 0 else float("nan"),
        1000.0 / dm[1] if dm[1] > 0 else float("inf"),
    )
    return {k: figures.get(k) for k in FIGURES}, holds, notes


def predict(
    model_or_features: Any,
    prompt_tokens: int = 32,
    new_tokens: int = 64,
    batch: int = 1,
    dtype: str | None = None,
    device: str = "cpu",
    *,
    store: Store | str | None = None,
    runs: Iterable[Run] | None = None,
    machine: str | None = None,
    source: str | None = None,
    kind: str | None = None,
    mix: bool = False,
    coverage: float = DEFAULT_COVERAGE,
    exclude: Iterable[str] = (),
    min_runs: int = 3,
    accelerator: str | None = None,
    cpu_cores: int | None = None,
    memory_bandwidth_gb_s: float | None = None,
    power_w: float | None = None,
    peak_tflops: float | None = None,
    step_overhead_ms_per_layer: float | None = None,
) -> Prediction:
    """Predicted energy and time of one generation setting, labelled **modeled**.

    Learned from the completed runs of `machine` (default: this host) on `device` in the store
    (or `runs`), of one power source and kind (the one with most runs, measured first; choose
    with `source=`/`kind=`; `mix=True` mixes them); with fewer than `min_runs` usable runs, or a
    setting the runs do not vary in (another model), a first-principles estimate from the
    device's documented figures (`analysis.devices`; override with `accelerator=`,
    `cpu_cores=`, `memory_bandwidth_gb_s=`, `power_w=`, `peak_tflops=`,
    `step_overhead_ms_per_layer=`).

    `model_or_features`: a model or (model, tokenizer), `run.model["features"]`, a Run (its
    model), or a model name found in the store. `dtype` changes the bytes per weight and per
    KV-cache element from the model's own. `exclude`: run ids left out of the fit. Runs that
    predate `settings["machine"]` have host "unknown" (`machine="unknown"` fits on them).
    """
    prompt_tokens = _positive_int(prompt_tokens, "prompt_tokens")
    new_tokens = _positive_int(new_tokens, "new_tokens")
    batch = _positive_int(batch, "batch")
    if not isinstance(coverage, (int, float)) or not 0 < coverage < 1:
        raise InvalidInputError(f"coverage must be between 0 and 1, got {coverage!r}")
    min_runs = _positive_int(min_runs, "min_runs", 3)
    dev_type = _device_type(device)
    if dev_type not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"device must be cpu, cuda or mps; got {device!r}")
    st: Store | None = None
    if runs is None:
        if isinstance(store, str):
            from ..store import Store as _Store

            st = _Store(store, create=False)
        else:
            st = store if store is not None else _default_store()
    host = machine if machine is not None else platform.node()
    setting = _setting(
        model_or_features, st, prompt_tokens, new_tokens, batch, dtype, dev_type, host
    )
    cols = _columns(
        setting["parameters"], setting["bytes_per_param"], setting["kv_bytes_per_token"],
        prompt_tokens, new_tokens, batch,
    )  # fmt: skip

    if runs is not None:
        pts = [p for p in points_from_runs(runs) if p.device == dev_type and p.host == host]
    else:
        pts = _points_from_store(st, host, dev_type) if st is not None else []
    skip = set(exclude)
    pts = [p for p in pts if p.run_id not in skip]
    if accelerator is None and dev_type != "cpu":
        accelerator = next((p.accelerator for p in pts if p.accelerator), None)
    if accelerator is not None and dev_type != "cpu":
        pts = [p for p in pts if p.accelerator is None or p.accelerator == accelerator]
    group, notes = _choose_group(pts, source, kind, mix, min_runs)
    fits, why_not = _fits_for(group, cols, min_runs)

    if len(fits) < len(TARGETS):
        dev = device_figures(
            dev_type, accelerator, cpu_cores=cpu_cores,
            memory_bandwidth_gb_s=memory_bandwidth_gb_s, power_w=power_w, peak_tflops=peak_tflops,
            step_overhead_ms_per_layer=step_overhead_ms_per_layer,
        )  # fmt: skip
        n = len(group)
        reason = f"{n} usable run{'s' if n != 1 else ''} on {host}, {dev_type}"
        if n < min_runs:
            reason += f" (at least {min_runs} needed)"
        if why_not:
            reason += "; the runs cannot predict this setting: " + "; ".join(why_not)
        notes.insert(0, f"first-principles because: {reason}")
        basis = {"n_runs": 0, "device_figures": dev, "device_origin": dev["origin"]}
        return Prediction(
            figures=_cold(setting, cols, dev),
            method="first-principles",
            label=COLD_LABEL,
            setting=setting,
            basis={**basis, "host": host, "device": dev_type},
            coverage=None,
            notes=notes,
        )

    figures, holds, fnotes = _fitted_figures(fits, cols, setting, coverage)
    notes += fnotes
    batches = {p.batch for p in group}
    if batch not in batches:
        notes.append(
            f"the runs have batch {', '.join(map(str, sorted(batches)))}: batch {batch} follows "
            "the linear law, untested here"
        )
    ids = sorted({rid for f in fits.values() for rid in f.run_ids})
    basis = {
        "n_runs": len(ids),
        "run_ids": ids,
        "source": "mixed" if mix else group[0].source,
        "kind": "mixed" if mix else group[0].kind,
        "host": host,
        "device": dev_type,
        "models": sorted({p.model for p in group}),
        "coverage_holds": holds,
    }
    return Prediction(
        figures=figures,
        method="fit",
        label="least-squares fit on past runs",
        setting=setting,
        basis=basis,
        coverage=float(coverage),
        fits=fits,
        notes=notes,
    )


def predict_cli_text(result: Prediction) -> str:
    """What `llm-energy predict` prints: the figures, their intervals, what they were learned
    from and the held-out error (the same text as `repr(result)`)."""
    return result.to_text()


def predicted_vs_measured(run: Run, store: Store | None = None) -> dict[str, Any] | None:
    """The run's figures as the store's other runs predict them, next to its measurements.

    For the widget's summary after a run: {"kind": "modeled", "method", "label", "basis",
    "rows": [{"figure", "unit", "predicted", "low", "high", "measured", "error"}]}, error =
    (predicted − measured) / measured; None when the run cannot be described (not completed, no
    features) or no figure can be compared.
    """
    p = _point(run)
    if p is None:
        return None
    try:
        pred = predict(
            run,
            prompt_tokens=p.prompt_tokens,
            new_tokens=p.new_tokens,
            batch=p.batch,
            dtype=run.settings.get("dtype") or None,
            device=p.device,
            store=store,
            machine=p.host,
            source=p.source,
            kind=p.kind,
            exclude=[run.run_id],
            accelerator=p.accelerator,
        )
    except InvalidInputError:
        return None
    measured = dict(p.figures)
    s = run.summary()
    measured["total_energy_j"] = (
        (s.get("prefill_energy_j") or 0.0) + (s.get("decode_energy_j") or 0.0)
        if s.get("prefill_energy_j") is not None
        else None
    )
    rows = []
    for k in (
        "total_energy_j",
        "prefill_energy_j",
        "decode_j_per_token",
        "ttft_ms",
        "decode_ms_per_token",
    ):
        f, m = pred.figures.get(k), measured.get(k)
        if f is None or m is None:
            continue
        rows.append(
            {
                "figure": FIGURES[k][1], "key": k, "unit": FIGURES[k][0], "predicted": f[0],
                "low": f[1], "high": f[2], "measured": m,
                "error": (f[0] - m) / m if m else None, "within": f[1] <= m <= f[2],
            }
        )  # fmt: skip
    if not rows:
        return None
    return {
        "kind": "modeled",
        "measured_kind": p.kind,
        "method": pred.method,
        "label": pred.label,
        "basis": pred.basis
        if pred.method == "fit"
        else {"device_origin": pred.basis["device_origin"]},
        "coverage": pred.coverage,
        "rows": rows,
        "notes": pred.notes,
    }
