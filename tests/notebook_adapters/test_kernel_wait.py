"""kernel_wait: a plain wait outside a kernel; inside one, comms handled and cells kept in order."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from llm_energy_widget.notebook import kernel_wait
from llm_energy_widget.notebook.kernel_wait import wait_processing_kernel_events


def _set_later(event: threading.Event, delay_s: float) -> threading.Timer:
    timer = threading.Timer(delay_s, event.set)
    timer.start()
    return timer


def test_outside_a_kernel_it_is_a_plain_wait() -> None:
    assert kernel_wait._current_kernel() is None  # pytest is no kernel
    event = threading.Event()
    t0 = time.monotonic()
    assert wait_processing_kernel_events(event, 0.15) is False
    assert 0.14 <= time.monotonic() - t0 < 2.0
    _set_later(event, 0.05)
    assert wait_processing_kernel_events(event, 10) is True
    assert wait_processing_kernel_events(event, 0) is True  # already set: no wait


def test_without_timeout_it_returns_when_the_event_is_set() -> None:
    event = threading.Event()
    _set_later(event, 0.05)
    t0 = time.monotonic()
    assert wait_processing_kernel_events(event) is True
    assert time.monotonic() - t0 < 5.0


def test_off_the_main_thread_it_is_a_plain_wait() -> None:
    seen: list[Any] = []

    def worker() -> None:
        seen.append(kernel_wait._current_kernel())
        seen.append(wait_processing_kernel_events(threading.Event(), 0.05))

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert seen == [None, False]


def test_an_unknown_kind_of_kernel_gets_a_plain_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell whose kernel lacks what this module drives (another kernel, an old ipykernel)."""
    ipython = pytest.importorskip("IPython")
    pytest.importorskip("ipykernel")
    shell = SimpleNamespace(kernel=SimpleNamespace(session=None))
    monkeypatch.setattr(ipython, "get_ipython", lambda: shell)
    assert kernel_wait._current_kernel() is None
    event = threading.Event()
    _set_later(event, 0.05)
    assert wait_processing_kernel_events(event, 10) is True


def test_a_kernel_without_a_main_shell_stream_gets_a_plain_wait() -> None:
    kernel = SimpleNamespace(shell_channel_thread=None, shell_stream=None)
    assert kernel_wait._main_shell_stream(kernel) is None
    thread = SimpleNamespace(parent_thread=threading.current_thread(), manager=None)
    assert kernel_wait._main_shell_stream(SimpleNamespace(shell_channel_thread=thread)) is None


# -- inside a real ipykernel ----------------------------------------------------------------------

SETUP_CELL = """
import threading
from llm_energy_widget.notebook.kernel_wait import wait_processing_kernel_events
done = threading.Event()
def _target(comm, open_msg):
    print("comm opened")
    @comm.on_msg
    def _on(msg):
        print("comm got", msg["content"]["data"]["n"])
        if msg["content"]["data"]["n"] == 2:
            done.set()
get_ipython().kernel.comm_manager.register_target("kw-test", _target)
"""
WAIT_CELL = 'ok = wait_processing_kernel_events(done, 60)\nprint("waited", ok)'
OPEN = {"target_name": "kw-test", "data": {}}
NEXT_CELL = 'print("next cell ran; done was", done.is_set())'


@pytest.fixture(scope="module")
def kernel_client() -> Iterator[Any]:
    manager_mod = pytest.importorskip("jupyter_client.manager")
    km, kc = manager_mod.start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str) -> str:
    return str(kc.execute(code, store_history=True))


def _shell_send(kc: Any, msg_type: str, content: dict[str, Any]) -> str:
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    return str(msg["header"]["msg_id"])


def _collect(
    kc: Any,
    ids: set[str],
    timeout_s: float,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """IOPub messages until every id in `ids` has gone idle (or one message meets `until`)."""
    out: list[dict[str, Any]] = []
    idle: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while idle != ids or (until is not None and not ids):
        left = deadline - time.monotonic()
        assert left > 0, f"kernel did not finish: idle {idle} of {ids}; saw {out}"
        msg = kc.get_iopub_msg(timeout=left)
        parent = msg["parent_header"].get("msg_id")
        out.append(msg)
        if until is not None and until(msg):
            return out
        state = msg["content"].get("execution_state")
        if msg["msg_type"] == "status" and state == "idle" and parent in ids:
            idle.add(parent)
    return out


def _stream_lines(msgs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(parent msg id, line) of every stdout line, in order."""
    return [
        (m["parent_header"].get("msg_id"), line)
        for m in msgs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        for line in m["content"]["text"].splitlines()
    ]


def test_in_a_kernel_comms_reach_a_waiting_cell_and_later_cells_wait(kernel_client: Any) -> None:
    kc = kernel_client
    setup = _execute(kc, SETUP_CELL)
    _collect(kc, {setup}, 60)
    t0 = time.monotonic()
    waiting = _execute(kc, WAIT_CELL)
    following = _execute(kc, NEXT_CELL)  # queued while the cell above waits: must not run inside
    comm_id = uuid.uuid4().hex
    opened = _shell_send(kc, "comm_open", OPEN | {"comm_id": comm_id})
    # The kernel's shell-channel thread looks a comm_msg's comm up on arrival (ipykernel 7.4):
    # one sent before the open is handled logs "No such comm". A frontend opens its comms first.
    msgs = _collect(kc, set(), 30, until=lambda m: _stream_lines([m]) == [(opened, "comm opened")])
    _shell_send(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": 1}})
    last = _shell_send(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": 2}})
    msgs += _collect(kc, {waiting, following}, 60)
    assert time.monotonic() - t0 < 30, "the comm did not end the wait"
    lines = _stream_lines(msgs)
    texts = [text for _, text in lines]
    assert texts == [
        "comm opened",
        "comm got 1",
        "comm got 2",
        "waited True",
        "next cell ran; done was True",
    ]
    assert lines[2][0] == last  # the comm's output goes with the comm's message
    assert lines[3][0] == waiting  # ...and the waiting cell keeps its own output
    assert lines[4][0] == following
    inputs = [m["parent_header"]["msg_id"] for m in msgs if m["msg_type"] == "execute_input"]
    assert inputs == [waiting, following]
    # the next cell started only after the waiting cell had finished (went idle)
    order = [
        (m["parent_header"].get("msg_id"), m["msg_type"], m["content"].get("execution_state"))
        for m in msgs
    ]
    assert order.index((waiting, "status", "idle")) < order.index(
        (following, "execute_input", None)
    )
    reply = kc.get_shell_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != waiting:
        reply = kc.get_shell_msg(timeout=10)
    assert reply["content"]["status"] == "ok"


def test_in_a_kernel_a_timeout_still_returns_false(kernel_client: Any) -> None:
    kc = kernel_client
    t0 = time.monotonic()
    cell = _execute(kc, 'print("timed", wait_processing_kernel_events(threading.Event(), 0.3))')
    msgs = _collect(kc, {cell}, 30)
    assert [t for _, t in _stream_lines(msgs)] == ["timed False"]
    assert time.monotonic() - t0 < 10
