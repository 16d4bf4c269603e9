"""`llm-energy` command line: one module per command family, registered here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from ..errors import EnergyWidgetError, InvalidInputError

__all__ = ["COMMAND_MODULES", "EXIT_CODES", "build_parser", "main"]

# Each module defines `register(subparsers)`; the parser it adds sets `func(args) -> int`.
COMMAND_MODULES = ("power_cmd", "predict_cmd", "profile_cmd", "runs_cmd", "sweep_cmd")

EXIT_CODES = {
    0: "ok",
    1: "partial: the command ran but not all of it succeeded - a run that ended failed or "
    "incomplete, a sweep with failed points, power readings with malformed samples skipped, "
    "a deletion or prune declined at the prompt",
    2: "usage or input error (one line on stderr, nothing run or changed)",
    130: "interrupted (Ctrl-C); a partial run keeps what it measured",
}
"""`llm-energy`'s exit statuses, shown in `--help` and docs/cli.md (tests/cli checks each)."""


class _Parser(argparse.ArgumentParser):
    """A usage error is one line like every other error (`llm-energy: error: ...`, exit 2), not
    argparse's usage block; `--help` shows the usage."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInputError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(
        prog="llm-energy",
        description="Measure where the energy of LLM text generation goes.",
        epilog="exit status:\n"
        + "\n".join(
            textwrap.fill(text, 90, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
            for code, text in EXIT_CODES.items()
        )
        + "\n\n--json output of each command is described by a JSON Schema in docs/schemas/.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .tty import terminal_safe

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = terminal_safe(out), terminal_safe(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except InvalidInputError as exc:
        print(f"llm-energy: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="llm-energy: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except EnergyWidgetError as exc:
        print(f"llm-energy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm-energy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
