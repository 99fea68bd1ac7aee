"""Command-line flags made from a settings Struct, so a setting is defined once: its name, type,
default and help (`msgspec.Meta(description=...)`) live on the Struct that is also the
pipeline.toml section and the library's config, and the flags follow.

    names = add_struct_flags(parser, SftSettings, aliases={"learning_rate": ("--lr",)})
    settings = struct_from_args(SFTConfig, args, model=args.model)

A generated flag defaults to None (not given), so a flag overrides only what it names: the
Struct's own default, or the value a config file gave (`defaults=True` puts the Struct's default
in the namespace instead, for commands without a config file). `--x/--no-x` for booleans, `choices`
for Literals, comma-separated values for lists.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

_NoneType = type(None)


def _unwrap(t: Any) -> tuple[Any, str]:
    """(the type without Annotated and `| None`, the field's description or "")."""
    description = ""
    if typing.get_origin(t) is typing.Annotated:
        t, *extras = typing.get_args(t)
        for extra in extras:
            if isinstance(extra, msgspec.Meta) and extra.description:
                description = extra.description
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not _NoneType]
        if len(args) == 1:
            return _unwrap(args[0])[0], description
    return t, description


def _comma_list(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse names it in its errors
    return parse


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if value is None:
        return "none"
    return str(value)


def spellings(field: str, aliases: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """A field's flags, the one a user is shown first: `--lr`, `--learning-rate`."""
    return [*(aliases or {}).get(field, ()), "--" + field.replace("_", "-")]


def add_struct_flags(parser: argparse.ArgumentParser | Any, struct: type[msgspec.Struct], *,
                     exclude: Iterable[str] = (), only: Iterable[str] | None = None,
                     aliases: Mapping[str, Iterable[str]] | None = None,
                     types_: Mapping[str, Callable[[str], Any]] | None = None,
                     dest_prefix: str = "", defaults: bool = False,
                     default_note: str | None = None) -> dict[str, str]:
    """One flag per field of `struct` (minus `exclude`, or just `only`); returns
    {field: its flag as a user types it}. `aliases` puts other spellings first (`--lr`);
    `types_` replaces a field's parser (e.g. one that refuses 0 at parse time); `dest_prefix`
    keeps two Structs' fields of one name apart in the namespace. With `defaults` a flag not
    given holds the field's default (for a command with no config file under its flags);
    `default_note` is what the help names as the default instead of the field's."""
    skip, keep = set(exclude), None if only is None else list(only)
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    names = keep if keep is not None else [n for n in fields if n not in skip]
    made: dict[str, str] = {}
    for name in names:
        field = fields[name]  # KeyError: a typo in `only`, a programming error
        t, description = _unwrap(field.type)
        default = (field.default if field.default is not msgspec.NODEFAULT
                   else field.default_factory() if field.default_factory is not msgspec.NODEFAULT
                   else None)
        names_ = spellings(name, aliases)
        kwargs: dict[str, Any] = {"dest": dest_prefix + name,
                                  "default": default if defaults else None}
        if t is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(t) is typing.Literal:
            choices = typing.get_args(t)
            kwargs.update(choices=choices, type=type(choices[0]))
        elif typing.get_origin(t) in (list, tuple):
            item = (typing.get_args(t) or (str,))[0]
            kwargs.update(type=_comma_list(item), metavar=name.split("_")[-1].upper() + ",...")
        elif t in (int, float, str):
            kwargs.update(type=t, metavar={int: "N", float: "X", str: "TEXT"}[t])
        else:
            raise TypeError(f"{struct.__name__}.{name}: no flag for a {t!r}; exclude it")
        if types_ and name in types_:
            kwargs["type"] = types_[name]
        help_text = description or name.replace("_", " ")
        if default_note is not None:
            help_text += f" (default: {default_note})"
        elif (t is not bool or default) and "default" not in help_text:
            help_text += f" (default: {_shown(default)})"
        kwargs["help"] = help_text.replace("%", "%%")
        parser.add_argument(*names_, **kwargs)
        made[name] = names_[0]
    return made


def given(struct: type[msgspec.Struct], args: argparse.Namespace, *,
          dest_prefix: str = "") -> dict[str, Any]:
    """{field: value} of the flags `add_struct_flags` made for `struct` that were given."""
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        value = getattr(args, dest_prefix + f.name, None)
        if value is not None:
            out[f.name] = value
    return out


def struct_from_args(struct: type[msgspec.Struct], args: argparse.Namespace, *,
                     dest_prefix: str = "", **extra: Any) -> Any:
    """`struct` from the given flags and `extra`; every other field keeps its default.
    Raises ValueError (or msgspec.ValidationError) as the Struct does."""
    return msgspec.convert({**given(struct, args, dest_prefix=dest_prefix), **extra}, struct)
