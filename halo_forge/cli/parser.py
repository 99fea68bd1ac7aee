"""The argparse pieces every command group shares: a parser whose usage errors are one-line
HaloErrors, and `add_group`, the one way a group (`data`, `sft`, `bench`, ...) is made."""

from __future__ import annotations

import argparse
import difflib
import re

from halo_forge.errors import HaloError


class Parser(argparse.ArgumentParser):
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


def add_group(subparsers: argparse._SubParsersAction, name: str, *,
              help: str) -> argparse._SubParsersAction:  # noqa: A002 - argparse's own name
    """The subcommands of group `name` (`halo-forge NAME COMMAND`), made on first call and the
    same ones after, so several modules may add commands to one group (`bench verify`,
    `bench pipeline`). The group alone prints its help and exits 2."""
    group = subparsers.choices.get(name)
    if group is not None:
        for action in group._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
        raise RuntimeError(f"`{name}` is a command, not a group")
    group = subparsers.add_parser(name, help=help)
    commands = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND",
                                    parser_class=type(group))

    def usage(_args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(handler=usage)
    return commands
