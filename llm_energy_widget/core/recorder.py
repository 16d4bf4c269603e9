"""The only writer of a run: every producer call goes through here, under the run's lock.

The profiler's generation and sampler threads call these methods; each one updates the run's
columns and emits the matching event (`core.schema.EVENTS`), so a consumer sees every change once
and in order. Modeled layer energy is derived here as soon as the energy curve covers a token.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .run import RunData
from .schema import TOKEN_COLUMNS, PhaseRecord
from .summary import compute_summary

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    """Writes to one run (cheap to make: it holds only the run)."""

    def __init__(self, run: RunData) -> None:
        self.run = run

    def status(self, status: str, reason: str | None = None) -> None:
        r = self.run
        with r._lock:
            r.status = status
            if reason is not None:
                r.end_reason = reason
            r._emit("status", {"status": status, "reason": r.end_reason})

    def power(self, rec: dict[str, Any], phase: str | None) -> None:
        r = self.run
        with r._lock:
            for k in r._power:
                v = rec.get(k)
                r._power[k].append(np.nan if v is None else float(v))
            r._power_phase.append(phase)
            r._power_rails.append(dict(rec.get("rails") or {}))
            r._emit("power", {**rec, "phase": phase})
            self._flush_token_energies()

    def power_info(self, info: dict[str, Any]) -> None:
        """What the source chose when it opened (NVML's power fallback, RAPL's zones, its
        resolution): known only after open, so the run's power info is completed here."""
        r = self.run
        with r._lock:
            r.power_info.update(info)
            r._summary = None  # its resolution and scope come from here
            r._emit("power_info", dict(r.power_info))

    def phase_start(self, name: str, t_ms: float) -> None:
        r = self.run
        with r._lock:
            ph: PhaseRecord = {"name": name, "start_ms": t_ms, "end_ms": None}
            r._phases.append(ph)
            r._emit("phase", {**ph, "state": "start"})

    def phase_end(self, name: str, t_ms: float) -> None:
        r = self.run
        with r._lock:
            for ph in reversed(r._phases):
                if ph["name"] == name and ph["end_ms"] is None:
                    ph["end_ms"] = t_ms
                    r._emit("phase", {**ph, "state": "end"})
                    return

    def token(
        self,
        token_id: int,
        text: str,
        phase: str,
        start_ms: float,
        end_ms: float,
        instrumented: bool | None = None,
        sequence: int = 0,
    ) -> int:
        return self.step_tokens(
            [(int(token_id), text, sequence)], phase, start_ms, end_ms, instrumented
        )[0]

    def step_tokens(
        self,
        tokens: list[tuple[int, str, int]],
        phase: str,
        start_ms: float,
        end_ms: float,
        instrumented: bool | None = None,
    ) -> list[int]:
        """The (token id, text, sequence) tokens one decoding step chose, recorded together.

        Under one lock hold, so no token's energy is sent before its step's other tokens are
        recorded (the step's energy is split among them, `core.batch`)."""
        r = self.run
        with r._lock:
            out: list[int] = []
            for token_id, text, sequence in tokens:
                i = len(r._tokens["index"])
                row = (
                    i, int(token_id), text, phase, float(start_ms), float(end_ms),
                    instrumented, int(sequence),
                )  # fmt: skip
                for k, v in zip(TOKEN_COLUMNS, row, strict=True):
                    r._tokens[k].append(v)
                if sequence == 0:
                    r.response_text += text
                out.append(i)
            for i in out:
                r._emit("token", r._token_payload(i))
            self._flush_token_energies()
            return out

    def token_text(self, index: int, text: str) -> None:
        """Late text for a token (incremental detokenization may hold bytes back)."""
        r = self.run
        with r._lock:
            r._tokens["text"][index] = text
            r.response_text = "".join(
                t for t, s in zip(r._tokens["text"], r._tokens["sequence"], strict=True) if s == 0
            )

    def layers(self, index: int, values: np.ndarray) -> None:
        """One token's [layers, components, metrics] (float32, NaN where not measured)."""
        r = self.run
        with r._lock:
            while len(r._layer_rows) < index:
                r._layer_rows.append(r._empty_layer_row())
            arr = np.asarray(values, dtype=np.float32)
            if len(r._layer_rows) == index:
                r._layer_rows.append(arr)
            else:
                r._layer_rows[index] = arr
            r._fill_modeled_energy(index)
            r._emit("layers", {"index": index, "values": r._layer_rows[index]})

    def load_layer_rows(self, rows: list[np.ndarray | None]) -> None:
        """Rows of a stored run (None: no row for that token); modeled energy derived anew."""
        r = self.run
        with r._lock:
            r._layer_rows = [r._empty_layer_row() if row is None else row for row in rows]
            for i in range(len(r._layer_rows)):
                r._fill_modeled_energy(i)

    def extra(self, name: str, index: int, value: Any) -> None:
        r = self.run
        with r._lock:
            rows = r.extras.setdefault(name, [])
            while len(rows) <= index:
                rows.append(None)
            rows[index] = value

    def finish(self, status: str, reason: str, error: BaseException | None = None) -> None:
        """Close the run; whatever goes wrong here, waiters are released (done is always set)."""
        r = self.run
        try:
            with r._lock:
                if error is not None:
                    r.error = error
                    r.error_message = f"{type(error).__name__}: {error}"
                self._flush_token_energies()
                r.warnings.extend(r._events.failure_warnings())
                for i in range(len(r._layer_rows)):
                    r._fill_modeled_energy(i)
                self.status(status, reason)
                if error is not None:
                    r._emit("error", {"message": r.error_message, "type": type(error).__name__})
                try:
                    summary = r._summary = compute_summary(r)
                except Exception as exc:  # keep the data even if a derived figure breaks
                    log.exception("summary failed for run %s", r.run_id)
                    r.warnings.append(f"summary could not be computed: {exc}")
                    r._summary, summary = None, {"status": status}
                r._emit("done", summary)
        finally:
            release, r._release = r._release, None
            if release is not None:  # the next queued run may start before wait() returns
                try:
                    release()
                except Exception:
                    log.exception("run %s: freeing its place in the queue failed", r.run_id)
            r._done.set()  # last: wait() returns only after every event was sent

    def _flush_token_energies(self) -> None:
        """Send token_energy for tokens the energy curve now covers (in order)."""
        r = self.run
        n = r.n_tokens
        if r._token_energy_sent >= n or not r._covered(r._token_energy_sent):
            return  # cheap exit on the generation thread's hot path: no curve to build
        curve = r.curve()
        sizes = r._step_sizes()
        while r._token_energy_sent < n:
            i = r._token_energy_sent
            if r._tokens["end_ms"][i] > curve.covers_until_ms:
                break
            e = curve.energy_between(r._tokens["start_ms"][i], r._tokens["end_ms"][i]) / sizes[i]
            r._token_energy_sent += 1
            if not np.isnan(e):
                r._emit("token_energy", r._token_energy_payload(i, float(e)))
                if i < len(r._layer_rows):
                    r._fill_modeled_energy(i)
                    r._emit("layers", {"index": i, "values": r._layer_rows[i]})

    def store_error(self, message: str, path: str) -> None:
        """The run could not be (fully) stored: said on the run, so the widget and CLI show it."""
        r = self.run
        with r._lock:
            r.warnings.append(message)
            r.store_error = message
            r._emit("store_error", {"message": message, "path": path})
