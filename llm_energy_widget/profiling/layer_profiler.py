"""Per token x layer x component timing and activation statistics, via forward hooks.

Cheap by construction, because 270 hooked modules run ~15 times a second here:
- each timed module's `forward` is replaced by a closure with its slot index bound
  (`forward_wrap`: one Python frame per call instead of `Module._call_impl`'s hook path; a
  locally bound `time.perf_counter_ns` adding into a preallocated list: no allocation, no lock,
  no torch op);
- statistics are not computed in the wrapper: it keeps a reference to the output, and at the
  token boundary all outputs of the token are reduced together on the device (`stats.Batcher`)
  and copied to the host at once. Big outputs (long prefills) are reduced in the hook instead, so
  we never hold a whole forward's activations; an output modified in place after its hook (its
  version counter moved) gets NaN for that token and is reduced in the hook from then on;
- on CUDA/MPS the wrappers record device events (`forward_wrap.EventClock`), read after the
  token's last event completes, so a time is execution time, not launch time;
- `take` gets the token's times and held outputs on the generating thread (~0.1 ms) at the
  token boundary (the profiler's `TokenClock.step`); `submit` leaves the reduction and event
  reading to the reducer thread (`reducer.py`), so they overlap the next token's forward
  instead of delaying it (`collect_async` is both at once).
Each component is timed around its own forward. "gaps" (attention kernel, MLP activation) are
the time between two components' forwards plus the modules timed into them (a gated MLP's act_fn,
see `architectures`), and "other" is the rest of the layer's time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.schema import METRICS
from ..errors import InvalidInputError
from . import devices, forward_wrap
from .architectures import Discovery, discover, first_tensor
from .boundaries import plan_boundaries
from .deep import ATTN_STAT_NAMES, AttentionTap
from .forward_wrap import (
    EventClock,
    ForwardWrap,
    HookSwitch,
    HostSlots,
    cpu_forward,
    event_forward,
)
from .moe import RouterTap, router_n_experts, router_top_k
from .reducer import Pipeline
from .stats import N_STATS, Batcher, Part, RowFn, row_neg_frac, row_stats, stats_of, to_host

__all__ = ["DRAIN_TIMEOUT_S", "LEVELS", "Deliver", "LayerProfiler"]

LEVELS = ("layer", "component", "deep")
_inference_mode = torch.is_inference_mode_enabled
_Hook = Callable[..., None]
Deliver = Callable[[np.ndarray, dict[str, Any]], None]
DRAIN_TIMEOUT_S = 120.0


@dataclass
class _Held:
    """One token's outputs for one statistic: held (row, tensor) and already reduced in the hook."""

    rows: list[int] = field(default_factory=list)
    tensors: list[torch.Tensor] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)


@dataclass
class _Token:
    """What one token left behind: taken on the generating thread, finished on any thread."""

    ms: np.ndarray | None  # CPU times (ms per slot), read at the boundary
    pairs: Any  # the device timeline (`forward_wrap.Timeline`), read when finished
    stats: _Held = field(default_factory=_Held)  # component outputs
    gates: _Held = field(default_factory=_Held)  # MLP gate pre-activations (deep level)
    extras: dict[str, Any] = field(default_factory=dict)  # already on the host
    stream: Any = None  # the generating thread's CUDA stream: the reduction runs on it too


def _n_heads(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for attr in ("num_attention_heads", "n_head", "num_heads"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 0


def _host(t: torch.Tensor) -> np.ndarray:
    """A host copy (on CPU `.cpu()` would alias the buffer we reset right after)."""
    return t.detach().to("cpu", copy=True).numpy()


class LayerProfiler:
    """Per token x layer x component timing and activation statistics, via forward hooks."""

    def __init__(self, model: nn.Module, level: str) -> None:
        if level not in LEVELS:
            raise InvalidInputError(
                f"level must be one of {LEVELS} for layer profiling, got {level!r}"
            )
        self.model = model
        self.level = level
        self.disc: Discovery = discover(model)
        L = self.disc.n_layers
        self.layer_names = [str(i) for i in range(L)]
        if level == "layer":
            self.component_names = ["layer"]
        else:
            self.component_names = [
                *self.disc.component_names,
                *(g[0] for g in self.disc.gaps),
                "other",
            ]
        self.metric_names: tuple[str, ...] = METRICS
        #: every device the model runs on (`devices.model_devices`), the first where inputs go
        self.devices = devices.model_devices(model)
        self.device = self.devices[0]
        C = len(self.component_names)
        self._n_cells = L * C
        self._n_slots = L * C + L  # cells, then one whole-layer slot per layer
        self._handles: list[ForwardWrap | HookSwitch] = []
        self._attached = False
        self._armed = False  # the wrappers and hooks are in the call path
        self._deferred: list[tuple[_Token, Deliver]] = []  # taken while the next ran bare
        self._tap: AttentionTap | None = None
        self._routers: RouterTap | None = None
        self._summary: dict[str, Any] = {}
        self._errors: list[str] = []
        # Under torch.inference_mode outputs have no version counter to catch in-place changes;
        # registry architectures are tested not to change hooked outputs in place, so their
        # outputs may still be reduced later; generic models are reduced in the hook instead.
        self._trusted = self.disc.how.startswith("registry:")
        self._reset_host()
        self._clock: EventClock | None = None
        self._stats = level != "layer"
        self._gates = False
        self._batcher = Batcher(row_stats)  # used by one thread at a time (see `_finish`)
        self._gate_batcher = Batcher(row_neg_frac)
        self._pipeline = Pipeline()

    # -- state --------------------------------------------------------------------------------
    def _reset_host(self) -> None:
        self._slots = HostSlots(self._n_slots)
        L = self.disc.n_layers
        self._grefs: list[torch.Tensor | None] = [None] * L
        self._gvers = [0] * L
        self._now: list[Part] = []  # statistics reduced in the hook this token
        self._gate_now: list[Part] = []

    def cell(self, layer: int, name: str) -> int:
        """The row of (layer, component `name`) in collect()'s values reshaped to (-1, metrics)."""
        return layer * len(self.component_names) + self.component_names.index(name)

    # -- attach / detach ----------------------------------------------------------------------
    def attach(self) -> dict[str, Any]:
        """Register hooks; returns the registration summary (JSON-serializable)."""
        if self._attached:
            return self._summary
        self._attached = True  # so detach() cleans up a half-done attach
        self._armed = True
        try:
            return self._attach()
        except BaseException:
            self.detach()
            raise

    def _attach(self) -> dict[str, Any]:
        d = self.disc
        dev = self.device
        on_device = any(x.type in ("cuda", "mps") for x in self.devices)
        self._clock = EventClock(self.devices) if on_device else None
        skipped = list(d.skipped)
        hooked: set[int] = set()
        stats = self._stats
        for li, layer in enumerate(d.layers):
            on = devices.module_device(layer)  # its modules without weights of their own run here
            if self.level == "layer":
                self._hook(layer, li, stats=False, block=True, on=on)
                continue
            self._hook(layer, self._n_cells + li, stats=False, block=True, on=on)
            gaps_before = {b: (a, g) for g, a, b in d.gaps}
            for name, mod in d.components[li].items():
                if id(mod) in hooked:
                    skipped.append({"what": f"{li}.{name}", "reason": "module shared, hooked once"})
                    continue
                hooked.add(id(mod))
                gap = None
                if name in gaps_before:
                    after, gname = gaps_before[name]
                    if after in d.components[li]:
                        gap = (self.cell(li, after), self.cell(li, gname))
                self._hook(
                    mod, self.cell(li, name), stats=True, gap=gap, parent=self._n_cells + li, on=on
                )
            for gname, mod in d.gap_modules[li]:  # e.g. a gated MLP's act_fn into mlp_act
                if id(mod) in hooked:
                    skipped.append(
                        {"what": f"{li}.{gname} module", "reason": "module shared, hooked once"}
                    )
                    continue
                hooked.add(id(mod))
                self._hook(mod, self.cell(li, gname), stats=False, on=on)
        deep: dict[str, Any] = {}
        if self.level == "deep":
            deep = self._attach_deep(dev)
        moe = self._attach_moe(dev) if self.level != "layer" else {}
        self._summary = {
            **d.to_dict(),
            "level": self.level,
            "component_names": list(self.component_names),
            "hooks": len(self._handles),
            "device": str(dev),
            "devices": [str(x) for x in self.devices],
            "timing_method": self._clock.method if self._clock else "perf_counter_ns",
            "timing": (
                "each component around its own forward; gaps = time between two components' "
                "forwards (attention: rotary, KV-cache update and attention kernel; mlp_act: "
                "activation and gate multiply, with the act_fn module's own time where it runs "
                "outside the gap); other = layer time minus components and gaps"
                if self.level != "layer"
                else "each decoder layer around its forward"
            ),
            "statistics": (
                "mean|x|, population std, max|x|, fraction |x|<1e-4 of each component's output, "
                "reduced on the device once per token"
                if stats
                else None
            ),
            "skipped": skipped,
            **({"deep": deep} if deep else {}),
            **({"moe": moe} if moe else {}),
        }
        return self._summary

    def _hook(
        self,
        mod: nn.Module,
        slot: int,
        stats: bool,
        gap: tuple[int, int] | None = None,
        block: bool = False,
        parent: int = -1,
        on: torch.device | None = None,
    ) -> None:
        """Time `mod` into `slot` (adding to it); `block`: a decoder layer (see `refresh`);
        `parent`: the enclosing layer's slot (a reduction in the hook is taken out of it); `on`:
        the enclosing layer's device, for a module without weights of its own. Device events
        are recorded on the module's own device (`devices.module_device`)."""
        bound: dict[str, Any] = {"i": slot, "stats": stats, "gap": gap, "slots": self._slots}
        bound["keep"] = self._keep  # bound now, at attach
        clock = self._clock
        if clock is not None and clock.plan is None:  # who shares a boundary (`boundaries`)
            clock.plan = plan_boundaries(self.disc, self.level, self.cell)
        make: Callable[[Callable[..., Any]], Callable[..., Any]] = (
            functools.partial(
                event_forward,
                block=block,
                clock=clock,
                share=clock.plan.get(id(mod)),
                lane=clock.lane(devices.module_device(mod) or on),
                **bound,
            )
            if clock is not None and clock.plan is not None
            else functools.partial(cpu_forward, trusted=self._trusted, parent=parent, **bound)
        )
        self._handles.append(ForwardWrap(mod, make))

    def _keep(self, i: int, out: Any) -> None:
        """Hold a component's output for the batched reduction (or reduce a big one now)."""
        if type(out) is not torch.Tensor:
            out = first_tensor(out)
            if out is None:
                return
        if self._slots.force[i] or out.numel() > forward_wrap.HOOK_STATS_ABOVE:
            self._slots.refs[i] = None
            self._reduce_now(self._now, i, out)
        elif not _inference_mode():
            self._slots.refs[i] = out
            self._slots.vers[i] = out._version
        elif self._trusted:  # inference tensors have no version counter: see `_trusted`
            self._slots.refs[i] = out
            self._slots.vers[i] = -1
        else:
            self._slots.refs[i] = None
            self._reduce_now(self._now, i, out)

    def _reduce_now(
        self, parts: list[Part], row: int, out: torch.Tensor, fn: RowFn = row_stats
    ) -> None:
        """Reduce one output in the hook (results stay on the device until the token's copy)."""
        try:
            parts.extend(stats_of([row], [out], fn))
        except Exception as exc:  # statistics must never break generation
            self._note_error(f"statistics: {type(exc).__name__}: {exc}")

    def _note_error(self, msg: str) -> None:
        if msg not in self._errors:
            self._errors.append(msg)

    def _attach_deep(self, dev: torch.device) -> dict[str, Any]:
        d = self.disc
        info: dict[str, Any] = {}
        tap = AttentionTap(self.model, d.attention, _n_heads(self.model))
        reason = tap.unavailable_reason() or (None if tap.n_heads else "head count unknown")
        if reason is None:
            original = str(self.model.config._attn_implementation)  # type: ignore[union-attr]
            tap.install(dev)
            self._tap = tap
            info["attention"] = (
                f"AttentionInterface wrapper around {original!r} (outputs unchanged)"
            )
        else:
            info["attention"] = None
            info["attention_skipped"] = reason
        gates = d.gates
        if any(g is not None for g in gates):
            self._gates = True
            for li, g in enumerate(gates):
                if g is not None:
                    self._handles.append(HookSwitch(g, self._gate_hook(li)))
            info["mlp_gate"] = "fraction of gate pre-activations < 0" + (
                " (first half of the fused gate_up projection)" if d.gate_first_half else ""
            )
        else:
            info["mlp_gate"] = None
            info["mlp_gate_skipped"] = "no MLP gate / fc-in module (MoE experts are fused)"
        return info

    def _gate_hook(self, layer: int) -> _Hook:
        half = self.disc.gate_first_half
        grefs, gvers = self._grefs, self._gvers

        def post(m: nn.Module, args: Any, out: Any) -> None:
            x = first_tensor(out)
            if x is None:
                return
            if half:
                x = x[..., : x.shape[-1] // 2]
            if x.numel() > forward_wrap.HOOK_STATS_ABOVE or (
                _inference_mode() and not self._trusted
            ):
                grefs[layer] = None
                self._reduce_now(self._gate_now, layer, x, row_neg_frac)
            else:
                grefs[layer] = x
                gvers[layer] = -1 if _inference_mode() else x._version

        return post

    def _attach_moe(self, dev: torch.device) -> dict[str, Any]:
        routers = self.disc.routers
        first = next((r for r in routers if r is not None), None)
        if first is None:
            return {}
        config = getattr(self.model, "config", None)
        k = router_top_k(first, config)
        self._routers = RouterTap(self.disc.n_layers, k, dev)
        for li, r in enumerate(routers):
            if r is not None:
                self._handles.append(HookSwitch(r, self._routers.hook(li)))
        return {"top_k": k, "n_experts": router_n_experts(first, config), "router": "mlp.gate"}

    def detach(self) -> None:
        """Remove every hook and restore the attention implementation. Idempotent.

        Tokens already handed to the reducer are still delivered (waited for here).
        """
        self.drain()
        errors = []
        for h in self._handles:
            try:
                h.remove()
            except Exception as exc:  # keep removing the others
                errors.append(exc)
        self._handles.clear()
        if self._tap is not None:
            try:
                self._tap.uninstall()
            finally:
                self._tap = None
        self._slots.refs[:] = [None] * self._n_slots
        self._grefs[:] = [None] * self.disc.n_layers
        self._attached = False
        self._armed = False
        if errors:
            raise errors[0]

    # -- sampled instrumentation --------------------------------------------------------------
    @property
    def armed(self) -> bool:
        """Whether the wrappers and hooks are in the call path (the running token is measured)."""
        return self._armed

    def disarm(self) -> None:
        """Take every wrapper and hook out of the call path: the next forwards run bare, at
        plain speed (the modules call their own forward; nothing of ours runs for them)."""
        if not self._armed:
            return
        for h in self._handles:
            h.remove()
        if self._tap is not None:
            self._tap.pause()
        self._armed = False

    def arm(self) -> None:
        """Put the wrappers and hooks back, and hand the reducer what was taken before the bare
        tokens: its work overlaps this instrumented token, never a bare one."""
        if self._armed or not self._attached:
            return
        for h in self._handles:
            h.install()
        if self._tap is not None:
            self._tap.resume()
        self._armed = True
        self._flush_deferred()

    def settle(self, timeout_s: float | None = DRAIN_TIMEOUT_S) -> None:
        """Wait for the reductions already handed to the reducer (not the deferred ones), so
        none runs during the bare tokens that follow."""
        if not self._pipeline.drain(timeout_s):
            self._note_error(f"the reducer was still busy after {timeout_s} s")

    def _flush_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for token, deliver in deferred:
            self._submit_now(token, deliver)

    def __enter__(self) -> LayerProfiler:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- per token ----------------------------------------------------------------------------
    def collect(self) -> tuple[np.ndarray, dict[str, Any]]:
        """[layers, components, metrics] float32 for the forwards since the last call, + extras."""
        self.drain()
        return self._finish(self._take())

    def collect_async(self, deliver: Deliver) -> None:
        """Like `collect`, but `deliver(values, extras)` is called later on the reducer thread.

        Calls are delivered in order. Takes only what must be taken at the token boundary
        (times, references to outputs, host copies of the deep/MoE buffers) on this thread.
        """
        self.submit(self.take(), deliver)

    def take(self) -> _Token:
        """What the forwards since the last take left behind, taken at a token boundary on the
        generating thread; `submit` it later, or drop it (its device events are then freed, not
        pooled)."""
        return self._take()

    def submit(self, token: _Token, deliver: Deliver) -> None:
        """Reduce a taken token on the reducer thread and `deliver(values, extras)` it, in order.

        While disarmed (bare tokens running) the reduction waits for the next `arm` or `drain`:
        no reducer work competes with a bare token.
        """
        if not self._armed and self._attached:
            self._deferred.append((token, deliver))
            return
        self._flush_deferred()
        self._submit_now(token, deliver)

    def _submit_now(self, token: _Token, deliver: Deliver) -> None:
        def job() -> None:
            try:
                values, extras = self._finish(token)
            except Exception as exc:
                self._note_error(f"layer measurements lost for a token: {exc!r}")
                return
            try:
                deliver(values, extras)
            except Exception as exc:  # a consumer's failure is reported, not raised here
                self._note_error(f"delivering layer measurements: {exc!r}")

        self._pipeline.submit(job)

    def drain(self, timeout_s: float | None = DRAIN_TIMEOUT_S) -> None:
        """Wait until every token handed to `collect_async` was delivered."""
        self._flush_deferred()
        if not self._pipeline.drain(timeout_s):
            self._note_error(
                f"layer measurements of {self._pipeline.pending} token(s) were still being "
                f"reduced after {timeout_s} s and are left out"
            )

    def _take(self) -> _Token:
        if self._clock is not None:
            token = _Token(None, self._clock.take())
            if self.device.type == "cuda":
                token.stream = torch.cuda.current_stream(self.device)
        else:
            token = _Token(np.asarray(self._slots.acc, dtype=np.float64) / 1e6, [])
            self._slots.acc[:] = self._slots.zeros
            self._slots.ends[:] = self._slots.zeros
        if self._stats:
            token.stats = self._take_held(
                self._slots.refs, self._slots.vers, self._now, self._slots.force
            )
            self._now = []
        if self._gates:
            token.gates = self._take_held(self._grefs, self._gvers, self._gate_now)
            self._gate_now = []
        token.extras = self._read_extras()
        return token

    @staticmethod
    def _take_held(
        refs: list[torch.Tensor | None],
        vers: list[int],
        parts: list[Part],
        force: list[bool] | None = None,
    ) -> _Held:
        """The held outputs (skipping ones changed in place since their hook), and reset."""
        live = [i for i, t in enumerate(refs) if t is not None]
        rows = [i for i in live if vers[i] < 0 or refs[i]._version == vers[i]]  # type: ignore[union-attr]
        if force is not None and len(rows) != len(live):
            for i in set(live).difference(rows):  # changed after its hook: not its output
                force[i] = True
        tensors: list[torch.Tensor] = [refs[i] for i in rows]  # type: ignore[misc]
        refs[:] = [None] * len(refs)
        return _Held(rows, tensors, parts)

    def _finish(self, token: _Token) -> tuple[np.ndarray, dict[str, Any]]:
        if token.stream is None:
            return self._finish_on(token)
        # on the stream that made the outputs: ordered after them, and the caching allocator
        # may reuse their memory only after our reduction (same stream)
        with torch.cuda.stream(token.stream):
            return self._finish_on(token)

    def _finish_on(self, token: _Token) -> tuple[np.ndarray, dict[str, Any]]:
        L, C = self.disc.n_layers, len(self.component_names)
        out = np.full((L, C, len(METRICS)), np.nan, dtype=np.float32)
        if token.ms is not None:
            ms = token.ms
        else:
            assert self._clock is not None
            ms = self._clock.read_ms(token.pairs, self._n_slots)
        ms[ms <= 0] = np.nan  # never ran since the last collect
        ti = METRICS.index("time_ms")
        if self.level == "layer":
            out[:, 0, ti] = ms[:L]
        else:
            cells = ms[: self._n_cells].reshape(L, C)
            layer_ms = ms[self._n_cells :]
            oi = C - 1  # "other"
            with np.errstate(invalid="ignore"):
                covered = np.nansum(cells[:, :oi], axis=1)
                other = np.where(np.isnan(layer_ms), np.nan, np.maximum(layer_ms - covered, 0.0))
            cells[:, oi] = other
            out[:, :, ti] = cells
        extras = dict(token.extras)
        if self._stats:
            host = self._reduce(self._n_slots, N_STATS, self._batcher, token.stats)
            out[:, :, METRICS.index("act_mean") :] = host[: self._n_cells].reshape(L, C, N_STATS)
        if self._gates:
            gate = self._reduce(L, 1, self._gate_batcher, token.gates)
            extras["mlp_gate_kill"] = gate[:, 0]
        return out, extras

    def _reduce(self, n_rows: int, width: int, batcher: Batcher, held: _Held) -> np.ndarray:
        """Rows of statistics on the host: the hook's parts first, then the held outputs."""
        host = np.full((n_rows, width), np.nan, dtype=np.float32)
        try:
            to_host(host, [*held.parts, *batcher.reduce(held.rows, held.tensors)])
        except Exception as exc:  # statistics must never break generation
            self._note_error(f"statistics: {type(exc).__name__}: {exc}")
        return host

    def _read_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if self._tap is not None and self._tap.buffer is not None:
            a = _host(self._tap.buffer)
            self._tap.reset()
            for k, name in enumerate(ATTN_STAT_NAMES):
                extras[name] = a[:, :, k].astype(np.float32)
        if self._routers is not None:
            extras["moe_experts"] = _host(self._routers.experts).astype(np.int64)
            extras["moe_routing_entropy"] = _host(self._routers.entropy).astype(np.float32)
            self._routers.reset()
        return extras

    @property
    def summary(self) -> dict[str, Any]:
        """The registration summary `attach()` returned ({} before the first attach)."""
        return self._summary

    @property
    def n_held(self) -> int:
        """Component outputs held for the next token's batched reduction (0: none held, e.g.
        all were reduced in the hook)."""
        return sum(r is not None for r in self._slots.refs)

    @property
    def pending(self) -> int:
        """Tokens submitted to the reducer thread and not yet delivered."""
        return self._pipeline.pending

    @property
    def reducer_cpu_s(self) -> float:
        """Reducer-thread CPU seconds this profiler's token jobs took (all of them after detach)."""
        return self._pipeline.cpu_s

    @property
    def errors(self) -> list[str]:
        """Problems met while measuring (statistics disabled for a token, etc.)."""
        tap_err = (
            [f"attention statistics: {self._tap.error}"] if self._tap and self._tap.error else []
        )
        return [*self._errors, *tap_err]
