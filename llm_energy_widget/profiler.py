"""EnergyProfiler: runs `generate` on a background thread while power is sampled, and fills a Run.

Order of work in a run: sampler start -> idle baseline -> tokenize -> to_device -> prefill
(until the first new token) -> decode (until the last token) -> tail (generate's wrap-up after
the last token) -> detokenize -> sampler stop (one last reading so the energy curve covers the
whole run) -> Run finished. Phases are contiguous, so tokens plus the other phases add up to the
run. Hooks and the sampler are released in `finally`, whatever happened.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .core.validation import finite_number
from .errors import ConcurrentRunError, InvalidInputError, RunCancelled, RunError
from .power.base import PowerSource
from .power.sampler import PowerSampler
from .profiling.tokens import IncrementalDetokenizer, TokenClock
from .run import LEVELS, Run
from .summary import env_carbon_g_per_kwh, env_price_per_kwh

log = logging.getLogger(__name__)

_ACTIVE_LOCK = threading.Lock()
_ACTIVE: dict[int, str] = {}  # id(model) -> run_id of the run profiling it

DEFAULT_MAX_NEW_TOKENS = 64


class _GenerationThreads:
    """Long-lived daemon threads that run `generate`, reused from run to run.

    A thread's first `generate` on CUDA pays per-thread set-up on every decode step (measured on an
    H200: 19 tok/s in a fresh thread against 96 on the main thread, 91 on the same thread's second
    run), so a new thread per run would slow every run. Runs on different models may overlap, so a
    new thread starts when none is idle. Daemon threads: a stuck `generate` never blocks exit.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)
        self._count = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._jobs.put((fn, args))
        if self._idle.acquire(timeout=0):
            return  # an idle worker takes it
        with self._lock:
            self._count += 1
            threading.Thread(
                target=self._work, name=f"lew-generate-{self._count}", daemon=True
            ).start()

    def _work(self) -> None:
        while True:
            fn, args = self._jobs.get()
            try:
                fn(*args)
            except BaseException:  # _execute handles its own errors; never let a worker die
                log.exception("generation worker: unexpected error")
            self._idle.release()


_WORKERS = _GenerationThreads()


def _model_name(model: Any) -> str:
    cfg = getattr(model, "config", None)
    for attr in ("_llm_energy_name", "name_or_path", "_name_or_path"):
        v = getattr(cfg, attr, None)
        if v:
            return str(v)
    return type(model).__name__


def _check_causal_lm(model: Any) -> None:
    cfg = getattr(model, "config", None)
    can_generate = getattr(model, "can_generate", None)
    if (
        cfg is None
        or not callable(getattr(model, "generate", None))
        or not isinstance(model, torch.nn.Module)
    ):
        raise InvalidInputError(
            "expected a Hugging Face causal LM (e.g. AutoModelForCausalLM), "
            f"got {type(model).__name__}"
        )
    if getattr(cfg, "is_encoder_decoder", False) or (callable(can_generate) and not can_generate()):
        raise InvalidInputError(
            f"{type(model).__name__} is not a decoder-only causal LM; "
            "load it with AutoModelForCausalLM"
        )


def _jsonable_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(
            isinstance(x, (str, int, float, bool)) for x in v
        ):
            out[k] = list(v)
        else:
            out[k] = repr(v)
    return out


class _StepCriteria:
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


class EnergyProfiler:
    """Profile text generation of a causal LM: energy per phase, token and layer x component.

    power: "auto", a source name ("estimate", "nvml", "rapl", "powermetrics", "macmon"),
        "replay:PATH", "powermetrics:PATH", or a PowerSource object.
    level: "token" (power, phases, tokens), "layer" (+ time per decoder layer), "component"
        (+ time and activation statistics per component), "deep" (+ attention and MLP internals).
    store: True (the default run store), False (don't save), a path, or a Store.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        power: str | PowerSource = "auto",
        level: str = "component",
        interval_ms: float = 100.0,
        baseline_s: float = 1.0,
        store: Any = True,
        tags: Sequence[str] | None = None,
        experiment: str | None = None,
        price_per_kwh: float | None = None,
        carbon_g_per_kwh: float | None = None,
    ) -> None:
        _check_causal_lm(model)
        if level not in LEVELS:
            raise InvalidInputError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
        if not isinstance(interval_ms, (int, float)) or interval_ms <= 0:
            raise InvalidInputError(f"interval_ms must be a positive number, got {interval_ms!r}")
        if not isinstance(baseline_s, (int, float)) or baseline_s < 0:
            raise InvalidInputError(f"baseline_s must be >= 0 seconds, got {baseline_s!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.power = power
        self.level = level
        self.interval_ms = float(interval_ms)
        self.baseline_s = float(baseline_s)
        self.store = store
        self.tags = list(tags or [])
        self.experiment = experiment
        self.price_per_kwh = (
            None if price_per_kwh is None else finite_number(price_per_kwh, "price_per_kwh", 0.0)
        )
        self.carbon_g_per_kwh = (
            None
            if carbon_g_per_kwh is None
            else finite_number(carbon_g_per_kwh, "carbon_g_per_kwh", 0.0)
        )
        self.runs: list[Run] = []
        self._widgets: list[Any] = []
        self._features: dict[str, Any] | None = None

    # -- consumers --------------------------------------------------------------------------------
    def widget(self) -> Any:
        """A widget that shows this profiler's runs live: display it, then call generate()."""
        from .widget import EnergyWidget

        w = EnergyWidget(self.runs[-1] if self.runs else None)
        self._widgets.append(w)
        return w

    @property
    def last_run(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def model_features(self) -> dict[str, Any]:
        if self._features is None:
            try:
                from .profiling.features import model_features

                q = getattr(self.model.config, "_llm_energy_quantization", None)
                self._features = model_features(self.model, quantization=q)
            except Exception as exc:  # features are descriptive; never block a run for them
                log.warning("could not describe the model: %s", exc)
                self._features = {"architecture": type(self.model).__name__}
        return self._features

    # -- input checks -----------------------------------------------------------------------------
    def _encode(self, prompt: Any) -> tuple[dict[str, torch.Tensor], str]:
        """Input ids (+ attention mask) and the prompt as text; specific errors for bad input."""
        tok = self.tokenizer
        if isinstance(prompt, torch.Tensor):
            ids = prompt if prompt.dim() == 2 else prompt.reshape(1, -1)
            if ids.numel() == 0:
                raise InvalidInputError("input_ids is empty")
            text = tok.decode(ids[0]) if tok is not None else f"<{ids.shape[1]} input ids>"
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, text
        if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(x, int) for x in prompt):
            return self._encode(torch.tensor([list(prompt)]))
        if tok is None:
            raise InvalidInputError(
                "a tokenizer is needed to profile a text prompt or chat messages: "
                "EnergyProfiler(model, tokenizer) (or pass input_ids as a tensor)"
            )
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InvalidInputError("the prompt is empty")
            enc = tok(prompt, return_tensors="pt")
            return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}, prompt
        if (
            isinstance(prompt, (list, tuple))
            and prompt
            and all(isinstance(m, dict) for m in prompt)
        ):
            if not any(str(m.get("content", "")).strip() for m in prompt):
                raise InvalidInputError("the chat messages have no content")
            if getattr(tok, "chat_template", None) is None:
                raise InvalidInputError(
                    "this tokenizer has no chat template: pass a plain text prompt"
                )
            enc = tok.apply_chat_template(
                list(prompt), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            text = tok.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
            return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}, str(text)
        raise InvalidInputError(
            "prompt must be a non-empty string, a list of chat messages "
            f"({{'role', 'content'}} dicts), or input ids; got {type(prompt).__name__}"
        )

    def _context_length(self) -> int | None:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            v = getattr(cfg, attr, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    def _check_generate_kwargs(self, kw: dict[str, Any], n_prompt: int) -> dict[str, Any]:
        kw = dict(kw)
        if "max_new_tokens" not in kw and "max_length" not in kw:
            kw["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        mnt = kw.get("max_new_tokens")
        if mnt is not None and (not isinstance(mnt, int) or isinstance(mnt, bool) or mnt <= 0):
            raise InvalidInputError(f"max_new_tokens must be a positive integer, got {mnt!r}")
        ctx = self._context_length()
        if ctx is not None and n_prompt >= ctx:
            raise InvalidInputError(
                f"the prompt is {n_prompt} tokens, longer than the model's context of {ctx} tokens"
            )
        if ctx is not None and mnt is not None and n_prompt + mnt > ctx:
            kw["max_new_tokens"] = ctx - n_prompt
            log.warning("max_new_tokens cut to %d to fit the %d-token context", ctx - n_prompt, ctx)
        for reserved in ("streamer",):
            if reserved in kw:
                raise InvalidInputError(f"{reserved!r} is set by the profiler and cannot be passed")
        if self.tokenizer is not None and kw.get("pad_token_id") is None:
            gen_cfg = getattr(self.model, "generation_config", None)
            if (
                getattr(gen_cfg, "pad_token_id", None) is None
                and self.tokenizer.eos_token_id is not None
            ):
                kw["pad_token_id"] = self.tokenizer.eos_token_id
        return kw

    # -- running ----------------------------------------------------------------------------------
    def generate(
        self,
        prompt: Any,
        *,
        tags: Sequence[str] | None = None,
        experiment: str | None = None,
        store: Any = None,
        settings: dict[str, Any] | None = None,
        **generate_kwargs: Any,
    ) -> Run:
        """Start profiled generation on a background thread and return its Run at once.

        `settings` adds your own keys to `run.settings` (e.g. a sweep's grid point), stored with it.
        """
        from .power import get_source

        inputs, prompt_text = self._encode(prompt)
        n_prompt = int(inputs["input_ids"].shape[1])
        gen_kw = self._check_generate_kwargs(generate_kwargs, n_prompt)
        with _ACTIVE_LOCK:
            busy = _ACTIVE.get(id(self.model))
            if busy is not None:
                raise ConcurrentRunError(
                    f"run {busy} is still profiling this model; wait for it (run.wait()) or "
                    "cancel it (run.cancel()) before starting another"
                )
            _ACTIVE[id(self.model)] = "starting"
        layer_profiler = None
        try:
            source = get_source(self.power)
            if self.level != "token":
                from .profiling.hooks import LayerProfiler

                layer_profiler = LayerProfiler(self.model, self.level)
                hooked = layer_profiler.attach()
            else:
                hooked = {"level": "token", "hooks": 0}
            run = Run(
                model={"name": _model_name(self.model), "features": self.model_features()},
                prompt=prompt_text,
                settings={
                    "generate_kwargs": _jsonable_kwargs(gen_kw),
                    "max_new_tokens": gen_kw.get("max_new_tokens"),
                    "interval_ms": self.interval_ms,
                    "baseline_s": self.baseline_s,
                    "batch_size": int(inputs["input_ids"].shape[0]),
                    "device": str(self.model.device),
                    "dtype": str(getattr(self.model, "dtype", "")).replace("torch.", ""),
                    # fixed at measurement: a stored run is never re-priced by a viewer's env
                    "price_per_kwh": self.price_per_kwh
                    if self.price_per_kwh is not None
                    else env_price_per_kwh(),
                    "carbon_g_per_kwh": self.carbon_g_per_kwh
                    if self.carbon_g_per_kwh is not None
                    else env_carbon_g_per_kwh(),
                    **(settings or {}),
                },
                # completed by the sampler's info() once the source is open (_record_power_info)
                power={
                    "source": source.name,
                    "kind": source.kind,
                    "scope": source.scope,
                    "interval_ms": self.interval_ms,
                    "resolution_ms": max(self.interval_ms, source.native_interval_ms or 0.0),
                    "power_window_ms": source.power_window_ms,
                    "description": source.describe(),
                },
                level=self.level,
                layer_names=list(layer_profiler.layer_names) if layer_profiler else [],
                component_names=list(layer_profiler.component_names) if layer_profiler else [],
                tags=list(tags if tags is not None else self.tags),
                experiment=experiment if experiment is not None else self.experiment,
            )
            run.hooked = hooked
            run.prompt_tokens = n_prompt
            with _ACTIVE_LOCK:
                _ACTIVE[id(self.model)] = run.run_id
            self._attach_consumers(run, store)
        except BaseException:
            if layer_profiler is not None:
                layer_profiler.detach()
            with _ACTIVE_LOCK:
                _ACTIVE.pop(id(self.model), None)
            raise
        self.runs.append(run)
        _WORKERS.submit(self._execute, run, source, layer_profiler, prompt, gen_kw)
        return run

    def _attach_consumers(self, run: Run, store_arg: Any) -> None:
        store_choice = self.store if store_arg is None else store_arg
        try:
            from .store import resolve_store
        except ImportError:  # pragma: no cover - store not installed
            resolve_store = None  # type: ignore[assignment]
        if resolve_store is not None:
            store = resolve_store(store_choice)
            if store is not None:
                run.store_writer = store.record(run)  # type: ignore[attr-defined]
                run.store_path = str(store.path)  # type: ignore[attr-defined]
        for w in self._widgets:
            w.attach(run)

    def _execute(
        self,
        run: Run,
        source: PowerSource,
        layer_profiler: Any,
        prompt: Any,
        gen_kw: dict[str, Any],
    ) -> None:
        sampler = PowerSampler(source, self.interval_ms)
        status, reason, error = "completed", "generation finished", None
        state: dict[str, Any] = {"prev_ms": None, "n": 0}  # last token's end, tokens so far
        detok = IncrementalDetokenizer(self.tokenizer) if self.tokenizer is not None else None
        try:
            sampler.add_listener(lambda rec, phase: run._record_power(rec.to_dict(), phase))
            sampler.add_error_listener(
                lambda exc: run.warnings.append(f"power sampling stopped: {exc}")
            )
            run._record_status("running")
            sampler.start()
            run._record_power_info(sampler.info())  # described after opening, as opened

            def phase(name: str, t_ms: float | None = None) -> float:
                """Start a phase; pass the previous phase's end so phases leave no gap."""
                sampler.phase = name
                t = sampler.now_ms() if t_ms is None else t_ms
                run._record_phase_start(name, t)
                return t

            def end(name: str, t_ms: float | None = None) -> float:
                t = sampler.now_ms() if t_ms is None else t_ms
                run._record_phase_end(name, t)
                return t

            if self.baseline_s > 0:
                phase("baseline")
                t0 = sampler.now_ms()
                time.sleep(self.baseline_s)
                t1 = end("baseline")
                run.baseline_w = _baseline_w(sampler, t0, t1)
            self._check_cancel(run)

            phase("tokenize")
            inputs, _ = self._encode(prompt)
            phase("to_device", end("tokenize"))
            inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
            t_ready = end("to_device")
            self._check_cancel(run)

            def on_token(token_id: int, t: float, taken: Any) -> None:
                start = state["prev_ms"]
                if state["n"] == 0:
                    run._record_phase_end("prefill", t)
                    sampler.phase = "decode"
                    tok_phase = "prefill"
                else:
                    if state["n"] == 1:  # decode starts at the first token's end, once it has one
                        run._record_phase_start("decode", start)
                    tok_phase = "decode"
                text = detok.push(token_id) if detok is not None else ""
                i = run._record_token(token_id, text, tok_phase, start, t)
                state["prev_ms"] = t
                state["n"] += 1
                if layer_profiler is not None:
                    layer_profiler.submit(taken, functools.partial(_deliver_layers, run, i))

            from transformers import StoppingCriteriaList

            take = layer_profiler.take if layer_profiler is not None else None
            clock = TokenClock(on_token, sampler.now_ms, self.model.device, take)
            stopping = StoppingCriteriaList(list(gen_kw.pop("stopping_criteria", []) or []))
            stopping.append(_StepCriteria(run, clock))
            state["prev_ms"] = phase("prefill", t_ready)
            with torch.inference_mode():
                try:
                    self.model.generate(
                        **inputs, streamer=clock, stopping_criteria=stopping, **gen_kw
                    )
                except (TypeError, ValueError) as exc:
                    if "streamer" not in str(exc) or run.n_tokens:
                        raise
                    state["prev_ms"] = self._generate_without_stream(
                        run, inputs, stopping, gen_kw, detok, sampler, exc
                    )
                    state["n"] = -1  # tokens without times: prefill ended when generate did
            clock.discard()  # the deferred path's undone step is no token
            # prefill/decode end with the last token; generate's wrap-up after it (and the
            # deferred path's undone step) is the tail, so they hold exactly their tokens' energy
            if state["n"] == 0:  # no token streamed: all of generate was prefill
                t_last = end("prefill")
            elif state["n"] > 1:
                t_last = end("decode", state["prev_ms"])
            else:
                t_last = state["prev_ms"]  # prefill already ended at the first token
            phase("tail", t_last)
            t_gen = end("tail")
            if run.cancel_requested:
                status, reason = "cancelled", "cancelled by the user"

            phase("detokenize", t_gen)
            if detok is not None:
                held = detok.flush()
                if held and run.n_tokens:
                    run._record_token_text(run.n_tokens - 1, run.tokens()[-1]["text"] + held)
                ids = detok.ids
                run.response_text = str(self.tokenizer.decode(ids, skip_special_tokens=True))
            end("detokenize")
        except RunCancelled:
            status, reason = "cancelled", "cancelled by the user"
        except BaseException as exc:  # KeyboardInterrupt too: the run must still end cleanly
            status, reason, error = "failed", f"{type(exc).__name__}: {exc}", exc
            log.error("profiling run %s failed: %s", run.run_id, reason)
            for ph in run._phases:
                if ph["end_ms"] is None and sampler.t0_s is not None:
                    run._record_phase_end(ph["name"], sampler.now_ms())
        finally:
            if layer_profiler is not None:
                try:
                    layer_profiler.detach()  # waits for the tokens still being reduced
                except Exception as exc:  # never mask the run's own outcome
                    log.error("removing hooks failed: %s", exc)
                run.warnings.extend(f"layer profiling: {e}" for e in layer_profiler.errors)
            sampler.stop()
            if sampler.error is not None and status == "completed":
                reason = f"generation finished; power sampling stopped early: {sampler.error}"
            with _ACTIVE_LOCK:
                _ACTIVE.pop(id(self.model), None)
            run._finish(status, reason, error)

    def _generate_without_stream(
        self,
        run: Run,
        inputs: dict[str, torch.Tensor],
        stopping: Any,
        gen_kw: dict[str, Any],
        detok: IncrementalDetokenizer | None,
        sampler: PowerSampler,
        cause: BaseException,
    ) -> float:
        """Fallback for models whose generate cannot stream: tokens get no per-token timing.

        Returns when prefill ended: when generate returned (no decode phase, an empty tail).
        """
        msg = (
            f"this model's generate() cannot stream tokens ({cause}); per-token timing and "
            "energy are unavailable for this run (phases and totals are still measured)"
        )
        log.warning("%s", msg)
        run.warnings.append(msg)
        out = self.model.generate(**inputs, stopping_criteria=stopping, **gen_kw)
        t = sampler.now_ms()
        run._record_phase_end("prefill", t)
        new_ids = out[0, inputs["input_ids"].shape[1] :].tolist()
        nan = float("nan")
        for k, token_id in enumerate(new_ids):
            text = detok.push(token_id) if detok is not None else ""
            run._record_token(token_id, text, "prefill" if k == 0 else "decode", nan, nan)
        return t

    @staticmethod
    def _check_cancel(run: Run) -> None:
        if run.cancel_requested:
            raise RunCancelled("cancelled before generation")


def _deliver_layers(run: Run, index: int, values: Any, extras: dict[str, Any]) -> None:
    """A token's layer row, from the reducer thread (in token order)."""
    run._record_layers(index, values)
    for name, value in extras.items():
        run._record_extra(name, index, value)


def _baseline_w(sampler: PowerSampler, t0_ms: float, t1_ms: float) -> float | None:
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


_PROFILER_KW = (
    "power",
    "level",
    "interval_ms",
    "baseline_s",
    "store",
    "tags",
    "experiment",
    "price_per_kwh",
    "carbon_g_per_kwh",
)


def _split_kwargs(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    prof = {k: kw.pop(k) for k in list(kw) if k in _PROFILER_KW}
    return prof, kw


def _model_or_default(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    if model is not None:
        return model, tokenizer
    from .models import load_default_model

    default_model, default_tok = load_default_model()
    return default_model, tokenizer or default_tok


def profile(model: Any = None, tokenizer: Any = None, prompt: Any = None, **kw: Any) -> Run:
    """Blocking one-liner: profile one generation (the default model when `model` is omitted)."""
    if prompt is None:
        raise InvalidInputError("profile() needs a prompt")
    model, tokenizer = _model_or_default(model, tokenizer)
    prof_kw, gen_kw = _split_kwargs(dict(kw))
    run = EnergyProfiler(model, tokenizer, **prof_kw).generate(prompt, **gen_kw)
    try:
        run.wait()
    except KeyboardInterrupt:
        run.cancel()
        run.wait(30)
        raise
    writer = getattr(run, "store_writer", None)
    if writer is not None:
        writer.wait(10)  # the finished run is on disk when profile() returns
    if run.status == "failed" and run.error is not None:
        raise RunError(f"profiling failed: {run.error_message}") from run.error
    return run


def live(model: Any = None, tokenizer: Any = None, prompt: Any = None, **kw: Any) -> Run:
    """Display a live widget and start profiling in one call (returns the Run at once)."""
    from IPython.display import display

    if prompt is None:
        raise InvalidInputError("live() needs a prompt")
    model, tokenizer = _model_or_default(model, tokenizer)
    prof_kw, gen_kw = _split_kwargs(dict(kw))
    profiler = EnergyProfiler(model, tokenizer, **prof_kw)
    display(profiler.widget())
    return profiler.generate(prompt, **gen_kw)
