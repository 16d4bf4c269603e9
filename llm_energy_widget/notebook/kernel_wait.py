"""Waiting in a notebook cell while the kernel still hears its widgets.

A cell blocked in `run.wait()` keeps the kernel busy: the Stop button's comm message would sit in
the shell queue until the run ends on its own. While such a wait blocks the main thread of an
ipykernel >= 7 kernel, this module takes over the stream that hands shell messages to the main
thread (the way jupyter-ui-poll does): comm messages (comm_open / comm_msg / comm_close) are
dispatched at once, exactly as ipykernel dispatches them next to a running async cell; anything
else (the next cell's execute_request during run-all, say) is held and handed back to the kernel,
in order, when the wait ends, so it runs after this cell as it would have. Anywhere else (a plain
Python process, another thread, an unknown kernel) the wait is a plain `threading.Event.wait`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["COMM_MSG_TYPES", "POLL_S", "wait_processing_kernel_events"]

log = logging.getLogger(__name__)

COMM_MSG_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
POLL_S = 0.02  # how often pending shell messages are looked at while waiting

_active = threading.local()  # set while a wait owns the shell stream (no nesting)


def wait_processing_kernel_events(event: threading.Event, timeout: float | None = None) -> bool:
    """Wait for `event` like `event.wait(timeout)`, handling widget messages meanwhile.

    Returns True if the event was set within `timeout` seconds (None: no limit).
    """
    kernel = _current_kernel()
    stream = _main_shell_stream(kernel) if kernel is not None else None
    if kernel is None or stream is None or getattr(_active, "on", False):
        return event.wait(timeout)
    _active.on = True
    try:
        return _ShellPump(kernel, stream).wait(event, timeout)
    finally:
        _active.on = False


def _current_kernel() -> Any | None:
    """The ipykernel (>= 7) kernel whose main thread this is, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return None  # never import a kernel into a process that is not one
    try:
        import ipykernel
        from IPython import get_ipython
    except ImportError:
        return None
    if getattr(ipykernel, "version_info", (0,)) < (7,):
        return None  # ipykernel 6 dispatches through a message queue: another mechanism
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    needed = ("session", "dispatch_shell", "set_parent", "get_parent", "_parent_ident")
    if kernel is None or not all(hasattr(kernel, name) for name in needed):
        return None
    try:  # the comm-beside-a-busy-cell dispatch this module relies on
        params = inspect.signature(kernel.dispatch_shell).parameters
    except (TypeError, ValueError):
        return None
    if "subshell_id" not in params or "concurrent" not in params:
        return None
    return kernel


def _main_shell_stream(kernel: Any) -> Any | None:
    """The ZMQStream that hands shell messages to the main thread's event loop, or None.

    With subshells (the ipykernel 7 default) a shell-channel thread reads the shell socket and
    forwards main-shell messages over an inproc pair; without, the shell stream itself.
    """
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is not None:
        if getattr(thread, "parent_thread", None) is not threading.current_thread():
            return None
        pair = getattr(getattr(thread, "manager", None), "_shell_channel_to_main", None)
        stream = getattr(pair, "to_stream", None)
    else:
        stream = getattr(kernel, "shell_stream", None)
    needed = ("on_recv", "flush", "_recv_callback", "_recv_copy", "closed")
    if stream is None or not all(hasattr(stream, name) for name in needed):
        return None
    if stream.closed() or not callable(stream._recv_callback):
        return None
    return stream


class _ShellPump:
    """Owns the main shell stream for one wait: comms now, everything else afterwards."""

    def __init__(self, kernel: Any, stream: Any) -> None:
        self.kernel = kernel
        self.stream = stream
        self.held: list[Any] = []

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        import zmq

        original: Callable[[Any], Any] = self.stream._recv_callback
        copy = self.stream._recv_copy
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self.stream.on_recv(self._on_message, copy=copy)
        try:
            while True:
                self.stream.flush(zmq.POLLIN)
                left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
                if event.wait(max(0.0, left)):
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return event.is_set()
        finally:
            self.stream.on_recv(original, copy=copy)
            self._hand_back(original)

    def _on_message(self, frames: list[Any]) -> None:
        msg_type = self._msg_type(frames)
        if msg_type in COMM_MSG_TYPES and self._can_dispatch_now(msg_type):
            try:
                self._dispatch_comm(frames)
            except Exception:  # the kernel logs handler errors itself; this is a last guard
                log.exception("a comm message could not be handled while a cell waited")
        else:
            self.held.append(frames)

    def _msg_type(self, frames: list[Any]) -> str | None:
        session = self.kernel.session
        try:
            _, parts = session.feed_identities(frames, copy=False)
            header = session.deserialize(parts, content=False, copy=False)["header"]
            return str(header.get("msg_type"))
        except Exception:
            return None  # the kernel will report it when it handles it

    def _can_dispatch_now(self, msg_type: str) -> bool:
        """Comm handlers are plain functions in ipykernel 7: their dispatch needs no loop."""
        handler = getattr(self.kernel, "shell_handlers", {}).get(msg_type)
        return (
            handler is not None
            and not inspect.iscoroutinefunction(handler)
            and not inspect.iscoroutinefunction(self.kernel.should_handle)
        )

    def _dispatch_comm(self, frames: list[Any]) -> None:
        """As ipykernel does for a comm beside a busy async cell; the cell keeps its output."""
        kernel = self.kernel
        parent = kernel.get_parent("shell")
        ident = kernel._parent_ident["shell"]
        coro = kernel.dispatch_shell(frames, subshell_id=None, concurrent=True)
        try:
            contextvars.copy_context().run(_run_without_loop, coro)
        finally:
            kernel.set_parent(ident, parent, channel="shell")

    def _hand_back(self, original: Callable[[Any], Any]) -> None:
        """Deliver held messages as the stream would have, in order, before any newer one."""
        loop = getattr(self.stream.io_loop, "asyncio_loop", None)
        for frames in self.held:
            try:
                result = original(frames)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result, loop=loop)
                    task.add_done_callback(_log_failure)
            except Exception:
                log.exception("could not hand a held shell message back to the kernel")
        self.held.clear()


def _run_without_loop(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends (no real await inside) to its end, here and now."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    log.error("a comm message handler suspended while a cell waited; its message was dropped")


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("held shell message failed", exc_info=task.exception())
