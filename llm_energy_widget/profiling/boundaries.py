"""Which timed modules may share one device event at their common boundary, decided at attach.

On CUDA/MPS the wrappers (`forward_wrap.event_forward`) record a timeline of boundary events,
one per point on the stream, instead of a start/end pair per module: where module A's end and the
next timed module B's start are the same point (nothing timed or launched in between that the
profiler attributes elsewhere), B's start reuses A's end event. Each interval between two
consecutive events belongs to one slot (a component, a gap, or none: the layer's "other"), so a
decoder layer is still the sum of its components, gaps and "other".

B's start may reuse A's end when all of this holds (else B records its own start):
- the architecture comes from the registry (its component lists are curated in execution order
  and its gaps declared); a generic discovery shares only layer-to-layer and a layer's start;
- no declared gap ends at B and none starts at A: a gap (g, a, b) keeps its own two boundaries,
  a's end and b's start, and the interval between them is g;
- B runs in A's frame or deeper, but not as a sibling directly in the decoder layer: between two
  siblings inside a submodule (q_proj -> k_proj, gate_proj -> act_fn -> up_proj) runs only that
  submodule's code, whose real work the registry declares as gaps; entering a submodule (the
  layer's input norm -> q_proj) runs its prelude. Leaving a submodule (o_proj -> the next norm)
  or two direct children of the layer (Gemma2's norms) has the layer's residual add in between,
  so those keep two boundaries and the add stays in "other";
- A carries no forward hook (ours: the deep level's gate hook, the MoE router tap, which launch
  their own kernels after A's forward) and B no forward pre-hook, at attach;
- at run time, A's end was the timeline's last action (its owner marker), so a skipped module or
  an unexpected order falls back to two events, and A kept its output for the batched reduction
  (a big output reduced in the hook launches kernels after A's end: the next start is fresh).
A layer's first component reuses the layer's start; a layer's end is always its own event. At
the "layer" level a decoder layer's start reuses the previous layer's end (only the model's loop
runs between them); at the component level it does not, since the first component already
shares the layer's start and two shares in a row would put the loop's work into that component.

What moves in attribution, against a pair per module: work launched between two sharing
boundaries moves from "other" into the next timed slot. For the registry architectures that is
shape bookkeeping (views, transposes: no kernels) between q/k/v projections and into attention,
the MLP's prelude; at the "layer" level, anything the model's loop launches between two decoder
layers (into the next layer; it was in no layer before). Another library's hook or forward
replacement added after attach (accelerate's device moves) would land in the next component.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .architectures import Discovery

__all__ = ["UNSHARED", "Boundary", "plan_boundaries"]


@dataclass(frozen=True)
class Boundary:
    """One wrapper's part in the timeline: its markers, and which markers its start may reuse."""

    start_mark: int  # the owner marker set after this wrapper's start (-1: none may reuse it)
    end_mark: int  # the owner marker set after its end
    reuse_after: frozenset[int]  # markers after which this start reuses the last event
    after: int  # slot of the interval after its end: a gap's first component: the gap, else -1


UNSHARED = Boundary(-1, -1, frozenset(), -1)


def _parent(rel: str) -> str:
    return rel.rpartition(".")[0]


def _enters(pa: str, pb: str) -> bool:
    """Code between A's end and B's start is only a submodule's own code (see module doc)."""
    if pa == pb:
        return pa != ""  # siblings inside a submodule, not directly in the decoder layer
    return pa == "" or pb.startswith(pa + ".")


def _has_hooks(mod: nn.Module, pre: bool) -> bool:
    if pre:
        return bool(mod._forward_pre_hooks)
    return bool(mod._forward_hooks) or bool(getattr(mod, "_forward_hooks_always_called", None))


def plan_boundaries(
    disc: Discovery, level: str, cell: Callable[[int, str], int]
) -> dict[int, Boundary]:
    """The `Boundary` of each timed module, by `id(module)` (a shared module: its first layer)."""
    marks = itertools.count()
    plan: dict[int, Boundary] = {}
    prev_end: int | None = None
    registry = disc.how.startswith("registry:")
    ours: set[int] = set()  # modules we hook after their forward (they launch kernels there)
    if level != "layer":
        ours |= {id(r) for r in disc.routers if r is not None}
    if level == "deep":
        ours |= {id(g) for g in disc.gates if g is not None}
    for li, layer in enumerate(disc.layers):
        ls, le = next(marks), next(marks)
        chained = level == "layer" and prev_end is not None and not _has_hooks(layer, True)
        reuse_prev = frozenset((prev_end,)) if chained and prev_end is not None else frozenset()
        plan[id(layer)] = Boundary(ls, le, reuse_prev, -1)
        prev_end = None if _has_hooks(layer, False) else le
        if level == "layer":
            continue
        row = disc.components[li]
        path = {id(m): rel for rel, m in layer.named_modules()}
        timed: list[tuple[str, nn.Module]] = [
            *((n, m) for n, m in row.items()),
            *((f"{g} module", m) for g, m in disc.gap_modules[li]),
        ]
        gap_at = {a: cell(li, g) for g, a, b in disc.gaps if a in row and b in row}
        gap_ends = {b for g, a, b in disc.gaps if a in row and b in row}
        ends: dict[str, tuple[int, str, bool]] = {}  # name -> (end mark, parent path, may reuse)
        starts: dict[str, int] = {}
        for name, mod in timed:
            if id(mod) in plan:
                continue  # shared: hooked once, in its first layer
            starts[name], end = next(marks), next(marks)
            reusable = name not in gap_at and id(mod) not in ours and not _has_hooks(mod, False)
            ends[name] = (end, _parent(path.get(id(mod), name)), reusable)
        for name, mod in timed:
            if name not in starts:
                continue
            pb = _parent(path.get(id(mod), name))
            reuse = {ls}
            if name in gap_ends or _has_hooks(mod, True):
                reuse = set()
            elif registry:
                reuse |= {
                    e for a, (e, pa, ok) in ends.items() if a != name and ok and _enters(pa, pb)
                }
            plan[id(mod)] = Boundary(-1, ends[name][0], frozenset(reuse), gap_at.get(name, -1))
    return plan
