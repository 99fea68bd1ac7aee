"""Command line: `halo-forge <group> ...` and `python -m halo_forge run pipeline.toml`.

One module per command group in this package, each exposing `register(subparsers)`; handlers
turn the parsed flags into the library's typed options and return an exit code. Group modules
must stay light at import time (no torch) so that `halo-forge verify` starts fast; heavy
imports go inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from halo_forge import __version__
from halo_forge.cli.parser import Parser
from halo_forge.errors import HaloError

# group name -> module exposing register(subparsers). Order is the order in --help.
_GROUPS = (
    "halo_forge.cli.run",
    "halo_forge.cli.data",
    "halo_forge.cli.sft",
    "halo_forge.cli.raft",
    "halo_forge.cli.benchmark",
    "halo_forge.cli.verify",
    "halo_forge.cli.bench",
    "halo_forge.cli.sandbox",
    "halo_forge.cli.cluster",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="halo-forge",
        description="Train code models with compiler- and test-verified rewards.",
        epilog="The whole run: `python -m halo_forge run [pipeline.toml]` (resumes after a crash).",
    )
    parser.add_argument("--version", action="version", version=f"halo-forge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
