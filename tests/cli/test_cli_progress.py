"""The live progress line of `llm-energy profile`: on a terminal (a fake TTY stream) it shows the
phase, the tokens so far with their rate and the energy so far with its kind, rewritten in place
and ended with a newline; piped or --quiet, not one byte of it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.cli.progress import CLEAR_LINE, RunProgress, progress_line
from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.testing import new_synthetic_run

FAST = ["--power", "estimate", "--baseline-s", "0", "--no-warmup", "--level", "token"]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _profile(tiny_model_dir: Path, *extra: str) -> list[str]:
    return [
        "profile", "--prompt", "Hello there", "--model", str(tiny_model_dir),
        "--max-new-tokens", "6", "--no-store", *FAST, *extra,
    ]  # fmt: skip


def test_the_line_by_hand() -> None:
    assert progress_line("decode", 12, 14.25, 3.4123, "estimated") == (
        "decode · 12 tokens · 14.2 tokens/s · 3.41 J so far (estimated)"
    )
    assert progress_line("loading", 0, None, None, None) == (
        "loading · 0 tokens · – tokens/s · – J (kind unknown)"
    )
    assert progress_line("prefill", 1, None, 0.5, "measured").startswith("prefill · 1 token ·")


def test_counts_from_a_runs_events() -> None:
    """Tokens ending at 100, 150, 250 ms (one prefill, two decode): 1 decode step in 100 ms is
    10 tokens/s; energy readings 2.0 J then 5.5 J: 3.5 J so far, the source's kind."""
    run = new_synthetic_run(n_layers=1)
    stream = FakeTTY()
    bar = RunProgress(stream)
    bar.follow(run)
    rec = Recorder(run)
    rec.phase_start("prefill", 0.0)
    rec.token(1, "a", "prefill", 0.0, 100.0)
    rec.phase_start("decode", 100.0)
    rec.token(2, "b", "decode", 100.0, 150.0)
    rec.token(3, "c", "decode", 150.0, 250.0)
    rec.power({"t_ms": 0.0, "total_w": 1.0, "energy_j": 2.0, "kind": "measured"}, "decode")
    rec.power({"t_ms": 300.0, "total_w": 1.0, "energy_j": 5.5, "kind": "measured"}, "decode")
    assert bar.text() == "decode · 3 tokens · 10.0 tokens/s · 3.5 J so far (measured)"
    bar.close()
    out = stream.getvalue()
    assert out.startswith(CLEAR_LINE + "starting")
    assert out.endswith("decode · 3 tokens · 10.0 tokens/s · 3.5 J so far (measured)\n")
    assert "\n" not in out[:-1]  # one line, rewritten in place


def test_the_line_is_cut_to_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 columns: the line is cut to 39 characters (no wrap, which \\r could not rewrite)."""
    monkeypatch.setenv("COLUMNS", "40")
    stream = FakeTTY()
    bar = RunProgress(stream)
    bar.phase("loading")
    bar.close()
    cut = "loading · 0 tokens · – tokens/s · – J ("  # 39 of "... – J (kind unknown)"
    assert len(cut) == 39
    assert stream.getvalue() == (CLEAR_LINE + cut) * 2 + "\n"  # phase(), then close()


def test_on_a_terminal_the_run_shows_its_progress(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(_profile(tiny_model_dir)) == 0
    err = tty.getvalue()
    lines = err.split("\r\x1b[K")
    shown = [x for x in lines if " tokens/s · " in x]
    assert shown, err
    phases = [x.split(" · ")[0] for x in shown]
    assert phases[0] == "loading"
    for phase in ("tokenize", "prefill", "decode", "completed"):
        assert phase in phases, phases
    last = shown[-1]
    assert last.startswith("completed · 6 tokens · ")  # --max-new-tokens 6 of a random model
    assert last.rstrip("\n").endswith(" J so far (estimated)")
    assert err.endswith("\n")
    assert any(x.startswith("loaded tiny-llama") for x in lines)  # the load line kept whole


@pytest.mark.parametrize("extra", [[], ["--quiet"]])
def test_piped_or_quiet_no_progress_bytes(
    tiny_model_dir: Path, extra: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = FakeTTY() if extra else io.StringIO()  # --quiet on a terminal; else a pipe
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(_profile(tiny_model_dir, *extra)) == 0
    err = stream.getvalue()
    assert "\r" not in err
    assert "\x1b" not in err
    assert "tokens/s ·" not in err
    assert "J so far" not in err
    assert err.startswith("loaded tiny-llama")  # what a pipe always got


def test_a_terminal_gets_erase_line_but_no_other_escape() -> None:
    """The progress lines' own ESC [K passes; any other escape in text is shown as \\xNN."""
    from llm_energy_widget.cli.tty import TerminalSafe

    out = FakeTTY()
    TerminalSafe(out).write("\r\x1b[Kdecode\x1b[2J\x1b]0;t\x07")
    assert out.getvalue() == "\r\x1b[Kdecode\\x1b[2J\\x1b]0;t\\x07"
