"""Token boundaries on the generating thread, and text for each token.

`TokenClock` ends each token where the decoding step that chose it ends, on both stop-check
paths of transformers 5.x `generate` (see the class). Boundaries are taken after a device sync on
CUDA/MPS, so they are execution time, not launch time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["MAX_QUEUED_STEPS", "IncrementalDetokenizer", "OnToken", "TokenClock", "device_sync_fn"]

try:  # transformers >= 4.40
    from transformers.generation.streamers import BaseStreamer
except ImportError:  # pragma: no cover - very old transformers
    BaseStreamer = object  # type: ignore[misc,assignment]


class IncrementalDetokenizer:
    """Text of each new token that stays right for multi-byte characters and merged BPE pieces.

    Decoding a token alone loses the leading space of SentencePiece pieces and splits UTF-8
    characters spread over byte tokens. So decode a short window of recent ids and emit only the new
    suffix, holding back text that ends in an incomplete character (U+FFFD) until the next token
    completes it.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special = skip_special_tokens
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=self.skip_special))

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes ("" while a character is incomplete)."""
        self.ids.append(int(token_id))
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if full.endswith("\ufffd") or len(full) <= len(prefix):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self.ids)
        return full[len(prefix) :]

    def flush(self) -> str:
        """Whatever is still held back at the end (an incomplete character is kept as U+FFFD)."""
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self.ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


def _cuda_sync(device: torch.device) -> Callable[[], None]:
    return lambda: torch.cuda.synchronize(device)


def device_sync_fn(device: torch.device | Sequence[torch.device]) -> Callable[[], None]:
    """A function that waits for queued device work, so a timestamp marks execution's end: on
    every device the model occupies (a split model's last layers run on another GPU)."""
    devs = (device,) if isinstance(device, torch.device) else tuple(device)
    cuda = [d for d in devs if d.type == "cuda"]
    mps = any(d.type == "mps" for d in devs)
    syncs: list[Callable[[], None]] = [_cuda_sync(d) for d in cuda]
    if mps:
        syncs.append(torch.mps.synchronize)
    if not syncs:
        return lambda: None
    if len(syncs) == 1:
        return syncs[0]

    def sync_all() -> None:
        for fn in syncs:
            fn()

    return sync_all


OnToken = Callable[[list[int], float, Any], None]
"""(each batch row's new token id, the step's end ms, what `take` returned), once per step."""
MAX_QUEUED_STEPS = 2  # at a step: 0 queued on the ordinary path, 1 on the deferred one


class TokenClock(BaseStreamer):
    """Streamer that hands each step's new tokens (one per batch row), its end time and its
    measurements to `on_token`.

    `generate` reaches us twice per decoding step, both on the generating thread:
    - `step` (through a stopping criterion, see `generation.StepCriteria`), right after the step's
      forward and token choice: exactly once per chosen token, chunked prefill forwards included
      in the first. The boundary is timed here and queued with `take()` (the step's layer
      measurements, taken before the next forward adds to them);
    - `put`, with the token itself: in the same step on the ordinary path, but one step late on
      the deferred stop-check path (`DeferredStopCheck`, MPS in transformers 5.x), after the next
      step's forward ran. Each put claims the oldest queued step, so token k ends where step k
      ended on both paths. The deferred path's extra step (its token is undone, never put) stays
      queued: `discard` drops it after generate, its time belongs to what follows the last token.
    A put that finds no queued step (a loop that streams before its stopping criteria, such as
    assisted generation) makes this clock time that token and every later one at the put.
    """

    def __init__(
        self,
        on_token: OnToken,
        now_ms: Callable[[], float],
        device: torch.device | Sequence[torch.device],
        take: Callable[[], Any] | None = None,
        after_end: Callable[[], None] | None = None,
    ) -> None:
        self._on_token = on_token
        self._now = now_ms
        self._take = take
        self._after_end = after_end
        self._sync = device_sync_fn(device)
        self._ends_ms: deque[float] = deque()  # queued steps, oldest first
        self._taken: deque[Any] = deque()
        self._at_put = False  # fallback: no step queued when a token came
        self._prompt_seen = False
        self.batch_size = 1

    def step(self) -> None:
        """A decoding step chose its token: time the boundary (execution time) and queue it."""
        if self._at_put:
            return
        if len(self._ends_ms) >= MAX_QUEUED_STEPS:  # a generate that never streams: stay bounded
            self._ends_ms.popleft()
            if self._take is not None:
                self._taken.popleft()
        self._sync()
        # taken before the boundary: the taking (and whatever `take` settles for the next
        # token) is the ending token's time; `after_end` runs in the next token's
        taken = self._take() if self._take is not None else None
        self._ends_ms.append(self._now())
        if self._take is not None:
            self._taken.append(taken)
        if self._after_end is not None:
            self._after_end()

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True  # the first call is the prompt itself
            return
        flat = value.reshape(-1)
        self.batch_size = int(flat.numel())
        if self._ends_ms:
            t = self._ends_ms.popleft()
            taken = self._taken.popleft() if self._take is not None else None
        else:
            self._at_put = True
            self._sync()
            taken = self._take() if self._take is not None else None
            t = self._now()
            if self._after_end is not None:
                self._after_end()
        self._on_token([int(x) for x in flat.tolist()], t, taken)  # the rows share the step's time

    def discard(self) -> int:
        """Drop the steps no token claimed (the deferred path's undone one); return how many."""
        n = len(self._ends_ms)
        self._ends_ms.clear()
        self._taken.clear()
        return n

    def end(self) -> None:
        pass
