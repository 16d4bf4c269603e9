"""Which cell execution is running now: the shell's parent message, an ipykernel internal."""

from __future__ import annotations

import threading

__all__ = ["current_cell"]


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
