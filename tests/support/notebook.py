"""A notebook without a frontend: IPython's display messages land in cells the way JupyterLab and
nbclient apply them, so tests read what the kernel leaves in each output.

`display_data` goes to the cell running now (a thread's display too, as ipykernel sends it with
the latest execute request as parent); `update_display_data` replaces every output with its
display id, in whatever cell. `to_notebook()` is the file a save writes (no widget state, as
JupyterLab's default and VS Code save it).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nbformat
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class _Publisher(DisplayPublisher):
    def __init__(self, nb: FakeNotebook) -> None:
        super().__init__()
        self.nb = nb

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **_kw: Any,
    ) -> None:
        self.nb._publish(data, metadata or {}, transient or {}, update)

    def clear_output(self, wait: bool = False) -> None:  # pragma: no cover - unused
        pass


class _Kernel:
    """What `widget._current_cell` asks of ipykernel: the running execute request."""

    def __init__(self, nb: FakeNotebook) -> None:
        self.nb = nb

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        msg_id = self.nb.current_msg_id
        if msg_id is None:
            return {}
        return {"header": {"msg_type": "execute_request", "msg_id": msg_id}}


class FakeNotebook:
    """Cells of outputs filled by the display messages of the code run inside `cell()`."""

    def __init__(self) -> None:
        self.shell = InteractiveShell.instance()
        self.cells: list[list[dict[str, Any]]] = []
        self.sources: list[str] = []
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.current_msg_id: str | None = None
        self._current = -1
        self._lock = threading.Lock()
        self._saved_pub = self.shell.display_pub
        self._saved_kernel = getattr(self.shell, "kernel", None)
        self.shell.display_pub = _Publisher(self)
        self.shell.kernel = _Kernel(self)  # type: ignore[attr-defined]
        self._ids = itertools.count()

    def close(self) -> None:
        self.shell.display_pub = self._saved_pub
        self.shell.kernel = self._saved_kernel  # type: ignore[attr-defined]

    @contextmanager
    def cell(self, source: str = "") -> Iterator[int]:
        """Code run inside is one cell's execution; output from threads goes here meanwhile."""
        with self._lock:
            self.cells.append([])
            self.sources.append(source)
            self._current = len(self.cells) - 1
            self.current_msg_id = f"execute-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        try:
            yield self._current
        finally:
            self.current_msg_id = None  # between cells: no execution (a thread still writes here)

    def _publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any],
        transient: dict[str, Any],
        update: bool,
    ) -> None:
        display_id = transient.get("display_id")
        with self._lock:
            self.messages.append(("update" if update else "display", {"id": display_id}))
            if update:
                for outs in self.cells:
                    for o in outs:
                        if display_id is not None and o["display_id"] == display_id:
                            o["data"], o["metadata"] = dict(data), dict(metadata)
                return
            if self._current < 0:
                return
            self.cells[self._current].append(
                {"display_id": display_id, "data": dict(data), "metadata": dict(metadata)}
            )

    # -- reading it back ---------------------------------------------------------------------------
    def outputs(self, cell: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self.cells[cell]]

    def widget_views(self) -> list[tuple[int, str]]:
        """(cell, model id) of every output still holding the widget view."""
        with self._lock:
            return [
                (i, o["data"][WIDGET_VIEW]["model_id"])
                for i, outs in enumerate(self.cells)
                for o in outs
                if WIDGET_VIEW in o["data"]
            ]

    def to_notebook(self) -> nbformat.NotebookNode:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        for source, outs in zip(self.sources, self.cells, strict=True):
            cell = nbformat.v4.new_code_cell(source)
            cell.outputs = [
                nbformat.v4.new_output("display_data", data=o["data"], metadata=o["metadata"])
                for o in outs
            ]
            nb.cells.append(cell)
        return nb

    def saved_bytes(self) -> int:
        """Size of the .ipynb a save writes (nbformat's JSON, indent 1, as JupyterLab writes)."""
        return len(nbformat.writes(self.to_notebook()).encode("utf-8"))


def png_size(b64: str) -> tuple[int, int]:
    """(width, height) from a base64 PNG's IHDR chunk."""
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def shown_run_id(output: dict[str, Any]) -> str | None:
    """The run an output shows: its text/plain names it (live or final)."""
    text = output["data"].get("text/plain", "")
    for word in text.replace("(", " ").split():
        if len(word) == 12 and all(c in "0123456789abcdef" for c in word):
            return word
    return None


def dumps_size(obj: Any) -> int:
    return len(json.dumps(obj).encode("utf-8"))
