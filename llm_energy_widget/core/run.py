"""One run of profiled generation: the data every consumer reads.

The producer writes to it only through `core.recorder.Recorder` (from the generation and sampler
threads, under the run's lock); consumers subscribe to its events (`core.events`) or read its
columns. A run loaded from the store is the same data with no producer behind it. Display and
export shortcuts (`run.show()`, `run.to_csv()`, ...) belong to the public `llm_energy_widget.Run`,
a subclass outside the core, so the core imports no consumer.
"""

from __future__ import annotations

import datetime as _dt
import math
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..power.energy import EnergyCurve, FloatArray
from ..power.record import POWER_COLUMNS
from .attribution import cell_energy_j, coverage, layers_time_ms
from .batch import SPLIT_KIND, step_sizes, token_kind
from .events import EventBus, Listener
from .jsonsafe import nan_to_none, none_if_nan, strict_json
from .schema import (
    METRICS,
    TOKEN_COLUMNS,
    PhaseRecord,
    PhaseRow,
    PowerPayload,
    TokenEnergyPayload,
    TokenPayload,
    TokenRecord,
)
from .summary import compute_summary
from .validation import finite_number

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["RunData", "now_iso"]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class RunData:
    """Everything measured in one profiled generation, live or loaded."""

    def __init__(
        self,
        *,
        run_id: str | None = None,
        created_at: str | None = None,
        model: dict[str, Any] | None = None,
        prompt: str = "",
        settings: dict[str, Any] | None = None,
        power: dict[str, Any] | None = None,
        level: str = "component",
        layer_names: list[str] | None = None,
        component_names: list[str] | None = None,
        tags: list[str] | None = None,
        experiment: str | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.created_at = created_at or now_iso()
        self.model: dict[str, Any] = model or {}
        self.prompt = prompt
        self.settings: dict[str, Any] = settings or {}
        self.power_info: dict[str, Any] = power or {}
        self.level = level
        self.tags = list(tags or [])
        self.experiment = experiment
        self.status = "pending"
        self.end_reason: str | None = None
        self.error: BaseException | None = None
        self.error_message: str | None = None
        self.prompt_tokens = 0
        self.baseline_w: float | None = None
        self.warnings: list[str] = []
        self.store_error: str | None = None  # set by the store's writer when it cannot save
        self.hooked: dict[str, Any] = {}  # registration summary from the profiler
        self.response_text = ""  # sequence 0's text (the whole response for one prompt)
        self.sequence_texts: list[str] = []  # one decoded text per sequence, set at the end
        # power columns
        self._power: dict[str, list[float]] = {k: [] for k in POWER_COLUMNS}
        self._power_phase: list[str | None] = []
        self._power_rails: list[dict[str, float]] = []  # per reading: per-device rails
        # phases and tokens
        self._phases: list[PhaseRecord] = []
        self._tokens: dict[str, list[Any]] = {k: [] for k in TOKEN_COLUMNS}
        self._token_energy_sent = 0  # tokens [0, n) already got a token_energy event
        # layers: [tokens, layers, components, metrics]
        self.layer_names: list[str] = list(layer_names or [])
        self.component_names: list[str] = list(component_names or [])
        self.metric_names: list[str] = list(METRICS)
        self._layer_rows: list[np.ndarray] = []
        self.extras: dict[str, Any] = {}  # deep / MoE arrays: name -> list per token
        self._summary: dict[str, Any] | None = None
        self._stored_summary: dict[str, Any] = {}  # as saved, for figures fixed at measurement
        self._lock = threading.RLock()
        self._events = EventBus(self._lock)
        self._done = threading.Event()
        self._cancel = threading.Event()
        # set by the profiler: take a queued run out of its queue / free its place in the queue
        self._on_cancel: Callable[[], None] | None = None
        self._release: Callable[[], None] | None = None
        self._displayed_in_cell = False  # live() showed it in the running cell (no second copy)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the generation to stop at the next token; the run keeps what it measured.

        A queued run leaves its queue and ends at once as cancelled, never started.
        """
        self._cancel.set()
        hook = self._on_cancel
        if hook is not None:
            hook()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def subscribe(self, listener: Listener, replay: bool = False) -> Callable[[], None]:
        """Call `listener(event, payload)` for every event; returns an unsubscribe function.

        With replay=True, events for what the run already holds are sent first (under the lock, so
        nothing is missed or doubled between the replay and live events).
        """
        return self._events.subscribe(listener, self._replay_events if replay else None)

    def _emit(self, event: str, payload: Any) -> None:
        self._events.emit(event, payload)

    def _replay_events(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            ("status", {"status": self.status, "reason": self.end_reason}),
            ("power_info", dict(self.power_info)),
        ]
        for rec in self.power_records():
            out.append(("power", rec))
        for ph in self._phases:
            out.append(("phase", {**ph, "state": "end" if ph["end_ms"] is not None else "start"}))
        energies = self.token_energies_j()
        for i in range(self.n_tokens):
            out.append(("token", self._token_payload(i)))
            # exactly the token_energy events already sent live; later ones follow live
            if i < self._token_energy_sent and not np.isnan(energies[i]):
                out.append(("token_energy", self._token_energy_payload(i, float(energies[i]))))
        for i, row in enumerate(self._layer_rows):
            out.append(("layers", {"index": i, "values": row}))
        if self.done:
            out.append(("done", self.summary()))
        if self.error_message:
            out.append(
                ("error", {"message": self.error_message, "type": type(self.error).__name__})
            )
        return out

    def _empty_layer_row(self) -> np.ndarray:
        return np.full(
            (len(self.layer_names), len(self.component_names), len(self.metric_names)),
            np.nan,
            dtype=np.float32,
        )

    def _token_payload(self, i: int) -> TokenPayload:
        t = self._tokens
        return {
            "index": i,
            "token_id": t["token_id"][i],
            "text": t["text"][i],
            "phase": t["phase"][i],
            "start_ms": t["start_ms"][i],
            "end_ms": t["end_ms"][i],
            "duration_ms": t["end_ms"][i] - t["start_ms"][i],
            "instrumented": t["instrumented"][i],
            "sequence": t["sequence"][i],
        }

    def _token_energy_payload(self, i: int, energy_j: float) -> TokenEnergyPayload:
        """energy_j: the token's share of its step; avg_power_w: the step's power."""
        dur_s = (self._tokens["end_ms"][i] - self._tokens["start_ms"][i]) / 1000.0
        k = int(self._step_sizes()[i])
        return {
            "index": i,
            "energy_j": energy_j,
            "avg_power_w": energy_j * k / dur_s if dur_s > 0 else None,
        }

    def _step_sizes(self) -> npt.NDArray[np.int64]:
        """Tokens chosen by each token's decoding step (`core.batch`): 1 for a single prompt."""
        return step_sizes(self._tokens["start_ms"], self._tokens["end_ms"])

    @property
    def n_sequences(self) -> int:
        """Sequences in the batch (1 for a single prompt)."""
        b = self.settings.get("batch_size")
        seqs = self._tokens["sequence"]
        n = int(b) if isinstance(b, int) and b > 0 else 1
        return max(n, 1 + max(seqs)) if seqs else n

    @property
    def texts(self) -> list[str]:
        """One decoded text per sequence of the batch; `response` is sequence 0's."""
        if self.sequence_texts:
            return list(self.sequence_texts)
        if self.n_sequences == 1:
            return [self.response_text]
        return [
            "".join(
                t
                for t, s in zip(self._tokens["text"], self._tokens["sequence"], strict=True)
                if s == b
            )
            for b in range(self.n_sequences)
        ]

    def _covered(self, i: int) -> bool:
        """Whether the power readings reach token i's end (NaN end: untimed, let callers decide)."""
        t_pw = self._power["t_ms"]
        end = self._tokens["end_ms"][i]
        return len(t_pw) >= 2 and not end > t_pw[-1]

    def _fill_modeled_energy(self, i: int) -> None:
        """energy_j (modeled) = the token's energy x the cell's share of the token's time.

        Shares are of the token's wall time, not of the hooked time, so the cells sum to the
        token's energy x coverage and the rest is `outside layers` (`core.attribution`).
        """
        if i >= self.n_tokens or i >= len(self._layer_rows) or not self._covered(i):
            return
        row = self._layer_rows[i]
        if row.size == 0:
            return
        e = float(
            self.curve().energy_between(self._tokens["start_ms"][i], self._tokens["end_ms"][i])
        )
        ti, ei = METRICS.index("time_ms"), METRICS.index("energy_j")
        token_ms = self._tokens["end_ms"][i] - self._tokens["start_ms"][i]
        if np.isnan(e):
            return
        row[:, :, ei] = cell_energy_j(row[:, :, ti], token_ms, e)

    @property
    def n_tokens(self) -> int:
        return len(self._tokens["index"])

    @property
    def response(self) -> str:
        return self.response_text

    def power_arrays(self) -> dict[str, FloatArray]:
        with self._lock:
            return {k: np.asarray(v, dtype=np.float64) for k, v in self._power.items()}

    def power_phases(self) -> list[str | None]:
        with self._lock:
            return list(self._power_phase)

    def rail_arrays(self) -> dict[str, FloatArray]:
        """The per-device rails (`gpu1_w`, `gpu1_energy_j`, ...) as columns over all readings,
        NaN where a reading lacks one; {} when no reading has any (a single-rail source)."""
        with self._lock:
            names = list(dict.fromkeys(k for r in self._power_rails for k in r))
            return {
                k: np.asarray([r.get(k, np.nan) for r in self._power_rails], dtype=np.float64)
                for k in names
            }

    def power_records(self) -> list[PowerPayload]:
        """Power readings as `core.schema.PowerPayload` dicts (READING_FIELDS plus `phase`)."""
        with self._lock:
            out: list[PowerPayload] = []
            src, kind = self.power_info.get("source"), self.power_info.get("kind")
            pw = self._power
            for i in range(len(pw["t_ms"])):
                # READING_FIELDS in their order (the rails as in RAILS), then the phase
                rec: PowerPayload = {
                    "t_ms": pw["t_ms"][i],
                    "cpu_w": none_if_nan(pw["cpu_w"][i]),
                    "gpu_w": none_if_nan(pw["gpu_w"][i]),
                    "ane_w": none_if_nan(pw["ane_w"][i]),
                    "dram_w": none_if_nan(pw["dram_w"][i]),
                    "total_w": pw["total_w"][i],
                    "energy_j": pw["energy_j"][i],
                    "source": src,
                    "kind": kind,
                    "phase": self._power_phase[i],
                }
                rails = self._power_rails[i] if i < len(self._power_rails) else None
                if rails:
                    rec["rails"] = dict(rails)
                out.append(rec)
            return out

    def curve(self) -> EnergyCurve:
        with self._lock:
            return EnergyCurve(np.asarray(self._power["t_ms"]), np.asarray(self._power["energy_j"]))

    def step_energies_j(self) -> FloatArray:
        """Each token's step energy from the curve (the token's own for a single prompt)."""
        with self._lock:
            return np.asarray(
                self.curve().energy_between(
                    np.asarray(self._tokens["start_ms"], dtype=np.float64),
                    np.asarray(self._tokens["end_ms"], dtype=np.float64),
                ),
                dtype=np.float64,
            ).reshape(-1)

    def token_energies_j(self) -> FloatArray:
        """Each token's energy: its step's, split equally among the step's tokens."""
        with self._lock:
            return self.step_energies_j() / self._step_sizes()

    def tokens(self) -> list[TokenRecord]:
        """Per-token records, energies from the cumulative curve.

        Besides time and energy: `below_resolution` (the token is shorter than the power source's
        resolution, so its energy is interpolated between readings, not resolved), and where
        layers were profiled `layers_ms` (hooked decoder-layer time), `layer_coverage`
        (layers_ms / token time) and `outside_layers_j` (the token's energy outside the layers).
        """
        with self._lock:
            step_e = self.step_energies_j()
            sizes = self._step_sizes()
            energies = step_e / sizes
            kind = self.power_info.get("kind")
            res_ms = self.resolution_ms
            ti = METRICS.index("time_ms") if "time_ms" in self.metric_names else None
            out: list[TokenRecord] = []
            for i in range(self.n_tokens):
                p = self._token_payload(i)
                # NaN: no per-token timing (non-streaming fallback)
                dur_ms: float | None = none_if_nan(p["duration_ms"])
                e = float(energies[i])
                energy_j: float | None = none_if_nan(e)
                dur_s = (dur_ms or 0.0) / 1000.0
                rec: TokenRecord = {
                    "index": p["index"],
                    "token_id": p["token_id"],
                    "text": p["text"],
                    "phase": p["phase"],
                    "start_ms": none_if_nan(p["start_ms"]),
                    "end_ms": none_if_nan(p["end_ms"]),
                    "duration_ms": dur_ms,
                    "instrumented": p["instrumented"],
                    "sequence": p["sequence"],
                    "step_tokens": int(sizes[i]),
                    "energy_j": energy_j,
                    "energy_kind": token_kind(int(sizes[i]), kind),
                    # the step's power: the rows of a batch ran together
                    "avg_power_w": None if energy_j is None or dur_s <= 0 else step_e[i] / dur_s,
                    "below_resolution": bool(
                        dur_ms is not None and res_ms is not None and dur_ms < res_ms
                    ),
                }
                if self.level != "token":
                    hooked = (
                        layers_time_ms(self._layer_rows[i][:, :, ti])
                        if ti is not None and i < len(self._layer_rows)
                        else float("nan")
                    )
                    cov = coverage(dur_ms if dur_ms is not None else float("nan"), hooked)
                    rec["layers_ms"] = none_if_nan(hooked)
                    rec["layer_coverage"] = none_if_nan(cov)
                    # of the step's energy: a step's layer row is its first token's
                    rec["outside_layers_j"] = (
                        None if np.isnan(cov) or np.isnan(e) else float(step_e[i]) * (1.0 - cov)
                    )
                out.append(rec)
            return out

    @property
    def resolution_ms(self) -> float | None:
        """The energy figures' time resolution: the source's native one or the poll interval."""
        info = self.power_info
        for key in ("resolution_ms", "interval_ms"):
            v = info.get(key)
            if isinstance(v, (int, float)) and not math.isnan(v):
                return float(v)
        return None

    def phases(self) -> list[PhaseRow]:
        """Phases with energy_j and avg_power_w from the curve (None where not covered)."""
        with self._lock:
            curve = self.curve()
            out: list[PhaseRow] = []
            for ph in self._phases:
                start, end = ph["start_ms"], ph["end_ms"]
                e = float(curve.energy_between(start, end)) if end is not None else float("nan")
                dur = None if end is None else end - start
                energy_j: float | None = none_if_nan(e)
                out.append(
                    {
                        "name": ph["name"],
                        "start_ms": start,
                        "end_ms": end,
                        "duration_ms": dur,
                        "energy_j": energy_j,
                        "avg_power_w": None if energy_j is None or not dur else e / (dur / 1e3),
                    }
                )
            return out

    @property
    def layers(self) -> np.ndarray:
        """[tokens, layers, components, metrics] float32; NaN where not measured."""
        with self._lock:
            if not self._layer_rows:
                return np.zeros(
                    (0, len(self.layer_names), len(self.component_names), len(self.metric_names)),
                    dtype=np.float32,
                )
            rows = self._layer_rows
            # bare tokens after the last instrumented one (and rows still being reduced): NaN
            missing = max(self.n_tokens - len(rows), 0)
            return np.stack(rows + [self._empty_layer_row()] * missing)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            if self._summary is not None and self.done:
                return self._summary
            s = compute_summary(self)
            if self.done:
                self._summary = s
            return s

    def stored_summary_value(self, key: str) -> Any:
        """A figure as the run's saved summary had it (None for a live run or a missing key)."""
        return self._stored_summary.get(key)

    def reprice(
        self, price_per_kwh: float | None = None, carbon_g_per_kwh: float | None = None
    ) -> dict[str, Any]:
        """Cost and CO2 at another price or carbon intensity; the run keeps them from now on.

        A run otherwise keeps the price and carbon intensity it was measured with, whatever the
        environment of whoever opens it later.
        """
        with self._lock:
            if price_per_kwh is not None:
                self.settings["price_per_kwh"] = finite_number(
                    price_per_kwh, "price_per_kwh", minimum=0.0
                )
            if carbon_g_per_kwh is not None:
                self.settings["carbon_g_per_kwh"] = finite_number(
                    carbon_g_per_kwh, "carbon_g_per_kwh", minimum=0.0
                )
            self._summary = None
            return self.summary()

    def labels(self) -> dict[str, str]:
        """For each figure family: measured / estimated / modeled."""
        kind = self.power_info.get("kind", "estimated")
        with self._lock:
            shared = bool((self._step_sizes() > 1).any())
        return {
            "power": kind,
            "energy": kind,
            "phases": kind,
            # a batched step's energy split among its tokens is a model (`core.batch`)
            "tokens": SPLIT_KIND if shared else kind,
            "timing": "measured",
            "layers.time_ms": "measured",
            "layers.energy_j": "modeled",
            "layers.outside": "modeled",
            "layers.activations": "measured",
            "cost": "modeled",
            "co2": "modeled",
            "kv_cache": "modeled",
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable; the shape of `llm-energy profile --json` and the store."""
        with self._lock:
            arr = self.layers
            values: list[Any] = nan_to_none(arr) if arr.size else []
            return {
                "run_id": self.run_id,
                "created_at": self.created_at,
                "status": self.status,
                "end_reason": self.end_reason,
                "error": self.error_message,
                "model": self.model,
                "prompt": self.prompt,
                "prompt_tokens": self.prompt_tokens,
                "response": self.response,
                "texts": self.texts,
                "settings": self.settings,
                "level": self.level,
                "tags": self.tags,
                "experiment": self.experiment,
                "power": self.power_info,
                "baseline_w": self.baseline_w,
                "warnings": self.warnings,
                "hooked": self.hooked,
                "phases": self.phases(),
                "tokens": self.tokens(),
                "power_samples": self.power_records(),
                "layers": {
                    "layer_names": self.layer_names,
                    "component_names": self.component_names,
                    "metric_names": self.metric_names,
                    "values": values,
                },
                "extras": strict_json(self.extras),
                "summary": self.summary(),
                "labels": self.labels(),
            }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild a finished Run from `to_dict()` output (store, JSON files)."""
        run = cls(
            run_id=d["run_id"],
            created_at=d.get("created_at"),
            model=d.get("model"),
            prompt=d.get("prompt", ""),
            settings=d.get("settings"),
            power=d.get("power"),
            level=d.get("level", "component"),
            layer_names=d.get("layers", {}).get("layer_names"),
            component_names=d.get("layers", {}).get("component_names"),
            tags=d.get("tags"),
            experiment=d.get("experiment"),
        )
        run.metric_names = d.get("layers", {}).get("metric_names") or list(METRICS)
        run.status = d.get("status", "completed")
        run.end_reason = d.get("end_reason")
        run.error_message = d.get("error")
        run.prompt_tokens = d.get("prompt_tokens", 0)
        run.baseline_w = d.get("baseline_w")
        run.warnings = list(d.get("warnings", []))
        run.hooked = d.get("hooked", {})
        for rec in d.get("power_samples", []):
            for k in run._power:
                v = rec.get(k)
                run._power[k].append(np.nan if v is None else float(v))
            run._power_phase.append(rec.get("phase"))
            rails = rec.get("rails")
            run._power_rails.append(
                {str(k): float(v) for k, v in rails.items() if v is not None}
                if isinstance(rails, dict)
                else {}
            )
        for ph in d.get("phases", []):
            run._phases.append(
                {"name": ph["name"], "start_ms": ph["start_ms"], "end_ms": ph["end_ms"]}
            )
        # runs saved before sampled instrumentation instrumented every token (if any level)
        every = None if run.level == "token" else True
        for tok in d.get("tokens", []):
            for k in run._tokens:
                if k == "instrumented":
                    run._tokens[k].append(tok.get(k, every))
                elif k in ("start_ms", "end_ms"):  # None: untimed (a run that could not stream)
                    run._tokens[k].append(np.nan if tok[k] is None else float(tok[k]))
                elif k == "sequence":  # runs saved before batches had one sequence
                    run._tokens[k].append(int(tok.get(k) or 0))
                else:
                    run._tokens[k].append(tok[k])
        run.response_text = d.get("response", "".join(run._tokens["text"]))
        run.sequence_texts = [str(t) for t in d.get("texts") or []]
        run._token_energy_sent = run.n_tokens
        values = d.get("layers", {}).get("values") or []
        for row in values:
            run._layer_rows.append(np.array(row, dtype=np.float32))  # None -> nan
        for i in range(len(run._layer_rows)):  # derived, so runs saved before a fix get it too
            run._fill_modeled_energy(i)
        run.extras = d.get("extras", {}) or {}
        run._stored_summary = dict(d.get("summary") or {})
        run._done.set()
        return run

    def __repr__(self) -> str:
        return (
            f"<Run {self.run_id} {self.status} model={self.model.get('name')!r} "
            f"tokens={self.n_tokens} "
            f"power={self.power_info.get('source')}/{self.power_info.get('kind')}>"
        )
