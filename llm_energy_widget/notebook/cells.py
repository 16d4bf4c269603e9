"""Which cell execution is running now: the shell's parent message, an ipykernel internal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["current_cell", "in_kernel", "on_cell_end", "parent_request"]


def current_cell() -> str | None:
    """The msg_id of the cell execution running now (None outside a kernel, or off its thread).

    Outputs made by one execution (a loop of runs in one cell) are re-used by its next run;
    outputs of other cells keep the run they showed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except Exception:
        return None
    header = parent.get("header") if isinstance(parent, dict) else None
    if not isinstance(header, dict) or header.get("msg_type") != "execute_request":
        return None
    msg_id = header.get("msg_id")
    return msg_id if isinstance(msg_id, str) else None


def in_kernel() -> bool:
    """Whether this process is a notebook kernel (an IPython shell with a kernel attached)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def parent_request() -> dict[str, Any]:
    """The execute request being run (header, metadata), or {} outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return {}
    ip = get_ipython()
    get = getattr(ip, "get_parent", None)
    try:
        parent = get() if callable(get) else getattr(ip, "parent_header", None)
    except Exception:
        return {}
    return parent if isinstance(parent, dict) else {}


def on_cell_end(callback: Callable[[], None]) -> bool:
    """Call `callback` once, after the running cell ends; False outside IPython (never called)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "events"):
        return False

    def cell_ended(*_args: Any) -> None:
        shell.events.unregister("post_run_cell", cell_ended)
        callback()

    shell.events.register("post_run_cell", cell_ended)
    return True
