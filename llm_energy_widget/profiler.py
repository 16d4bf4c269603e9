"""EnergyProfiler: runs `generate` on a background thread while power is sampled, and fills a Run.

Order of work in a run: (queued until the runs ahead of it end) -> hooks attached -> warm-up
(the first run on a model and generation thread only; unmeasured) -> sampler start -> idle
baseline -> tokenize -> to_device -> prefill (until the first new token) -> decode (until the
last token) -> tail (generate's wrap-up after the last token) -> detokenize -> sampler stop (one
last reading so the energy curve covers the whole run) -> Run finished. Phases are contiguous, so
tokens plus the other phases add up to the run. Hooks and the sampler are released in `finally`,
whatever happened.
"""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .core.recorder import Recorder
from .core.schema import LEVELS
from .core.summary import env_carbon_g_per_kwh, env_price_per_kwh
from .core.validation import finite_number
from .errors import InvalidInputError, RunCancelled, RunError
from .power.base import PowerSource
from .power.sampler import PowerSampler
from .profiling.tokens import IncrementalDetokenizer, TokenClock
from .run import Run

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64
WARMUP_NEW_TOKENS = 4
"""Tokens the warm-up generates: a prefill and three decode steps, each path's first call paid."""
WARMUP_PROMPT_TOKENS = 16
"""The warm-up's prompt: the run's own last ids, at most this many (a long prompt is not paid
twice; measured on SmolLM2, a 31-token warm-up made a 47-token prefill as fast as a warm one)."""
SHORT_RUN_TOKENS = 2
"""A run that ends with the model's end token after at most this many tokens is flagged."""
CHAT_CHOICES = ("auto", True, False)


class _Worker:
    """One generation thread, its own job queue, and whether a started run holds it."""

    def __init__(self, n: int, work: Callable[[_Worker], None]) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self.held = False  # a started run is on it (until it frees its place in the queue)
        self.last_model: weakref.ref[Any] | None = None
        self.thread = threading.Thread(target=work, args=(self,), name=f"lew-generate-{n}")
        self.thread.daemon = True


class _GenerationThreads:
    """Long-lived daemon threads that run `generate`, reused from run to run.

    A thread's first `generate` on CUDA pays per-thread set-up on every decode step (measured on an
    H200: 19 tok/s in a fresh thread against 96 on the main thread, 91 on the same thread's second
    run), and this profiler's warm-up is per thread too, so a run goes to the thread that last
    ran its model when that thread is free, else to any free thread; a thread starts only when
    every thread holds a run (runs allowed to overlap, `overlap=True`). A thread is free as soon
    as its run has ended, before its last frame is freed: the next job waits those microseconds
    in its queue. Daemon threads: a stuck `generate` never blocks exit.
    """

    def __init__(self) -> None:
        self._workers: list[_Worker] = []
        self._local = threading.local()  # on a worker thread: `worker`
        self._busy = 0  # threads inside a job (its frame and tensors not yet freed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, model: Any, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` for a run on `model` on a free thread, preferring `model`'s last."""
        with self._lock:
            free = [w for w in self._workers if not w.held]
            mine = [w for w in free if w.last_model is not None and w.last_model() is model]
            candidates = mine or free
            worker = candidates[0] if candidates else None
            if worker is None:
                worker = _Worker(len(self._workers) + 1, self._work)
                self._workers.append(worker)
                worker.thread.start()
            worker.held = True
            worker.last_model = weakref.ref(model)
        worker.jobs.put((fn, args))

    def free_this_thread(self) -> None:
        """Called by a run as it ends, on its thread: the next run may be given this thread."""
        worker = getattr(self._local, "worker", None)
        if worker is not None:
            with self._lock:
                worker.held = False

    def _work(self, worker: _Worker) -> None:
        self._local.worker = worker
        while True:
            fn, args = worker.jobs.get()
            with self._lock:
                self._busy += 1
            try:
                fn(*args)
            except BaseException:  # _execute handles its own errors; never let a worker die
                log.exception("generation worker: unexpected error")
            finally:
                del fn, args  # the job's tensors go while the interpreter is alive
                with self._lock:
                    worker.held = False  # (already, unless the job failed before its end)
                    self._busy -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no thread is inside a job; False if `timeout_s` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout_s)


_WORKERS = _GenerationThreads()
EXIT_WAIT_S = 10.0


_EXIT_HOOK: list[bool] = []


def _hook_exit() -> None:
    """Register `_end_runs_at_exit` once, after the store writer's own exit hook: exit hooks
    run last-registered first, so runs end (cancelled, kept) before the writers flush them."""
    if _EXIT_HOOK:
        return
    from .store import writer as _writer  # noqa: F401  (registers its exit hook first)

    atexit.register(_end_runs_at_exit)
    _EXIT_HOOK.append(True)


def _end_runs_at_exit() -> None:
    """At interpreter exit: cancel what is still running or queued, and let the threads finish.

    A daemon thread still freeing tensors when the interpreter finalizes is killed inside
    torch's C++ code and the process aborts ("terminate called without an active exception",
    exit status 134); it happened here after about one in fifteen profiled scripts, a run's
    last frame being freed just after wait() returned. Runs still going are cancelled (they
    keep what they measured) and the threads get up to EXIT_WAIT_S to wind down.
    """
    for run in _QUEUE.pending():
        run.cancel()
    if not _WORKERS.wait_idle(EXIT_WAIT_S):
        log.warning("profiling threads still busy at exit after %.0f s", EXIT_WAIT_S)


class _Ticket:
    """A run's place in the queue: what it may not overlap with, and how to start it."""

    def __init__(
        self,
        run: Run,
        model: Any,
        source: PowerSource,
        overlap: bool,
        start: Callable[[], None],
    ) -> None:
        self.run = run
        self.model = model
        self.source = source
        self.overlap = overlap
        self.start = start
        self.started = False
        self.ahead = -1  # runs ahead of it when its status was last set

    def conflicts(self, other: _Ticket) -> bool:
        """Two runs may not overlap on one model or one source object, or when either forbids it."""
        return (
            self.model is other.model
            or self.source is other.source
            or not (self.overlap and other.overlap)
        )


class _RunQueue:
    """The profiled runs of this process, in the order they were submitted.

    A run starts once no earlier run it conflicts with (`_Ticket.conflicts`) is running or
    queued, so conflicting runs start in submission order; a waiting run's status is `queued` with
    reason "queued, N ahead", updated as the runs ahead end. A re-entrant lock: status listeners
    run under it (so statuses arrive in order) and may start or cancel runs themselves.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tickets: list[_Ticket] = []

    def submit(self, ticket: _Ticket) -> None:
        with self._lock:
            self._tickets.append(ticket)
            self._advance()

    def release(self, ticket: _Ticket) -> None:
        """A started run has ended: the next ones may start."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
            self._advance()

    def withdraw(self, ticket: _Ticket) -> bool:
        """Take a run that has not started out of the queue; False once it has started."""
        with self._lock:
            if ticket.started or ticket not in self._tickets:
                return False
            self._tickets.remove(ticket)
            self._advance()
            return True

    def pending(self) -> list[Run]:
        """Runs started and not yet ended, then the queued ones."""
        with self._lock:
            return [t.run for t in self._tickets]

    def _advance(self) -> None:
        for i, ticket in enumerate(self._tickets):
            if ticket.started:
                continue
            ahead = [t for t in self._tickets[:i] if t.conflicts(ticket)]
            if not ahead:
                ticket.started = True
                _flag_overlap(ticket, [t for t in self._tickets if t.started and t is not ticket])
                ticket.start()
            elif len(ahead) != ticket.ahead:
                ticket.ahead = len(ahead)
                Recorder(ticket.run).status("queued", f"queued, {len(ahead)} ahead")


def _flag_overlap(ticket: _Ticket, running: list[_Ticket]) -> None:
    """Runs allowed to overlap (`overlap=True`) that do overlap: say so on both."""
    for other in running:
        for a, b in ((ticket, other), (other, ticket)):
            a.run.warnings.append(
                f"ran at the same time as run {b.run.run_id} ({_model_name(b.model)}): its energy "
                "figures include that run's work too, unless each run's power source covers only "
                "its own model's device (different GPUs, each with NVML restricted to its own)"
            )


_QUEUE = _RunQueue()

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


def _mark_warm(model: Any, level: str, by: str) -> None:
    with _WARM_LOCK:
        _WARM.setdefault(model, {}).setdefault(_warm_key(model, level), by)


def _warmed_by(model: Any, level: str) -> str | None:
    with _WARM_LOCK:
        return _WARM.get(model, {}).get(_warm_key(model, level))


class _Encoded(NamedTuple):
    inputs: dict[str, torch.Tensor]
    text: str  # the prompt as the user gave it (template markup only for chat messages)
    chat_template: bool  # whether the tokenizer's chat template was applied
    sent: str | None  # the text as tokenized, where the template changed it


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
    warmup: before the first run on a model and generation thread (at this level, device and
        dtype), generate a few unmeasured tokens with the hooks attached, so one-time work
        (kernel and allocator set-up, first calls of generate and of the hooks) is not in the
        first run's figures; `run.settings["warmup"]` says what ran and how long.
    overlap: False (the default): a run waits for every other profiled run of this process,
        whatever its model, because every power source here also counts the other run's work
        (the same CPU cores and counter; NVML sums all visible GPUs). True: wait only for runs
        on the same model or power source object, and for runs whose profiler forbids overlap.
        That is safe only for models on different GPUs, each profiled with NVML restricted to
        its own device; overlapping runs are flagged in `run.warnings`.
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
        warmup: bool = True,
        overlap: bool = False,
    ) -> None:
        _check_causal_lm(model)
        if level not in LEVELS:
            raise InvalidInputError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
        if not isinstance(interval_ms, (int, float)) or interval_ms <= 0:
            raise InvalidInputError(f"interval_ms must be a positive number, got {interval_ms!r}")
        if not isinstance(baseline_s, (int, float)) or baseline_s < 0:
            raise InvalidInputError(f"baseline_s must be >= 0 seconds, got {baseline_s!r}")
        for name, flag in (("warmup", warmup), ("overlap", overlap)):
            if not isinstance(flag, bool):
                raise InvalidInputError(f"{name} must be True or False, got {flag!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.power = power
        self.level = level
        self.interval_ms = float(interval_ms)
        self.baseline_s = float(baseline_s)
        self.store = store
        self.tags = list(tags or [])
        self.experiment = experiment
        self.warmup = warmup
        self.overlap = overlap
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
        """A widget that shows this profiler's runs live: display it, then call generate().

        It follows each run as it starts (a queued run shows in its own widget, `run.widget()`).
        """
        from .view.widget import EnergyWidget

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
    def _has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _encode(self, prompt: Any, chat: Any = "auto") -> _Encoded:
        """Input ids (+ attention mask) and the prompt as text; specific errors for bad input.

        A plain string goes through the tokenizer's chat template (as one user message, with
        the assistant's turn opened) when `chat` is True, or "auto" and the tokenizer has one:
        an instruct model given raw text often answers with its end token at once.
        """
        if not any(chat is c for c in CHAT_CHOICES):
            raise InvalidInputError(f'chat must be "auto", True or False; got {chat!r}')
        tok = self.tokenizer
        if isinstance(prompt, torch.Tensor) or (
            isinstance(prompt, (list, tuple)) and prompt and all(isinstance(x, int) for x in prompt)
        ):
            if chat is True:
                raise InvalidInputError(
                    "chat=True applies the chat template to text; input ids are sent as given "
                    "(pass the text or chat messages instead, or chat='auto')"
                )
            ids = prompt if isinstance(prompt, torch.Tensor) else torch.tensor([list(prompt)])
            ids = ids if ids.dim() == 2 else ids.reshape(1, -1)
            if ids.numel() == 0:
                raise InvalidInputError("input_ids is empty")
            text = tok.decode(ids[0]) if tok is not None else f"<{ids.shape[1]} input ids>"
            return _Encoded(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, text, False, None
            )
        if tok is None:
            raise InvalidInputError(
                "a tokenizer is needed to profile a text prompt or chat messages: "
                "EnergyProfiler(model, tokenizer) (or pass input_ids as a tensor)"
            )
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InvalidInputError("the prompt is empty")
            if chat is True and not self._has_chat_template():
                raise InvalidInputError(
                    "chat=True, but this tokenizer has no chat template: pass chat=False to send "
                    "the prompt as plain text"
                )
            if chat is False or not self._has_chat_template():
                enc = tok(prompt, return_tensors="pt")
                return _Encoded(_ids_and_mask(enc), prompt, False, None)
            inputs, sent = self._apply_template([{"role": "user", "content": prompt}])
            return _Encoded(inputs, prompt, True, sent)
        if (
            isinstance(prompt, (list, tuple))
            and prompt
            and all(isinstance(m, dict) for m in prompt)
        ):
            if not any(str(m.get("content", "")).strip() for m in prompt):
                raise InvalidInputError("the chat messages have no content")
            if chat is False:
                raise InvalidInputError(
                    "chat=False sends text as it is, but chat messages need the chat template: "
                    "pass chat='auto' (or a plain string with chat=False)"
                )
            if not self._has_chat_template():
                raise InvalidInputError(
                    "this tokenizer has no chat template: pass a plain text prompt"
                )
            inputs, sent = self._apply_template(list(prompt))
            return _Encoded(inputs, sent, True, sent)
        raise InvalidInputError(
            "prompt must be a non-empty string, a list of chat messages "
            f"({{'role', 'content'}} dicts), or input ids; got {type(prompt).__name__}"
        )

    def _apply_template(
        self, messages: list[dict[str, Any]]
    ) -> tuple[dict[str, torch.Tensor], str]:
        tok = self.tokenizer
        enc = tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return _ids_and_mask(enc), str(text)

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
        chat: bool | str = "auto",
        tags: Sequence[str] | None = None,
        experiment: str | None = None,
        store: Any = None,
        settings: dict[str, Any] | None = None,
        **generate_kwargs: Any,
    ) -> Run:
        """Start profiled generation on a background thread and return its Run at once.

        prompt: text, chat messages ({"role", "content"} dicts) or input ids.
        chat: "auto" (the default) sends a text prompt through the tokenizer's chat template
            when it has one; True requires the template; False sends the text as it is.
            `run.prompt` keeps your text, `run.settings["chat_template"]` says what was applied.
        settings: your own keys added to `run.settings` (e.g. a sweep's grid point), stored with it.

        While another profiled run is going on (see `overlap`), the run waits its turn: status
        "queued", reason "queued, N ahead"; `run.wait()` works on it and `run.cancel()` takes
        it out of the queue.
        """
        from .power import get_source

        enc = self._encode(prompt, chat)
        n_prompt = int(enc.inputs["input_ids"].shape[1])
        gen_kw = self._check_generate_kwargs(generate_kwargs, n_prompt)
        source = get_source(self.power)
        store_obj = self._resolve_store(store)
        layer_profiler = None
        if self.level != "token":
            from .profiling.layer_profiler import LayerProfiler

            layer_profiler = LayerProfiler(self.model, self.level)  # hooks attach when it starts
        run = Run(
            model={"name": _model_name(self.model), "features": self.model_features()},
            prompt=enc.text,
            settings={
                "generate_kwargs": _jsonable_kwargs(gen_kw),
                "max_new_tokens": gen_kw.get("max_new_tokens"),
                "interval_ms": self.interval_ms,
                "baseline_s": self.baseline_s,
                "batch_size": int(enc.inputs["input_ids"].shape[0]),
                "device": str(self.model.device),
                "dtype": str(getattr(self.model, "dtype", "")).replace("torch.", ""),
                "chat": chat,
                "chat_template": enc.chat_template,
                **({"prompt_sent": enc.sent} if enc.sent is not None else {}),
                # fixed at measurement: a stored run is never re-priced by a viewer's env
                "price_per_kwh": self.price_per_kwh
                if self.price_per_kwh is not None
                else env_price_per_kwh(),
                "carbon_g_per_kwh": self.carbon_g_per_kwh
                if self.carbon_g_per_kwh is not None
                else env_carbon_g_per_kwh(),
                **(settings or {}),
            },
            # completed by the sampler's info() once the source is open (Recorder.power_info)
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
        run.hooked = {"level": "token", "hooks": 0} if layer_profiler is None else {}
        run.prompt_tokens = n_prompt
        if store_obj is not None:
            run.store_path = str(store_obj.path)  # type: ignore[attr-defined]
        ticket = _Ticket(
            run,
            self.model,
            source,
            self.overlap,
            lambda: _WORKERS.submit(
                self.model,
                self._execute,
                run,
                source,
                layer_profiler,
                prompt,
                chat,
                gen_kw,
                store_obj,
            ),
        )
        run._on_cancel = functools.partial(_cancel_queued, ticket)
        run._release = functools.partial(_QUEUE.release, ticket)
        self.runs.append(run)
        _hook_exit()
        _QUEUE.submit(ticket)
        return run

    def _resolve_store(self, store_arg: Any) -> Any:
        """The Store to record into (opened now, so a bad store is an error here, not later)."""
        store_choice = self.store if store_arg is None else store_arg
        try:
            from .store import resolve_store
        except ImportError:  # pragma: no cover - store not installed
            return None
        return resolve_store(store_choice)

    def _attach_consumers(self, run: Run, store: Any) -> None:
        """At the run's start: the store records it, and this profiler's widgets follow it."""
        if store is not None:
            run.store_writer = store.record(run)  # type: ignore[attr-defined]
        for w in self._widgets:
            w.attach(run)

    def _execute(
        self,
        run: Run,
        source: PowerSource,
        layer_profiler: Any,
        prompt: Any,
        chat: Any,
        gen_kw: dict[str, Any],
        store: Any,
    ) -> None:
        sampler = PowerSampler(source, self.interval_ms)
        status, reason, error = "completed", "generation finished", None
        state: dict[str, Any] = {"prev_ms": None, "n": 0, "step": "start"}
        detok = IncrementalDetokenizer(self.tokenizer) if self.tokenizer is not None else None
        try:
            warm_by = _warmed_by(self.model, self.level)
            warming = self.warmup and warm_by is None
            Recorder(run).status("running", "warm-up (not measured)" if warming else "measuring")
            self._attach_consumers(run, store)
            self._check_cancel(run)
            if layer_profiler is not None:
                state["step"] = "attaching the hooks"
                run.hooked = layer_profiler.attach()
            if warming:
                state["step"] = "the warm-up, before measuring"
                self._warm_up(run, layer_profiler, prompt, chat, gen_kw)
                Recorder(run).status("running", "measuring")
            else:
                run.settings["warmup"] = {
                    "tokens": 0,
                    "why_not": "warmup=False"
                    if not self.warmup
                    else f"already warm on this thread: {warm_by}",
                }
            self._check_cancel(run)
            state["step"] = "measuring"
            sampler.add_listener(lambda rec, phase: Recorder(run).power(rec.to_dict(), phase))
            sampler.add_error_listener(
                lambda exc: run.warnings.append(f"power sampling stopped: {exc}")
            )
            sampler.start()
            Recorder(run).power_info(sampler.info())  # described after opening, as opened

            def phase(name: str, t_ms: float | None = None) -> float:
                """Start a phase; pass the previous phase's end so phases leave no gap."""
                sampler.phase = name
                t = sampler.now_ms() if t_ms is None else t_ms
                Recorder(run).phase_start(name, t)
                return t

            def end(name: str, t_ms: float | None = None) -> float:
                t = sampler.now_ms() if t_ms is None else t_ms
                Recorder(run).phase_end(name, t)
                return t

            if self.baseline_s > 0:
                phase("baseline")
                t0 = sampler.now_ms()
                run._cancel.wait(self.baseline_s)  # idle; a cancel ends it at once
                t1 = end("baseline")
                run.baseline_w = _baseline_w(sampler, t0, t1)
            self._check_cancel(run)

            phase("tokenize")
            inputs = self._encode(prompt, chat).inputs
            phase("to_device", end("tokenize"))
            inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
            t_ready = end("to_device")
            self._check_cancel(run)

            def on_token(token_id: int, t: float, taken: Any) -> None:
                start = state["prev_ms"]
                if state["n"] == 0:
                    Recorder(run).phase_end("prefill", t)
                    sampler.phase = "decode"
                    tok_phase = "prefill"
                else:
                    if state["n"] == 1:  # decode starts at the first token's end, once it has one
                        Recorder(run).phase_start("decode", start)
                    tok_phase = "decode"
                text = detok.push(token_id) if detok is not None else ""
                i = Recorder(run).token(token_id, text, tok_phase, start, t)
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
            if run.n_tokens:
                _mark_warm(self.model, self.level, f"run {run.run_id}")
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
                    Recorder(run).token_text(run.n_tokens - 1, run.tokens()[-1]["text"] + held)
                ids = detok.ids
                run.response_text = str(self.tokenizer.decode(ids, skip_special_tokens=True))
            end("detokenize")
            if status == "completed":
                short = self._short_run_warning(run, gen_kw)
                if short:
                    log.warning("run %s: %s", run.run_id, short)
                    run.warnings.append(short)
        except RunCancelled:
            status, reason = "cancelled", "cancelled by the user"
        except BaseException as exc:  # KeyboardInterrupt too: the run must still end cleanly
            where = "" if state["step"] == "measuring" else f" (in {state['step']})"
            status, reason, error = "failed", f"{type(exc).__name__}: {exc}{where}", exc
            log.error("profiling run %s failed: %s", run.run_id, reason)
            for ph in run._phases:
                if ph["end_ms"] is None and sampler.t0_s is not None:
                    Recorder(run).phase_end(ph["name"], sampler.now_ms())
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
            _WORKERS.free_this_thread()  # the next run may come to this thread
            Recorder(run).finish(
                status, reason, error
            )  # frees its place in the queue, then wakes waiters

    def _warm_up(
        self, run: Run, layer_profiler: Any, prompt: Any, chat: Any, gen_kw: dict[str, Any]
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

        t0 = time.perf_counter()
        inputs = self._encode(prompt, chat).inputs
        k = min(int(inputs["input_ids"].shape[1]), WARMUP_PROMPT_TOKENS)
        inputs = {name: t[:, -k:].to(self.model.device) for name, t in inputs.items()}
        kw = {
            key: v
            for key, v in gen_kw.items()
            if key not in ("max_length", "min_length", "max_new_tokens", "min_new_tokens")
            and key != "stopping_criteria"  # the user's may keep state across calls
        }
        kw.update(max_new_tokens=WARMUP_NEW_TOKENS, min_new_tokens=WARMUP_NEW_TOKENS)
        n = [0]

        def on_token(_token_id: int, _t: float, taken: Any) -> None:
            n[0] += 1
            if layer_profiler is not None:  # the reducer's first calls are one-time work too
                layer_profiler.submit(taken, _drop_layers)

        take = layer_profiler.take if layer_profiler is not None else None
        clock = TokenClock(on_token, lambda: 0.0, self.model.device, take)
        stopping = StoppingCriteriaList([_StepCriteria(run, clock)])
        dev = self.model.device
        rng = (  # the CPU state always; the accelerator's where the model samples there
            torch.random.fork_rng(devices=[dev.index or 0], device_type=dev.type)
            if dev.type in ("cuda", "mps", "xpu")
            else torch.random.fork_rng(devices=[])
        )
        with rng, torch.inference_mode():
            try:
                self.model.generate(**inputs, streamer=clock, stopping_criteria=stopping, **kw)
            except (TypeError, ValueError) as exc:
                if "streamer" not in str(exc):
                    raise
                self.model.generate(**inputs, stopping_criteria=stopping, **kw)
        clock.discard()
        if layer_profiler is not None:
            layer_profiler.drain()
            layer_profiler.take()  # whatever the warm-up left is no token of the run
        ms = (time.perf_counter() - t0) * 1000.0
        self._check_cancel(run)
        _mark_warm(self.model, self.level, f"the warm-up before run {run.run_id}")
        run.settings["warmup"] = {
            "tokens": n[0],
            "prompt_tokens": k,
            "duration_ms": round(ms, 1),
            "counted": False,
        }
        run.warnings.append(
            f"warm-up of {n[0]} tokens ({ms:.0f} ms) before this run, not counted: one-time "
            "set-up of the model on this thread is not in its figures"
        )

    def _end_token_ids(self, gen_kw: dict[str, Any]) -> set[int]:
        ids: set[int] = set()
        for v in (
            gen_kw.get("eos_token_id"),
            getattr(getattr(self.model, "generation_config", None), "eos_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            for x in v if isinstance(v, (list, tuple, set)) else [v]:
                if isinstance(x, int):
                    ids.add(x)
        return ids

    def _short_run_warning(self, run: Run, gen_kw: dict[str, Any]) -> str | None:
        """Why a run that ended with the model's end token after <= 2 tokens probably did."""
        n = run.n_tokens
        if not 1 <= n <= SHORT_RUN_TOKENS:
            return None
        last = int(run._tokens["token_id"][-1])
        if last not in self._end_token_ids(gen_kw):
            return None
        name = repr(run._tokens["text"][-1]) if run._tokens["text"][-1] else f"id {last}"
        head = f"the model ended after {n} token{'s' if n > 1 else ''} with its end token {name}"
        applied = bool(run.settings.get("chat_template"))
        if applied:
            return (
                f"{head}, although its chat template was applied: the prompt may ask for no "
                "answer; reword it, or pass min_new_tokens= to force a longer one"
            )
        if self._has_chat_template():
            how = "chat=False" if run.settings.get("chat") is False else "input ids"
            return (
                f"{head}: a chat model given a raw prompt ({how})? Pass chat=True (--chat in "
                "the CLI) or chat messages, so the prompt goes through its chat template"
            )
        return (
            f"{head}: this model may read the prompt as a finished text; end it with an open "
            "sentence, or pass min_new_tokens= to force a longer answer"
        )

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
        Recorder(run).phase_end("prefill", t)
        new_ids = out[0, inputs["input_ids"].shape[1] :].tolist()
        nan = float("nan")
        for k, token_id in enumerate(new_ids):
            text = detok.push(token_id) if detok is not None else ""
            Recorder(run).token(token_id, text, "prefill" if k == 0 else "decode", nan, nan)
        return t

    @staticmethod
    def _check_cancel(run: Run) -> None:
        if run.cancel_requested:
            raise RunCancelled("cancelled before generation")


def _deliver_layers(run: Run, index: int, values: Any, extras: dict[str, Any]) -> None:
    """A token's layer row, from the reducer thread (in token order)."""
    Recorder(run).layers(index, values)
    for name, value in extras.items():
        Recorder(run).extra(name, index, value)


def _drop_layers(values: Any, extras: dict[str, Any]) -> None:
    """A warm-up token's layer row: reduced like a run's (first calls paid), then dropped."""


def _ids_and_mask(enc: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _cancel_queued(ticket: _Ticket) -> None:
    """`run.cancel()` on a queued run: out of the queue, cancelled at once, nothing opened.

    A run that has started stops at its next token instead (its cancel flag is set).
    """
    if ticket.started or not _QUEUE.withdraw(ticket):
        return
    run = ticket.run
    run.settings["warmup"] = {"tokens": 0, "why_not": "the run never started"}
    Recorder(run).finish(
        "cancelled", "cancelled while queued: it never started, nothing was measured"
    )


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
    "warmup",
    "overlap",
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
    """Start profiling and display its live widget at once; returns the Run without waiting.

    The widget is displayed here, wherever the call is in the cell, so the returned Run
    displays nothing more in the same cell (`w = lew.live(...); w` shows one widget) and
    shows the same widget again in a later cell. Keywords go to EnergyProfiler (power, level,
    warmup, ...) or to generate (chat, max_new_tokens, ...).
    """
    from IPython.display import display

    if prompt is None:
        raise InvalidInputError("live() needs a prompt")
    model, tokenizer = _model_or_default(model, tokenizer)
    prof_kw, gen_kw = _split_kwargs(dict(kw))
    run = EnergyProfiler(model, tokenizer, **prof_kw).generate(prompt, **gen_kw)
    display(run.widget())
    _hide_in_this_cell(run)
    return run


def _hide_in_this_cell(run: Run) -> None:
    """Until the running cell ends, displaying `run` shows nothing (it is already shown)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "events"):
        return
    run._displayed_in_cell = True

    def cell_ended(*_args: Any) -> None:
        run._displayed_in_cell = False
        shell.events.unregister("post_run_cell", cell_ended)

    shell.events.register("post_run_cell", cell_ended)
