"""Stored text printed to a terminal cannot carry escape sequences; pipes get it as stored."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from llm_energy_widget.cli.tty import printable
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

TITLE = "\x1b]0;pwned\x07"  # sets the terminal window's title
CLEAR = "\x1b[2J\x1b[H"  # clears the screen


def _stored_run(path: Path) -> str:
    run = synthetic_run(n_tokens=3, n_layers=1, finish=False)
    run.model["name"] = f"evil{TITLE}model"
    run.experiment = f"exp{CLEAR}"
    run.warnings.append(f"warning with {CLEAR} inside")
    Recorder(run).finish("completed", f"done{CLEAR}")
    store = Store(path)
    store.record(run).wait(10)
    return run.run_id


def _on_a_tty(args: list[str]) -> bytes:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it printed."""
    main_fd, tty_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_energy_widget", *args],
        stdout=tty_fd,
        stderr=tty_fd,
        stdin=subprocess.DEVNULL,
        close_fds=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(tty_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(60)
    os.close(main_fd)
    return b"".join(chunks)


def test_show_and_runs_on_a_terminal_print_no_escape_sequences(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = _stored_run(path)
    for args in (["show", run_id, "--store", str(path)], ["runs", "--store", str(path)]):
        out = _on_a_tty(args)
        assert b"\x1b" not in out, (args, out[:400])
        assert b"\x07" not in out, (args, out[:400])
        assert b"evil\\x1b]0;pwned\\x07model" in out  # made visible, not dropped
    shown = _on_a_tty(["show", run_id, "--store", str(path)])
    assert b"warning with \\x1b[2J\\x1b[H inside" in shown


def test_piped_output_keeps_the_text_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = _stored_run(path)
    out = subprocess.run(
        [sys.executable, "-m", "llm_energy_widget", "show", run_id, "--store", str(path), "--json"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"\\u001b]0;pwned\\u0007" in out  # JSON escapes it; the data is unchanged


def test_printable_keeps_newlines_tabs_and_text() -> None:
    assert printable("a\tb\nc é 漢") == "a\tb\nc é 漢"
    assert printable("\x1b[31mred\x9b") == "\\x1b[31mred\\x9b"
