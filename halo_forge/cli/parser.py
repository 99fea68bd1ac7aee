"""The argparse pieces every command group shares: a parser whose usage errors are one-line
HaloErrors, and `add_group`, the one way a group (`data`, `sft`, `bench`, ...) is made."""

from __future__ import annotations

import argparse
import difflib
import re

from halo_forge.errors import HaloError


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a one-line HaloError (exit 2) instead of exiting."""

    _seen: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # noqa: D401 - argparse API
        # Kept so that error() can tell a missing command from a mistyped one.
        self._seen = list(args or [])
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # noqa: D401 - argparse API
        missing = _missing_command(message, self)
        if missing:
            raise HaloError(missing)
        hint = _did_you_mean(message, self)
        raise HaloError(f"{message}{hint} (see `{self.prog} --help`)")


def _options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """--option -> its help, for a parser and all its subcommands."""
    found: dict[str, str] = {}
    for action in parser._actions:
        for s in action.option_strings:
            if s.startswith("--"):
                found.setdefault(s, action.help or "")
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for s, text in _options(sub).items():
                    found.setdefault(s, text)
    return found


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _missing_command(message: str, parser: "Parser") -> str:
    """`halo-forge benchmark --model x`: argparse takes `x` for the command; the mistake is the
    command left out, so name it (the command that has the option given first)."""
    m = re.search(r"invalid choice: '?([^' ]*)'? \(choose from", message)
    sub = _subparsers(parser)
    if not m or sub is None or m.group(1) not in parser._seen:
        return ""
    before = parser._seen[: parser._seen.index(m.group(1))]
    flags = [a.split("=")[0] for a in before if a.startswith("--")]
    if not flags:
        return ""
    fits = [name for name, p in sub.choices.items() if flags[0] in _options(p)]
    example = f" (`{parser.prog} {fits[0]} {' '.join(parser._seen)}`)" if fits else ""
    return (f"{parser.prog}: the command is missing before {flags[0]}: one of "
            f"{', '.join(sub.choices)}{example}")


def _invoked(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The (sub)command the arguments named: `benchmark run --n 10` -> benchmark run's parser,
    whose options are the ones the user can have meant."""
    seen = getattr(parser, "_seen", [])
    while (sub := _subparsers(parser)) is not None:
        name = next((a for a in seen if a in sub.choices), None)
        if name is None:
            break
        parser, seen = sub.choices[name], seen[seen.index(name) + 1:]
    return parser


def _did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """A hint for a typo: an unknown command or an unknown --option."""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        wrong, choices = m.group(1), re.findall(r"'?([\w-]+)'?", m.group(2))
        close = difflib.get_close_matches(wrong, choices, n=1)
        return f"; did you mean '{close[0]}'?" if close else ""
    # argparse also reads a typo as an abbreviation: "ambiguous option: --n could match ...".
    m = re.search(r"(?:unrecognized arguments|ambiguous option): (--[\w-]+)", message)
    if not m:
        return ""
    wrong, options = m.group(1), _options(_invoked(parser))
    # A flag whose help names the word typed (`--n` -> `--samples`, "n: samples per problem")
    # is what the user meant, however far its spelling is from theirs.
    word = re.escape(wrong[2:])
    # A help that defines the word ("n: samples per problem") first, then any that names it.
    named = sorted(o for o, text in options.items() if re.match(rf"{word}:", text)) or sorted(
        o for o, text in options.items()
        if re.search(rf"(?<![\w-]){word}(?![\w-])", text.split(".")[0][:60]))
    close = difflib.get_close_matches(wrong, named or sorted(options), n=1, cutoff=0 if named
                                      else 0.6)
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
