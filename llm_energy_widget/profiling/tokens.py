"""Token boundaries on the generating thread, and text for each token.

`TokenClock` is a transformers streamer: `generate` calls `put` with the prompt, then with each new
token right after it is chosen. That call is the token's end time (after a device sync on
CUDA/MPS, so it is execution time, not launch time), and the start of the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

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


def device_sync_fn(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued device work, so a timestamp marks execution's end."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


class TokenClock(BaseStreamer):
    """Streamer that hands each new token to `on_token(token_id)` on the generating thread."""

    def __init__(self, on_token: Callable[[int], None], device: torch.device) -> None:
        self._on_token = on_token
        self._sync = device_sync_fn(device)
        self._prompt_seen = False
        self.batch_size = 1

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True  # the first call is the prompt itself
            return
        self._sync()
        flat = value.reshape(-1)
        self.batch_size = int(flat.numel())
        self._on_token(int(flat[0]))  # one record per step; batch rows share the step's time

    def end(self) -> None:
        pass
