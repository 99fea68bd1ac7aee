"""Command line: `halo-forge <stage> ...` and `python -m halo_forge run pipeline.toml`.

Each command group lives in the module that owns the stage and exposes
`register(subparsers)`; handlers take the parsed namespace and return an exit code.
Group modules must stay light at import time (no torch) so that `halo-forge verify`
starts fast; heavy imports go inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from halo_forge import __version__
from halo_forge.errors import HaloError

# group name -> module exposing register(subparsers). Order is the order in --help.
_GROUPS = (
    "halo_forge.pipeline_cli",
    "halo_forge.data.cli",
    "halo_forge.sft_cli",
    "halo_forge.raft_cli",
    "halo_forge.benchmark_cli",
    "halo_forge.verify.cli",
    "halo_forge.sandbox_cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a one-line HaloError (exit 2) instead of exiting."""

    def error(self, message: str):  # noqa: D401 - argparse API
        hint = _did_you_mean(message, self)
        raise HaloError(f"{message}{hint} (see `{self.prog} --help`)")


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every --option of a parser and of all its subcommands."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def _did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """A hint for a typo: an unknown command or an unknown --option."""
    import difflib
    import re

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        wrong, choices = m.group(1), re.findall(r"'?([\w-]+)'?", m.group(2))
    else:
        m = re.search(r"unrecognized arguments: (--[\w-]+)", message)
        if not m:
            return ""
        wrong, choices = m.group(1), sorted(_option_strings(parser))
    close = difflib.get_close_matches(wrong, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="halo-forge",
        description="Train code models with compiler- and test-verified rewards.",
        epilog="The whole run: `python -m halo_forge run [pipeline.toml]` (resumes after a crash).",
    )
    parser.add_argument("--version", action="version", version=f"halo-forge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that stage is not built yet
                continue
            raise
        module.register(sub)
    return parser


# What a shell reports for a writer killed by SIGPIPE (`yes | head` under pipefail).
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (tests call this directly)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 2
        code = int(handler(args) or 0)
        # Flushed here, not at exit, so a reader gone before the last buffer is caught below.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of stdout stopped (`| head`): what it wanted is printed, so stop quietly.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except HaloError as exc:
        print(f"halo-forge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("halo-forge: interrupted", file=sys.stderr)
        return 130


def _discard_stdout() -> None:
    """Points stdout at /dev/null, so the interpreter's own flush of what is still buffered at
    exit does not print a second BrokenPipeError."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def entry() -> None:
    sys.exit(main())
