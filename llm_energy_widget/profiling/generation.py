"""One profiled run's work on its generation thread, step by step (`Generation.execute`).

Order of work: hooks attached -> warm-up (the first run on a model and generation thread only;
unmeasured) -> sampler start -> idle baseline -> tokenize -> to_device -> prefill (until the
first new token) -> decode (until the last token) -> tail (generate's wrap-up after the last
token) -> detokenize -> sampler stop (one last reading so the energy curve covers the whole run)
-> Run finished. Phases are contiguous, so tokens plus the other phases add up to the run. Hooks
and the sampler are released in `finally`, whatever happened. Every event of the run is written
through one `Recorder`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.breakdown import other_share_note
from ..core.recorder import Recorder
from ..errors import RunCancelled
from ..power.sampler import PowerSampler
from .devices import model_devices
from .sampling import TokenSampling
from .tokens import IncrementalDetokenizer, TokenClock
from .workers import WORKERS

if TYPE_CHECKING:
    from ..power.base import PowerSource
    from ..profiler import EnergyProfiler
    from ..run import Run
    from .layer_profiler import LayerProfiler

__all__ = [
    "SHORT_RUN_TOKENS",
    "WARMUP_NEW_TOKENS",
    "WARMUP_PROMPT_TOKENS",
    "Generation",
    "StepCriteria",
    "baseline_w",
    "check_cancel",
    "drop_layers",
    "mark_warm",
    "warm_up",
    "warmed_by",
]

log = logging.getLogger(__name__)

WARMUP_NEW_TOKENS = 4
"""Tokens the warm-up generates: a prefill and three decode steps, each path's first call paid."""
WARMUP_PROMPT_TOKENS = 16
"""The warm-up's prompt: the run's own last ids, at most this many (a long prompt is not paid
twice; measured on SmolLM2, a 31-token warm-up made a 47-token prefill as fast as a warm one)."""
SHORT_RUN_TOKENS = 2
"""A run that ends with the model's end token after at most this many tokens is flagged."""

_WARM_LOCK = threading.Lock()
_WARM: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()
"""model -> {(thread, level, device, dtype): what paid its one-time work there}."""


def _warm_key(model: Any, level: str) -> tuple[Any, ...]:
    return (
        threading.get_ident(),
        level,
        str(getattr(model, "device", "")),
        str(getattr(model, "dtype", "")),
    )


def mark_warm(model: Any, level: str, by: str) -> None:
    with _WARM_LOCK:
        _WARM.setdefault(model, {}).setdefault(_warm_key(model, level), by)


def warmed_by(model: Any, level: str) -> str | None:
    with _WARM_LOCK:
        return _WARM.get(model, {}).get(_warm_key(model, level))


class StepCriteria:
    """A stopping criterion: marks each token boundary, and ends generation on cancel.

    `generate` calls its stopping criteria once per decoding step, right after the step chose its
    token, on every stop-check path: the place to end a token (`TokenClock.step`).
    """

    def __init__(self, run: Run, clock: TokenClock) -> None:
        self.run = run
        self.step = clock.step

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
        self.step()
        return torch.full(
            (input_ids.shape[0],),
            self.run.cancel_requested,
            dtype=torch.bool,
            device=input_ids.device,
        )


def check_cancel(run: Run) -> None:
    if run.cancel_requested:
        raise RunCancelled("cancelled before generation")


def drop_layers(values: Any, extras: dict[str, Any]) -> None:
    """A warm-up token's layer row: reduced like a run's (first calls paid), then dropped."""


def baseline_w(sampler: PowerSampler, t0_ms: float, t1_ms: float) -> float | None:
    """Average idle power over [t0, t1], waiting briefly for the curve to cover t1."""
    deadline = time.monotonic() + 2 * sampler.interval_ms / 1000.0 + 0.5
    while (
        sampler.curve().covers_until_ms < t1_ms and time.monotonic() < deadline and sampler.running
    ):
        time.sleep(sampler.interval_ms / 4000.0)
    curve = sampler.curve()
    t1 = min(t1_ms, curve.covers_until_ms)
    if t1 <= t0_ms:
        return None
    w = curve.average_power_w(t0_ms, t1)
    return None if np.isnan(w) else w


def warm_up(
    prof: EnergyProfiler,
    run: Run,
    layer_profiler: LayerProfiler | None,
    prompt: Any,
    chat: Any,
    gen_kw: dict[str, Any],
) -> None:
    """A short unmeasured generate on this thread, hooks attached, before the sampler opens.

    The first generate of a process (and of a thread, on CUDA) pays one-time work: kernel
    selection, allocator growth, first calls through generate, the hooks and the reducer.
    Measured on SmolLM2 here: 942 ms TTFT for a first run against ~150 ms for the next
    ones. The warm-up uses the run's own last prompt ids (at most WARMUP_PROMPT_TOKENS) and
    its generation settings, with the random state restored afterwards (a seeded sampled
    run gives the same tokens with and without a warm-up).
    """
    from transformers import StoppingCriteriaList

    model = prof.model
    t0 = time.perf_counter()
    inputs = prof._encode(prompt, chat).inputs
    k = min(int(inputs["input_ids"].shape[1]), WARMUP_PROMPT_TOKENS)
    inputs = {name: t[:, -k:].to(model.device) for name, t in inputs.items()}
    kw = {
        key: v
        for key, v in gen_kw.items()
        if key not in ("max_length", "min_length", "max_new_tokens", "min_new_tokens")
        and key != "stopping_criteria"  # the user's may keep state across calls
    }
    kw.update(max_new_tokens=WARMUP_NEW_TOKENS, min_new_tokens=WARMUP_NEW_TOKENS)
    n = [0]

    def on_token(_token_ids: list[int], _t: float, taken: Any) -> None:
        n[0] += 1
        if layer_profiler is not None:  # the reducer's first calls are one-time work too
            layer_profiler.submit(taken, drop_layers)

    take = layer_profiler.take if layer_profiler is not None else None
    clock = TokenClock(on_token, lambda: 0.0, model_devices(model), take)
    stopping = StoppingCriteriaList([StepCriteria(run, clock)])
    dev = model.device
    rng = (  # the CPU state always; the accelerator's where the model samples there
        torch.random.fork_rng(devices=[dev.index or 0], device_type=dev.type)
        if dev.type in ("cuda", "mps", "xpu")
        else torch.random.fork_rng(devices=[])
    )
    with rng, torch.inference_mode():
        try:
            model.generate(**inputs, streamer=clock, stopping_criteria=stopping, **kw)
        except (TypeError, ValueError) as exc:
            if "streamer" not in str(exc):
                raise
            out = model.generate(**inputs, stopping_criteria=stopping, **kw)
            n[0] = int(out.shape[-1]) - k  # no streamer: count what it generated
    clock.discard()
    if layer_profiler is not None:
        layer_profiler.drain()
        layer_profiler.take()  # whatever the warm-up left is no token of the run
    ms = round((time.perf_counter() - t0) * 1000.0, 1)  # one value for the setting and the warning
    check_cancel(run)
    mark_warm(model, prof.level, f"the warm-up before run {run.run_id}")
    run.settings["warmup"] = {
        "tokens": n[0],
        "prompt_tokens": k,
        "duration_ms": ms,
        "counted": False,
    }
    run.warnings.append(
        f"warm-up of {n[0]} tokens ({ms:.0f} ms) before this run, not counted: one-time "
        "set-up of the model on this thread is not in its figures"
    )


@dataclass(eq=False)
class Generation:
    """One run: the profiler's settings, the run and what measures it, from start to finish.

    `execute` runs on a generation thread (`workers.WORKERS`), once.
    """

    prof: EnergyProfiler
    run: Run
    source: PowerSource
    layer_profiler: LayerProfiler | None
    prompt: Any
    chat: Any
    gen_kw: dict[str, Any]
    store: Any
    sampling: TokenSampling | None = None  # which tokens run instrumented (None: no layers)
    sampler: PowerSampler | None = field(default=None, init=False)
    detoks: list[IncrementalDetokenizer] = field(default_factory=list, init=False)  # per sequence
    finished: list[bool] = field(default_factory=list, init=False)  # per sequence: emitted its end
    _eos: set[int] = field(default_factory=set, init=False)  # the ids generate stops a row at
    step: str = field(default="start", init=False)  # what the run is doing, named on failure
    prev_ms: float | None = field(default=None, init=False)  # the last token's end
    n: int = field(default=0, init=False)  # steps streamed (-1: generate could not stream)
    _next_instrumented: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.model = self.prof.model
        self.tokenizer = self.prof.tokenizer
        self.rec = Recorder(self.run)  # the one writer of this run

    # -- the run, start to finish -------------------------------------------------------------
    def execute(self) -> None:
        """The run's steps; whatever raises, wherever (even making the sampler), the run ends
        and the model is released (`_release` in the finally)."""
        run = self.run
        status, reason, error = "completed", "generation finished", None
        try:
            self.step = "setting up the power sampler"
            self.sampler = PowerSampler(self.source, self.prof.interval_ms)
            self.step = "starting"
            self._begin()
            self.step = "measuring"
            self._start_sampler()
            self._baseline()
            inputs, t_ready = self._tokenize()
            self._generate(inputs, t_ready)
            t_gen = self._tail()
            if run.cancel_requested:
                status, reason = "cancelled", "cancelled by the user"
            self._detokenize(t_gen)
            if status == "completed":
                self._flag_short_run()
        except RunCancelled:
            status, reason = "cancelled", "cancelled by the user"
        except BaseException as exc:  # KeyboardInterrupt too: the run must still end cleanly
            where = "" if self.step == "measuring" else f" (in {self.step})"
            status, reason, error = "failed", f"{type(exc).__name__}: {exc}{where}", exc
            log.error("profiling run %s failed: %s", run.run_id, reason)
            sampler = self.sampler
            for ph in run._phases:
                if ph["end_ms"] is None and sampler is not None and sampler.t0_s is not None:
                    self.rec.phase_end(ph["name"], sampler.now_ms())
        finally:
            self._release(status, reason, error)

    # -- steps --------------------------------------------------------------------------------
    def _begin(self) -> None:
        """Status, consumers, hooks, and the warm-up when this model is cold on this thread."""
        prof, run = self.prof, self.run
        warm_by = warmed_by(self.model, prof.level)
        warming = prof.warmup and warm_by is None
        self.rec.status("running", "warm-up (not measured)" if warming else "measuring")
        prof._attach_consumers(run, self.store)
        check_cancel(run)
        if self.layer_profiler is not None:
            self.step = "attaching the hooks"
            run.hooked = self.layer_profiler.attach()
        if warming:
            self.step = "the warm-up, before measuring"
            prof._warm_up(run, self.layer_profiler, self.prompt, self.chat, self.gen_kw)
            self.rec.status("running", "measuring")
        else:
            run.settings["warmup"] = {
                "tokens": 0,
                "why_not": "warmup=False"
                if not prof.warmup
                else f"already warm on this thread: {warm_by}",
            }
        check_cancel(run)

    def _start_sampler(self) -> None:
        sampler, rec, run = self._sampler(), self.rec, self.run
        sampler.add_listener(lambda r, phase: rec.power(r.to_dict(), phase))
        sampler.add_error_listener(
            lambda exc: run.warnings.append(f"power sampling stopped: {exc}")
        )
        sampler.start()
        rec.power_info(sampler.info())  # described after opening, as opened

    def _phase(self, name: str, t_ms: float | None = None) -> float:
        """Start a phase; pass the previous phase's end so phases leave no gap."""
        sampler = self._sampler()
        sampler.phase = name
        t = sampler.now_ms() if t_ms is None else t_ms
        self.rec.phase_start(name, t)
        return t

    def _end(self, name: str, t_ms: float | None = None) -> float:
        t = self._sampler().now_ms() if t_ms is None else t_ms
        self.rec.phase_end(name, t)
        return t

    def _baseline(self) -> None:
        run, sampler = self.run, self._sampler()
        if self.prof.baseline_s > 0:
            self._phase("baseline")
            t0 = sampler.now_ms()
            run._cancel.wait(self.prof.baseline_s)  # idle; a cancel ends it at once
            t1 = self._end("baseline")
            run.baseline_w = baseline_w(sampler, t0, t1)
        check_cancel(run)

    def _tokenize(self) -> tuple[dict[str, torch.Tensor], float]:
        self._phase("tokenize")
        inputs = self.prof._encode(self.prompt, self.chat).inputs
        self._phase("to_device", self._end("tokenize"))
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        t_ready = self._end("to_device")
        check_cancel(self.run)
        return inputs, t_ready

    def _detok(self, sequence: int) -> IncrementalDetokenizer | None:
        """Sequence `sequence`'s detokenizer (each row of a batch is its own text)."""
        if self.tokenizer is None:
            return None
        while len(self.detoks) <= sequence:
            self.detoks.append(IncrementalDetokenizer(self.tokenizer))
        return self.detoks[sequence]

    def _generate_eos_ids(self) -> set[int]:
        """The end tokens `generate` stops a row at: its own eos_token_id (argument, else the
        model's generation config), not the tokenizer's, which generate does not read."""
        v = self.gen_kw.get("eos_token_id")
        if v is None:
            v = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(v, torch.Tensor):
            v = v.reshape(-1).tolist()
        return {int(x) for x in (v if isinstance(v, (list, tuple, set)) else [v]) if x is not None}

    def _running_rows(self, token_ids: list[int]) -> list[tuple[int, int]]:
        """(sequence, token id) of the rows that chose a real token this step: a row that has
        emitted its end token only pads from then on, and gets no token (nor energy)."""
        if len(self.finished) < len(token_ids):
            self.finished += [False] * (len(token_ids) - len(self.finished))
        rows = [(b, tid) for b, tid in enumerate(token_ids) if not self.finished[b]]
        for b, tid in rows:
            if tid in self._eos:
                self.finished[b] = True
        return rows

    def _on_token(self, token_ids: list[int], t: float, taken: Any) -> None:
        """One decoding step: a token for each row still running, all ending at `t`."""
        start = self.prev_ms
        if self.n == 0:
            self.rec.phase_end("prefill", t)
            self._sampler().phase = "decode"
            tok_phase = "prefill"
        else:
            if self.n == 1:  # decode starts at the first token's end, once it has one
                self.rec.phase_start("decode", start)  # type: ignore[arg-type]
            tok_phase = "decode"
        rows = []
        for b, token_id in self._running_rows(token_ids):
            detok = self._detok(b)
            rows.append((token_id, detok.push(token_id) if detok is not None else "", b))
        lp = self.layer_profiler
        instrumented = None if lp is None else taken is not None  # None taken: a bare token
        indices = self.rec.step_tokens(rows, tok_phase, start, t, instrumented)  # type: ignore[arg-type]
        self.prev_ms = t
        self.n += 1
        if lp is not None and taken is not None and indices:  # the step's row: its first token's
            lp.submit(taken, functools.partial(self._deliver_layers, indices[0]))

    def _take(self) -> Any:
        """At a token boundary, before its timestamp: the ending token's measurements (None for
        a bare one); before a bare token, the instrumentation out of the call path and the
        reducer idle, in the ending token's time."""
        lp, sampling = self.layer_profiler, self.sampling
        assert lp is not None
        taken = lp.take() if lp.armed else None
        if sampling is not None:
            self._next_instrumented = sampling.decide()
            if not self._next_instrumented and lp.armed:
                lp.disarm()
                lp.settle()
        return taken

    def _after_end(self) -> None:
        """After the boundary: the instrumentation back for an instrumented token, in its time."""
        if self._next_instrumented and self.layer_profiler is not None:
            self.layer_profiler.arm()

    def _deliver_layers(self, index: int, values: Any, extras: dict[str, Any]) -> None:
        """A token's layer row, from the reducer thread (in token order)."""
        self.rec.layers(index, values)
        for name, value in extras.items():
            self.rec.extra(name, index, value)

    def _generate(self, inputs: dict[str, torch.Tensor], t_ready: float) -> None:
        """Prefill and decode: generate, with a token boundary at each step."""
        from transformers import StoppingCriteriaList

        run, gen_kw, lp = self.run, self.gen_kw, self.layer_profiler
        self._eos = self._generate_eos_ids()
        take = self._take if lp is not None else None
        after = self._after_end if self.sampling is not None and not self.sampling.all else None
        devs = model_devices(self.model)  # a token ends when every device the model is on is done
        clock = TokenClock(self._on_token, self._sampler().now_ms, devs, take, after)
        stopping = StoppingCriteriaList(list(gen_kw.pop("stopping_criteria", []) or []))
        stopping.append(StepCriteria(run, clock))
        self.prev_ms = self._phase("prefill", t_ready)
        if lp is not None:
            lp.arm()  # the prefill is instrumented
        if self.sampling is not None:
            self.sampling.start()
        with torch.inference_mode():
            try:
                self.model.generate(**inputs, streamer=clock, stopping_criteria=stopping, **gen_kw)
            except (TypeError, ValueError) as exc:
                if "streamer" not in str(exc) or run.n_tokens:
                    raise
                self.prev_ms = self._generate_without_stream(inputs, stopping, exc)
                self.n = -1  # tokens without times: prefill ended when generate did
        clock.discard()  # the deferred path's undone step is no token
        if run.n_tokens:
            mark_warm(self.model, self.prof.level, f"run {run.run_id}")

    def _generate_without_stream(
        self, inputs: dict[str, torch.Tensor], stopping: Any, cause: BaseException
    ) -> float:
        """Fallback for models whose generate cannot stream: tokens get no per-token timing.

        Returns when prefill ended: when generate returned (no decode phase, an empty tail).
        """
        msg = (
            f"this model's generate() cannot stream tokens ({cause}); per-token timing and "
            "energy are unavailable for this run (phases and totals are still measured)"
        )
        log.warning("%s", msg)
        self.run.warnings.append(msg)
        out = self.model.generate(**inputs, stopping_criteria=stopping, **self.gen_kw)
        t = self._sampler().now_ms()
        self.rec.phase_end("prefill", t)
        nan = float("nan")
        eos = self._generate_eos_ids()
        for b in range(int(out.shape[0])):
            new_ids = out[b, inputs["input_ids"].shape[1] :].tolist()
            cut = next((k + 1 for k, x in enumerate(new_ids) if x in eos), len(new_ids))
            detok = self._detok(b)
            for k, token_id in enumerate(new_ids[:cut] if out.shape[0] > 1 else new_ids):
                text = detok.push(token_id) if detok is not None else ""
                phase = "prefill" if k == 0 else "decode"
                armed = None if self.layer_profiler is None else True  # never disarmed: no steps
                self.rec.token(token_id, text, phase, nan, nan, armed, sequence=b)
        return t

    def _tail(self) -> float:
        """End prefill/decode, then time the tail; returns when generate's work ended."""
        # prefill/decode end with the last token; generate's wrap-up after it (and the
        # deferred path's undone step) is the tail, so they hold exactly their tokens' energy
        t_last: float | None
        if self.n == 0:  # no token streamed: all of generate was prefill
            t_last = self._end("prefill")
        elif self.n > 1:
            t_last = self._end("decode", self.prev_ms)
        else:
            t_last = self.prev_ms  # prefill already ended at the first token
        self._phase("tail", t_last)
        return self._end("tail")

    def _detokenize(self, t_gen: float) -> None:
        run = self.run
        self._phase("detokenize", t_gen)
        texts = []
        for b, detok in enumerate(self.detoks):
            held = detok.flush()
            last = [i for i, s in enumerate(run._tokens["sequence"]) if s == b]
            if held and last:
                self.rec.token_text(last[-1], run._tokens["text"][last[-1]] + held)
            texts.append(str(self.tokenizer.decode(detok.ids, skip_special_tokens=True)))
        if texts:
            run.response_text = texts[0]
            if len(texts) > 1:
                run.sequence_texts = texts
        self._end("detokenize")

    def _flag_short_run(self) -> None:
        short = self._short_run_warning()
        if short:
            log.warning("run %s: %s", self.run.run_id, short)
            self.run.warnings.append(short)

    def _release(self, status: str, reason: str, error: BaseException | None) -> None:
        """Hooks off, sampler stopped, this thread freed, the run finished (in that order)."""
        run, lp, sampler = self.run, self.layer_profiler, self.sampler
        try:
            if lp is not None:
                try:
                    lp.detach()  # waits for the tokens still being reduced
                except Exception as exc:  # never mask the run's own outcome
                    log.error("removing hooks failed: %s", exc)
                    run.warnings.append(f"removing the hooks failed: {exc}")
                run.warnings.extend(f"layer profiling: {e}" for e in lp.errors)
                if lp.level != "layer":  # components that miss much of the layer: said so
                    note = other_share_note(
                        run.layers, run.component_names, run.hooked.get("discovered_by")
                    )
                    if note:
                        run.warnings.append(note)
            if sampler is not None:
                try:
                    sampler.stop()  # closes the source: a close() that raises must not wedge
                except Exception as exc:
                    log.error("stopping the power sampler failed: %s", exc)
                    run.warnings.append(f"closing the power source failed: {exc}")
                end = sampler.end_info()  # the estimate's exclusions and the machine load
                if lp is not None:
                    end["reducer_cpu_s"] = lp.reducer_cpu_s
                self.rec.power_info(end)
                # a stall or an abandoned source: said on the run, and the figures' resolution
                # is the worst gap, not the poll interval
                run.warnings.extend(sampler.warnings)
                worst_ms = sampler.worst_resolution_ms
                if run.resolution_ms is not None and worst_ms > run.resolution_ms:
                    self.rec.power_info({"resolution_ms": worst_ms})
                if sampler.error is not None and status == "completed":
                    reason = f"generation finished; power sampling stopped early: {sampler.error}"
        finally:
            try:
                WORKERS.free_this_thread()  # the next run may come to this thread
            finally:
                self.rec.finish(status, reason, error)  # frees its queue place, wakes waiters

    # -- helpers ------------------------------------------------------------------------------
    def _sampler(self) -> PowerSampler:
        assert self.sampler is not None, "execute() makes the sampler"
        return self.sampler

    def _end_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for v in (
            self.gen_kw.get("eos_token_id"),
            getattr(getattr(self.model, "generation_config", None), "eos_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            for x in v if isinstance(v, (list, tuple, set)) else [v]:
                if isinstance(x, int):
                    ids.add(x)
        return ids

    def _short_run_warning(self) -> str | None:
        """Why a run that ended with the model's end token after <= 2 tokens probably did."""
        run = self.run
        n = run.n_tokens
        if not 1 <= n <= SHORT_RUN_TOKENS:
            return None
        last = int(run._tokens["token_id"][-1])
        if last not in self._end_token_ids():
            return None
        name = repr(run._tokens["text"][-1]) if run._tokens["text"][-1] else f"id {last}"
        head = f"the model ended after {n} token{'s' if n > 1 else ''} with its end token {name}"
        applied = bool(run.settings.get("chat_template"))
        if applied:
            return (
                f"{head}, although its chat template was applied: the prompt may ask for no "
                "answer; reword it, or pass min_new_tokens= to force a longer one"
            )
        if self.prof._has_chat_template():
            how = "chat=False" if run.settings.get("chat") is False else "input ids"
            return (
                f"{head}: a chat model given a raw prompt ({how})? Pass chat=True (--chat in "
                "the CLI) or chat messages, so the prompt goes through its chat template"
            )
        return (
            f"{head}: this model may read the prompt as a finished text; end it with an open "
            "sentence, or pass min_new_tokens= to force a longer answer"
        )
