"""EnergyProfiler (the API: settings, input checks, encoding), profile() and live().

`generate` checks and encodes the input, makes the Run and queues it (`profiling.run_queue`);
when its turn comes a generation thread (`profiling.workers`) runs it step by step
(`profiling.generation.Generation`, where the order of work in a run is described).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from .core.schema import LEVELS
from .core.summary import env_carbon_g_per_kwh, env_price_per_kwh
from .core.validation import check_experiment, check_tags, finite_number
from .errors import InvalidInputError, RunError
from .power.base import PowerSource
from .profiling.devices import cuda_indices, model_devices
from .profiling.features import machine_description, model_name
from .profiling.generation import Generation, warm_up
from .profiling.inputs import (
    batch_kind,
    check_attention_mask,
    check_generate_kwargs,
    check_input_ids,
    check_messages,
    pad_left,
    padding_id,
)
from .profiling.run_queue import QUEUE, Ticket, cancel_queued
from .profiling.sampling import sampling_from
from .profiling.workers import WORKERS, hook_exit
from .run import Run

__all__ = [
    "CHAT_CHOICES",
    "DEFAULT_MAX_NEW_TOKENS",
    "RUNS_KEPT",
    "EnergyProfiler",
    "check_settings",
    "live",
    "profile",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64
RUNS_KEPT = 100
"""`EnergyProfiler.runs` keeps this many recent runs in memory (a sweep of thousands would
otherwise hold every power trace and layer array); older ones stay in the store."""
CHAT_CHOICES = ("auto", True, False)


class _Encoded(NamedTuple):
    inputs: dict[str, torch.Tensor]
    text: str  # the prompt as the user gave it (template markup only for chat messages)
    chat_template: bool  # whether the tokenizer's chat template was applied
    sent: str | None  # the text as tokenized, where the template changed it
    texts: tuple[str, ...] = ()  # each prompt of a batch as given (empty: one prompt)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens the model reads: all rows' unpadded tokens (padding excluded)."""
        return int(self.inputs["attention_mask"].sum())


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


def check_settings(
    *,
    level: str = "component",
    interval_ms: float = 100.0,
    baseline_s: float = 1.0,
    tags: Sequence[str] | None = None,
    experiment: str | None = None,
    warmup: bool = True,
    overlap: bool = False,
    sample: int | str | None = None,
    overhead_budget: float | None = None,
    power_devices: str | Sequence[int] = "model",
) -> None:
    """The profiler's settings that need no model, checked (the CLI calls it before loading
    one, so a typo fails in milliseconds, not after the load)."""
    _check_power_devices(power_devices)
    if level not in LEVELS:
        raise InvalidInputError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    # NaN passes `<= 0`: a NaN interval hung every later run on the model (fault suite)
    if finite_number(interval_ms, "interval_ms") <= 0:
        raise InvalidInputError(f"interval_ms must be a positive number, got {interval_ms!r}")
    finite_number(baseline_s, "baseline_s (seconds)", 0.0)
    if tags is not None:
        check_tags(tags)
    check_experiment(experiment)
    for name, flag in (("warmup", warmup), ("overlap", overlap)):
        if not isinstance(flag, bool):
            raise InvalidInputError(f"{name} must be True or False, got {flag!r}")
    sampling_from(sample, overhead_budget)  # a bad value is an error here, not in the run


def _check_power_devices(power_devices: Any) -> str | list[int]:
    """ "model", "all", or a non-empty list of GPU indices (NVML's), else a clear error."""
    if isinstance(power_devices, str) and power_devices in ("model", "all"):
        return power_devices
    if (
        isinstance(power_devices, (list, tuple))
        and power_devices
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in power_devices)
    ):
        return list(power_devices)
    raise InvalidInputError(
        'power_devices must be "model", "all" or a non-empty list of GPU indices >= 0, '
        f"got {power_devices!r}"
    )


def _count_devices(source: PowerSource, power_devices: str | list[int], model: Any) -> None:
    """Tell a per-device source (NVML) which GPUs this run is charged for."""
    count = getattr(source, "count_gpus", None)
    if callable(count):
        count(power_devices, cuda_indices(model_devices(model)))
    elif isinstance(power_devices, list):
        raise InvalidInputError(
            f"power_devices={power_devices} chooses GPUs, but the power source "
            f"{source.name!r} measures no GPUs one by one (use power='nvml')"
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
    sample / overhead_budget: which tokens run with the layer instrumentation
        (`profiling.sampling`). Neither (the default): an overhead budget of 0.5 %, the rate
        chosen from this run's own slowdown of instrumented tokens against bare ones;
        overhead_budget=0.05: the same with 5 %; sample=k: the prefill and every k-th decode
        token; sample="all": every token (the figures then carry the profiler's overhead).
        Bare tokens run at plain speed and carry the headline figures (J/token, tokens/s);
        `run.tokens()[i]["instrumented"]` says which ran instrumented.
    power_devices: which GPUs NVML charges the run for: "model" (the default: the GPUs the model
        occupies, `profiling.devices`; the others are listed in `run.power_info` as excluded),
        "all" visible GPUs, or a list of NVML indices. Each counted GPU is a rail of its own.
    runs: this profiler's last RUNS_KEPT (100) runs, oldest first; every run is in the store.
    overlap: False (the default): a run waits for every other profiled run of this process,
        whatever its model, because every power source here also counts the other run's work
        (the same CPU cores and counter; two models on one GPU share its NVML counter). True:
        wait only for runs on the same model or power source object, and for runs whose
        profiler forbids overlap.
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
        sample: int | str | None = None,
        overhead_budget: float | None = None,
        power_devices: str | Sequence[int] = "model",
    ) -> None:
        _check_causal_lm(model)
        check_settings(
            level=level,
            interval_ms=interval_ms,
            baseline_s=baseline_s,
            tags=tags,
            experiment=experiment,
            warmup=warmup,
            overlap=overlap,
            sample=sample,
            overhead_budget=overhead_budget,
        )
        self.power_devices = _check_power_devices(power_devices)
        tags = list(tags) if tags is not None else None
        self.sample = sample
        self.overhead_budget = overhead_budget
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
        if isinstance(prompt, Mapping) and "input_ids" in prompt:  # ids with their mask
            enc = self._encode(prompt["input_ids"], chat)
            mask = prompt.get("attention_mask")
            if mask is None:
                return enc
            ids = enc.inputs["input_ids"]
            inputs = {"input_ids": ids, "attention_mask": check_attention_mask(mask, ids)}
            return enc._replace(inputs=inputs)
        kind = batch_kind(prompt)
        if kind is not None:
            return self._encode_batch(list(prompt), chat)
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
            check_input_ids(ids, self._vocab_size())
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
            check_messages(list(prompt))
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

    def _encode_batch(self, prompts: list[Any], chat: Any) -> _Encoded:
        """Each prompt encoded as a single one would be, then padded on the left into a batch."""
        encoded = []
        for i, p in enumerate(prompts):
            try:
                encoded.append(self._encode(p, chat))
            except InvalidInputError as exc:
                raise InvalidInputError(f"prompt {i} of the batch: {exc}") from None
        inputs = pad_left([e.inputs for e in encoded], padding_id(self.tokenizer))
        first = encoded[0]
        return _Encoded(
            inputs, first.text, first.chat_template, first.sent, tuple(e.text for e in encoded)
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

    def _vocab_size(self) -> int | None:
        emb = getattr(self.model, "get_input_embeddings", None)
        layer = emb() if callable(emb) else None
        n = getattr(layer, "num_embeddings", None) or getattr(self.model.config, "vocab_size", None)
        return n if isinstance(n, int) and n > 0 else None

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
        check_generate_kwargs(kw, self.model)
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

        prompt: text, chat messages ({"role", "content"} dicts) or input ids; or a batch: a list
            of texts or of chat-message lists (each encoded as a single prompt would be, then
            padded on the left), or input ids of B rows with `attention_mask=`. A batch's tokens
            carry their `sequence`; `run.texts` has one text per sequence, `run.response` and
            `run.prompt` are sequence 0's (`run.settings["prompts"]` has them all).
        chat: "auto" (the default) sends a text prompt through the tokenizer's chat template
            when it has one; True requires the template; False sends the text as it is.
            `run.prompt` keeps your text, `run.settings["chat_template"]` says what was applied.
        settings: your own keys added to `run.settings` (e.g. a sweep's grid point), stored with it.

        While another profiled run is going on (see `overlap`), the run waits its turn: status
        "queued", reason "queued, N ahead"; `run.wait()` works on it and `run.cancel()` takes
        it out of the queue.
        """
        from .power import get_source

        if tags is not None:
            tags = check_tags(tags)
        check_experiment(experiment)
        if settings is not None and not isinstance(settings, dict):
            raise InvalidInputError(f"settings must be a dict, got {type(settings).__name__}")
        mask = generate_kwargs.pop("attention_mask", None)
        if mask is not None:  # sent with the ids, so it goes through the same checks
            if not _is_ids(prompt):
                raise InvalidInputError(
                    "attention_mask= goes with input ids; a batch of texts is padded and masked "
                    "by the profiler"
                )
            prompt = {"input_ids": prompt, "attention_mask": mask}
        enc = self._encode(prompt, chat)
        n_prompt = int(enc.inputs["input_ids"].shape[1])
        gen_kw = self._check_generate_kwargs(generate_kwargs, n_prompt)
        source = get_source(self.power)
        _count_devices(source, self.power_devices, self.model)
        store_obj = self._resolve_store(store)
        if store_obj is not None:  # a store that cannot save: an error now, not a lost run
            store_obj.check_writable()
        layer_profiler = None
        sampling = None
        if self.level != "token":
            from .profiling.layer_profiler import LayerProfiler

            layer_profiler = LayerProfiler(self.model, self.level)  # hooks attach when it starts
            sampling = sampling_from(self.sample, self.overhead_budget)  # fresh: it keeps state
        run = Run(
            model={"name": model_name(self.model), "features": self.model_features()},
            prompt=enc.text,
            settings={
                "generate_kwargs": _jsonable_kwargs(gen_kw),
                "max_new_tokens": gen_kw.get("max_new_tokens"),
                "interval_ms": self.interval_ms,
                "baseline_s": self.baseline_s,
                "batch_size": int(enc.inputs["input_ids"].shape[0]),
                "device": str(self.model.device),
                "devices": [str(d) for d in model_devices(self.model)],
                "power_devices": self.power_devices,
                "machine": machine_description(self.model.device),
                "dtype": str(getattr(self.model, "dtype", "")).replace("torch.", ""),
                "chat": chat,
                "chat_template": enc.chat_template,
                **({"sampling": sampling.settings()} if sampling is not None else {}),
                **({"prompt_sent": enc.sent} if enc.sent is not None else {}),
                **({"prompts": list(enc.texts)} if len(enc.texts) > 1 else {}),
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
        run.prompt_tokens = enc.prompt_tokens  # n_prompt for one unpadded prompt
        if store_obj is not None:
            run.store_path = str(store_obj.path)  # type: ignore[attr-defined]
        ticket = Ticket(
            run,
            self.model,
            source,
            self.overlap,
            lambda: WORKERS.submit(
                self.model,
                Generation(
                    self, run, source, layer_profiler, prompt, chat, gen_kw, store_obj, sampling
                ).execute,
            ),
        )
        run._on_cancel = functools.partial(cancel_queued, ticket)
        run._release = functools.partial(QUEUE.release, ticket)
        self.runs.append(run)
        if len(self.runs) > RUNS_KEPT:  # the oldest go; a queued or running one is never first
            del self.runs[: len(self.runs) - RUNS_KEPT]
        hook_exit()
        QUEUE.submit(ticket)
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

    def _warm_up(
        self, run: Run, layer_profiler: Any, prompt: Any, chat: Any, gen_kw: dict[str, Any]
    ) -> None:
        """The warm-up before a run's measurement (`generation.warm_up`), on its thread.

        A method of the profiler, which `Generation` calls, so it can be replaced on one
        profiler (tests/test_chat_and_warmup.py holds the warm-up back that way)."""
        warm_up(self, run, layer_profiler, prompt, chat, gen_kw)


def _is_ids(prompt: Any) -> bool:
    """Input ids: a tensor, or a list of ints (one row) or of int lists (rows)."""
    if isinstance(prompt, torch.Tensor):
        return True
    if not isinstance(prompt, (list, tuple)) or not prompt:
        return False
    rows = prompt if all(isinstance(r, (list, tuple)) for r in prompt) else [prompt]
    return all(isinstance(x, int) and not isinstance(x, bool) for r in rows for x in r)


def _ids_and_mask(enc: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


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
    "sample",
    "overhead_budget",
    "overlap",
    "power_devices",
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
    from .notebook.cells import on_cell_end

    def cell_ended() -> None:
        run._displayed_in_cell = False

    run._displayed_in_cell = on_cell_end(cell_ended)
