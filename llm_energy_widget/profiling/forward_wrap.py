"""The forward replacement that times hooked modules: cheap by construction, because 270 hooked
modules run ~15 times a second here.

- each timed module's `forward` is replaced by a closure with its slot index bound (one Python
  frame per call instead of `Module._call_impl`'s hook path, see `ForwardWrap`); the CPU clock is
  `time.perf_counter_ns` bound locally, and the wrapper adds into a preallocated list (no
  allocation, no lock, no torch op);
- on CUDA/MPS the wrappers record device events (`EventClock`), read after the token's last event
  completes, so a time is execution time, not launch time;
- statistics are not computed in the wrapper: it keeps a reference to the output in its slot
  (`HostSlots`) for the token's batched reduction (see `layer_profiler`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "HOOK_STATS_ABOVE",
    "EventClock",
    "ForwardWrap",
    "HookSwitch",
    "HostSlots",
    "Keep",
    "cpu_forward",
    "event_forward",
]

HOOK_STATS_ABOVE = 1 << 15  # outputs with more elements are reduced in the hook (prefill)
_inference_mode = torch.is_inference_mode_enabled
_Forward = Callable[..., Any]
Keep = Callable[[int, Any], None]


@dataclass
class HostSlots:
    """Preallocated per-slot host buffers the wrappers write into (reset in place, never
    replaced, since the wrappers bind them at attach)."""

    n: int
    zeros: list[int] = field(init=False)
    acc: list[int] = field(init=False)  # CPU ns per slot since the last take
    ends: list[int] = field(init=False)  # CPU ns when each slot last ended (0: not since)
    refs: list[torch.Tensor | None] = field(init=False)  # held outputs
    vers: list[int] = field(init=False)  # their version counters (-1: inference tensor)
    force: list[bool] = field(init=False)  # changed in place once: reduce in the hook from now
    ends_ev: list[Any] = field(init=False)  # device event of each slot's last end

    def __post_init__(self) -> None:
        n = self.n
        self.zeros = [0] * n
        self.acc = [0] * n
        self.ends = [0] * n
        self.refs = [None] * n
        self.vers = [0] * n
        self.force = [False] * n
        self.ends_ev = [None] * n


class EventClock:
    """Device events for CUDA/MPS; reused from a pool so hooks never allocate after warm-up.

    CUDA events are recorded on a stream looked up once per decoder layer (`refresh`), not per
    event: `Event.record()` without a stream calls `torch.cuda.current_stream()`, which cost
    ~20 us of Python per call on an H200 box, 30 % of a profiled decode step at 540 events.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream: Any = None
        if device.type == "cuda":
            self._make: Callable[[], Any] = lambda: torch.cuda.Event(enable_timing=True)
            self.method = "cuda_events"
            self.refresh()
        else:
            self._make = lambda: torch.mps.event.Event(enable_timing=True)
            self.method = "mps_events"
        self.pool: list[Any] = []
        self.pairs: list[tuple[int, Any, Any]] = []  # (slot, start event, end event)

    def refresh(self) -> None:
        """Follow the caller's current stream (called as each decoder layer starts)."""
        if self.device.type == "cuda":
            self.stream = torch.cuda.current_stream(self.device)

    def new(self) -> Any:
        ev = self.pool.pop() if self.pool else self._make()
        if self.stream is not None:
            ev.record(self.stream)
        else:
            ev.record()
        return ev

    def take(self) -> list[tuple[int, Any, Any]]:
        """The pairs recorded since the last call (the wrappers keep appending to `pairs`)."""
        taken = self.pairs[:]
        self.pairs.clear()
        return taken

    def read_ms(self, pairs: list[tuple[int, Any, Any]], n_slots: int) -> np.ndarray:
        """Sum each slot's event pairs once the last one completed; return events to the pool."""
        ms = np.zeros(n_slots)
        if not pairs:
            return ms
        pairs[-1][2].synchronize()  # recorded last on the stream: the others are done too
        events: dict[int, Any] = {}
        for slot, start, end in pairs:
            ms[slot] += start.elapsed_time(end)
            events[id(start)], events[id(end)] = start, end
        self.pool.extend(events.values())
        return ms


class ForwardWrap:
    """Times a module by replacing its `forward` with a wrapper (undone by `remove`).

    Cheaper than a forward pre/post hook pair, which sends every call through `Module._call_impl`'s
    hook path (measured on CPU: ~5.5 us of Python per module call against ~0.8 us for a wrapper;
    270 modules per token). The wrapper sits right around the original forward, so it times the
    same work a hook pair would, minus the hook dispatch. Hooks others register still run.
    """

    def __init__(self, mod: nn.Module, make: Callable[[_Forward], _Forward]) -> None:
        self.mod = mod
        self.had_own = "forward" in mod.__dict__  # e.g. accelerate's own wrapper
        self.previous = mod.__dict__.get("forward")
        original = mod.forward
        self.wrapper = make(original)
        self.wrapper.__wrapped__ = original  # type: ignore[attr-defined]  # inspect.signature
        self.installed = False
        self.install()

    def install(self) -> None:
        """Put the wrapper in the call path (again, after `remove`); a no-op while it is, and
        while someone else's forward has taken the place since (theirs is never overwritten)."""
        if self.installed:
            return
        own = self.mod.__dict__
        if own.get("forward") is not (self.previous if self.had_own else None):
            return
        own["forward"] = self.wrapper
        self.installed = True

    def remove(self) -> None:
        """Take the wrapper out of the call path: the module runs its own forward again."""
        if not self.installed:
            return
        self.installed = False
        own = self.mod.__dict__
        if own.get("forward") is not self.wrapper:
            return  # replaced after us by someone else: theirs to undo
        if self.had_own:
            own["forward"] = self.previous
        else:
            del own["forward"]


class HookSwitch:
    """A forward hook that can be taken out of the call path and put back (`install`/`remove`),
    for the tokens profiled bare (`LayerProfiler.disarm`)."""

    def __init__(self, mod: nn.Module, hook: Callable[..., Any]) -> None:
        self.mod = mod
        self.hook = hook
        self._handle: Any = None
        self.install()

    @property
    def installed(self) -> bool:
        return self._handle is not None

    def install(self) -> None:
        if self._handle is None:
            self._handle = self.mod.register_forward_hook(self.hook)

    def remove(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.remove()


def cpu_forward(
    f: _Forward,
    i: int,
    stats: bool,
    gap: tuple[int, int] | None,
    *,
    slots: HostSlots,
    keep: Keep,
    trusted: bool,
) -> _Forward:
    """A wrapper of `f` that adds its perf_counter_ns time into slot `i` (and a gap's time into
    the gap's slot); with `stats`, it holds the output for the token's batched reduction, or
    hands it to `keep` (which may reduce it now)."""
    pc = time.perf_counter_ns
    acc, ends = slots.acc, slots.ends
    a, g = gap if gap is not None else (-1, -1)

    if not stats:

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = pc()
            out = f(*args, **kwargs)
            t = pc()
            acc[i] += t - t0
            ends[i] = t
            return out

        return timed

    refs, vers, force = slots.refs, slots.vers, slots.force
    slow = keep
    tensor = torch.Tensor

    def forward(*args: Any, **kwargs: Any) -> Any:
        t0 = pc()
        if a >= 0:
            e = ends[a]
            if e:
                acc[g] += t0 - e
                ends[a] = 0
        out = f(*args, **kwargs)
        t = pc()
        acc[i] += t - t0
        ends[i] = t
        # the common case inline (see `LayerProfiler._keep`): hold a small output for collect()
        if type(out) is tensor and not force[i] and out.numel() <= HOOK_STATS_ABOVE:
            if not _inference_mode():
                refs[i] = out
                vers[i] = out._version
                return out
            if trusted:
                refs[i] = out
                vers[i] = -1
                return out
        slow(i, out)
        return out

    return forward


def event_forward(
    f: _Forward,
    i: int,
    stats: bool,
    gap: tuple[int, int] | None,
    block: bool,
    *,
    clock: EventClock,
    slots: HostSlots,
    keep: Keep,
) -> _Forward:
    """A wrapper of `f` that records a device event pair around it into slot `i` (and the gap
    since the gap's first component ended); with `stats`, it hands the output to `keep`."""
    new, pairs = clock.new, clock.pairs
    last_end = slots.ends_ev
    a, g = gap if gap is not None else (-1, -1)
    refresh = clock.refresh if block else None  # a decoder layer: look the stream up

    def forward(*args: Any, **kwargs: Any) -> Any:
        if refresh is not None:
            refresh()
        start = new()
        if a >= 0 and last_end[a] is not None:
            pairs.append((g, last_end[a], start))
            last_end[a] = None
        out = f(*args, **kwargs)
        end = new()
        pairs.append((i, start, end))
        last_end[i] = end
        if stats:
            keep(i, out)
        return out

    return forward
