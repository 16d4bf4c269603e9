"""Text for a terminal: stored strings (model names, experiments, errors, token text) come from
models and users, and an escape sequence in them could rewrite the screen or the window title.
On a TTY every control character but newline, tab and carriage return is shown as `\\xNN`; the one
sequence let through is erase-to-end-of-line (`ESC [K`), which progress lines write themselves."""

from __future__ import annotations

import io
import re
from typing import TextIO

__all__ = ["ERASE_LINE", "TerminalSafe", "printable", "terminal_safe"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
ERASE_LINE = "\x1b[K"
"""Erase to the end of the line: harmless (it cannot move the cursor or retitle the window)."""


def printable(text: str) -> str:
    """`text` with C0/C1 control characters (ESC, BEL, backspace…) made visible as `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class TerminalSafe(io.TextIOBase):
    """A text stream that writes `printable(text)` to a terminal, and passes everything else."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(ERASE_LINE.join(printable(part) for part in text.split(ERASE_LINE)))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def terminal_safe(stream: TextIO) -> TextIO:
    """`stream` wrapped when it is a terminal; pipes and files get the bytes as stored."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty() and not isinstance(stream, TerminalSafe):
        return TerminalSafe(stream)  # type: ignore[return-value]
    return stream
