"""The forward replacement that times hooked modules: cheap by construction, because 270 hooked
modules run ~15 times a second here.

- each timed module's `forward` is replaced by a closure with its slot index bound (one Python
  frame per call instead of `Module._call_impl`'s hook path, see `ForwardWrap`); the CPU clock is
  `time.perf_counter_ns` bound locally, and the wrapper adds into a preallocated list (no
  allocation, no lock, no torch op);
- on CUDA/MPS the wrappers record device events (`EventClock`), one per boundary of a timeline
  where neighbours share theirs (`boundaries`), read once per token after its last event
  completes, so a time is execution time, not launch time;
- statistics are not computed in the wrapper: it keeps a reference to the output in its slot
  (`HostSlots`) for the token's batched reduction (see `layer_profiler`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .boundaries import UNSHARED, Boundary

__all__ = [
    "HOOK_STATS_ABOVE",
    "EventClock",
    "ForwardWrap",
    "HookSwitch",
    "HostEvent",
    "HostSlots",
    "Keep",
    "Timeline",
    "cpu_forward",
    "device_event",
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

    def __post_init__(self) -> None:
        n = self.n
        self.zeros = [0] * n
        self.acc = [0] * n
        self.ends = [0] * n
        self.refs = [None] * n
        self.vers = [0] * n
        self.force = [False] * n


@dataclass
class Timeline:
    """One token's boundary events in record order; the interval from `events[k]` to
    `events[k + 1]` belongs to slot `tags[k]` (-1: none, the layer's "other"); `spans` are the
    decoder layers, (slot, index of the start event, index of the end event). `lanes[k]` is the
    device lane event k was recorded on (`EventClock.devices`; empty when the clock has one):
    only intervals within one lane have a time (events of two devices cannot be compared)."""

    events: list[Any]
    tags: list[int]
    spans: list[tuple[int, int, int]]
    lanes: list[int] = field(default_factory=list)


class HostEvent:
    """An event on the host clock, for the CPU modules of a model split across CPU and GPU:
    their kernels run synchronously, so the host time at a boundary is execution time."""

    __slots__ = ("t_ns",)

    def __init__(self) -> None:
        self.t_ns = 0

    def record(self, stream: Any = None) -> None:
        self.t_ns = time.perf_counter_ns()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: HostEvent) -> float:
        return (end.t_ns - self.t_ns) / 1e6


def device_event(device: torch.device) -> Any:
    """A timing event for `device`: CUDA or MPS events, host events for the CPU."""
    if device.type == "cuda":
        return torch.cuda.Event(enable_timing=True)
    if device.type == "mps":
        return torch.mps.event.Event(enable_timing=True)
    return HostEvent()


_METHODS = {"cuda": "cuda_events", "mps": "mps_events"}


@dataclass
class _Lane:
    """One device's part of the clock: its events' pool and the stream they are recorded on."""

    device: torch.device
    pool: list[Any] = field(default_factory=list)
    stream: Any = None


class EventClock:
    """Device events for CUDA/MPS, one per boundary of the token's timeline (`Timeline`; who
    shares a boundary is decided at attach, see `boundaries`); reused from a pool so hooks never
    allocate after warm-up.

    A model split over devices (`device_map`) gets one lane per device (`devices`): each
    wrapper records on its own module's device (`recorder(lane)`), from that device's pool, on
    that device's stream; a boundary is shared only within a lane, and reading waits for every
    lane's last event. CPU modules of a split model use host events (`HostEvent`).

    CUDA events are recorded on a stream looked up once per decoder layer (`refresh`), not per
    event: `Event.record()` without a stream calls `torch.cuda.current_stream()`, which cost
    ~20 us of Python per call on an H200 box, 30 % of a profiled decode step at 540 events.
    """

    def __init__(
        self,
        devices: torch.device | Sequence[torch.device],
        make_event: Callable[[torch.device], Any] = device_event,
    ) -> None:
        devs = (devices,) if isinstance(devices, torch.device) else tuple(devices)
        if not devs:
            raise ValueError("EventClock needs at least one device")
        self.devices: tuple[torch.device, ...] = devs
        self.device = devs[0]
        self.single = len(devs) == 1  # one lane: the timeline keeps no lanes
        #: makes one event for a device (tests replace it with fake events)
        self.make_event = make_event
        self._lanes = [_Lane(d) for d in devs]
        self.pool = self._lanes[0].pool  # the first device's (the only one, unsplit)
        self.method = "+".join(dict.fromkeys(_METHODS.get(d.type, "perf_counter_ns") for d in devs))
        # the timeline being recorded (bound by the wrappers: cleared in place, never replaced)
        self.events: list[Any] = []
        self.tags: list[int] = []
        self.spans: list[tuple[int, int, int]] = []
        self.lanes: list[int] = []
        self.owner = [-1]  # marker of the timeline's last action (`boundaries.Boundary`)
        self.plan: dict[int, Any] | None = None  # `boundaries.plan_boundaries`, made at attach
        for lane in range(len(devs)):
            self.refresher(lane)()
        self.record = self.recorder(0)

    @property
    def stream(self) -> Any:
        return self._lanes[0].stream

    def lane(self, device: torch.device | None) -> int:
        """The lane of `device` (None, or a device the clock does not know: the first)."""
        return self.devices.index(device) if device in self.devices else 0

    def refresher(self, lane: int) -> Callable[[], None]:
        """Follow the caller's current stream on `lane`'s device (called as each decoder layer
        on it starts)."""
        ln = self._lanes[lane]
        if ln.device.type != "cuda":
            return lambda: None

        def refresh() -> None:
            ln.stream = torch.cuda.current_stream(ln.device)

        return refresh

    def refresh(self) -> None:
        """Follow the caller's current stream on the first device."""
        self.refresher(0)()

    def recorder(self, lane: int) -> Callable[[int], None]:
        """`record(tag)` on `lane`: a new boundary, a pooled event of that device recorded now;
        the interval after it is `tag`'s."""
        ln = self._lanes[lane]
        pool, events, tags, lanes = ln.pool, self.events, self.tags, self.lanes

        def record(tag: int) -> None:
            ev = pool.pop() if pool else self.make_event(ln.device)
            stream = ln.stream
            if stream is not None:
                ev.record(stream)
            else:
                ev.record()
            events.append(ev)
            tags.append(tag)
            lanes.append(lane)

        def record_one(tag: int) -> None:  # one device: no lanes to keep (the hot path)
            ev = pool.pop() if pool else self.make_event(ln.device)
            stream = ln.stream
            if stream is not None:
                ev.record(stream)
            else:
                ev.record()
            events.append(ev)
            tags.append(tag)

        return record_one if self.single else record

    def take(self) -> Timeline:
        """The timeline recorded since the last call; the next one starts empty (no boundary
        of this token can be shared by the next)."""
        taken = Timeline(self.events[:], self.tags[:], self.spans[:], self.lanes[:])
        self.events.clear()
        self.tags.clear()
        self.spans.clear()
        self.lanes.clear()
        self.owner[0] = -1
        return taken

    def read_ms(self, timeline: Timeline, n_slots: int) -> np.ndarray:
        """Each slot's ms once the token's last event completed on every lane (one elapsed
        time per interval between consecutive boundaries of one lane, summed into slots; a
        decoder layer is the sum of the intervals it spans, if it stays in one lane); the
        events go back to their lanes' pools."""
        ms = np.zeros(n_slots)
        events = timeline.events
        if not events:
            return ms
        n = len(events) - 1
        lanes = timeline.lanes or [0] * len(events)  # one device: no lanes kept
        split = not self.single and any(x != lanes[0] for x in lanes)
        if not split:
            events[-1].synchronize()  # recorded last on the stream: the others are done too
            gaps = np.fromiter(
                (events[k].elapsed_time(events[k + 1]) for k in range(n)),
                dtype=np.float64,
                count=n,
            )
            crossed = np.zeros(n, dtype=bool)
        else:
            last: dict[int, int] = {}
            for k, x in enumerate(lanes):
                last[x] = k
            for k in last.values():
                events[k].synchronize()  # each lane's last: its others are done too
            crossed = np.fromiter((lanes[k] != lanes[k + 1] for k in range(n)), dtype=bool, count=n)
            gaps = np.fromiter(
                (0.0 if crossed[k] else events[k].elapsed_time(events[k + 1]) for k in range(n)),
                dtype=np.float64,
                count=n,
            )
        tags = np.asarray(timeline.tags[:n], dtype=np.intp)
        mine = (tags >= 0) & ~crossed  # an interval across devices has no time
        np.add.at(ms, tags[mine], gaps[mine])
        if timeline.spans:
            at = np.concatenate(([0.0], np.cumsum(gaps)))  # ms since the first event
            hops = np.concatenate(([0], np.cumsum(crossed)))
            spans = np.asarray(timeline.spans, dtype=np.intp)
            whole = hops[spans[:, 2]] == hops[spans[:, 1]]  # a layer that stayed in one lane
            spans = spans[whole]
            np.add.at(ms, spans[:, 0], at[spans[:, 2]] - at[spans[:, 1]])
        if self.single:
            self.pool.extend(events)
        else:
            for ev, x in zip(events, lanes, strict=True):
                self._lanes[x].pool.append(ev)
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
    parent: int = -1,
) -> _Forward:
    """A wrapper of `f` that adds its perf_counter_ns time into slot `i` (and a gap's time into
    the gap's slot); with `stats`, it holds the output for the token's batched reduction, or
    hands it to `keep` (which may reduce it now). A reduction made here is the profiler's time,
    not the model's: it is taken out of the enclosing layer's slot `parent` and out of the gap
    that follows (otherwise it lands in "other": 59 % of a generic model's layer time)."""
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
        t1 = pc()
        slow(i, out)
        t2 = pc()
        ends[i] = t2
        if parent >= 0:
            acc[parent] -= t2 - t1
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
    share: Boundary | None = None,
    lane: int = 0,
) -> _Forward:
    """A wrapper of `f` that adds its boundaries to the clock's timeline: its start reuses the
    last event where `share` allows it (else records one), its end records one whose interval
    goes to `share.after` (a gap this module starts). With `stats`, it hands the output to
    `keep`. `block`: a decoder layer, whose span is kept whole. `gap` is unused here: a gap is
    the interval after its first component's end (`boundaries`). `lane`: the clock's lane of
    the module's device; a start reuses the last event only if that was recorded on it too."""
    b = share if share is not None else UNSHARED
    reuse, after, end_mark = b.reuse_after, b.after, b.end_mark
    record, events, tags, owner = clock.recorder(lane), clock.events, clock.tags, clock.owner
    lanes, single = clock.lanes, clock.single
    refs = slots.refs

    if block:
        refresh, spans, start_mark = clock.refresher(lane), clock.spans, b.start_mark

        def layer(*args: Any, **kwargs: Any) -> Any:
            refresh()  # look the stream up once per layer
            if owner[0] in reuse and (single or lanes[-1] == lane):
                k0 = len(events) - 1
            else:
                k0 = len(events)
                record(-1)
            owner[0] = start_mark
            try:
                out = f(*args, **kwargs)
            except BaseException:
                spans.append((i, k0, len(events)))
                record(-1)  # the layer's time up to the failure; nothing shares this end
                owner[0] = -1
                raise
            spans.append((i, k0, len(events)))
            record(-1)
            owner[0] = end_mark
            return out

        return layer

    def forward(*args: Any, **kwargs: Any) -> Any:
        if owner[0] in reuse and (single or lanes[-1] == lane):
            tags[-1] = i  # the previous end is our start
        else:
            record(i)
        owner[0] = -1
        try:
            out = f(*args, **kwargs)
        except BaseException:
            record(-1)  # what it launched before failing stays its time
            owner[0] = -1
            raise
        record(after)
        owner[0] = end_mark
        if stats:
            keep(i, out)
            if refs[i] is None:  # reduced in the hook (or nothing held): work after our end
                owner[0] = -1
        return out

    return forward
