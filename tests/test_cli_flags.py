"""cli/flags.py: flags made from a settings Struct (types, defaults, help, what was given)."""

from __future__ import annotations

import argparse
from typing import Annotated, Literal

import msgspec
import pytest

from halo_forge.argtypes import positive_int
from halo_forge.cli.flags import add_struct_flags, given, struct_from_args
from halo_forge.cli.parser import Parser
from halo_forge.errors import HaloError


class Knobs(msgspec.Struct, frozen=True, kw_only=True):
    rate: Annotated[float, msgspec.Meta(description="how fast")] = 0.5
    steps: int = 3
    mode: Literal["fast", "slow"] = "fast"
    tags: list[str] = []
    loud: bool = False
    tidy: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")


def _parser(**kw) -> tuple[Parser, dict[str, str]]:
    parser = Parser(prog="t")
    made = add_struct_flags(parser, Knobs, types_={"workers": positive_int}, **kw)
    return parser, made


def test_each_type_becomes_the_right_flag_and_only_given_flags_count() -> None:
    parser, made = _parser(aliases={"rate": ("-r",)})
    assert made["rate"] == "-r" and made["tidy"] == "--tidy"
    args = parser.parse_args(["-r", "0.25", "--mode", "slow", "--tags", "a, b", "--loud",
                              "--no-tidy", "--workers", "2"])
    assert given(Knobs, args) == {"rate": 0.25, "mode": "slow", "tags": ["a", "b"],
                                  "loud": True, "tidy": False, "workers": 2}
    assert given(Knobs, parser.parse_args([])) == {}
    assert struct_from_args(Knobs, parser.parse_args(["--steps", "9"])) == Knobs(steps=9)


def test_bad_values_are_refused_by_argparse_or_by_the_struct() -> None:
    parser, _ = _parser()
    for argv in (["--mode", "medium"], ["--steps", "x"], ["--workers", "0"]):
        with pytest.raises(HaloError):
            parser.parse_args(argv)
    with pytest.raises(msgspec.ValidationError, match="steps must be >= 0"):
        struct_from_args(Knobs, parser.parse_args(["--steps", "-1"]))


def test_help_shows_description_and_default_and_defaults_mode_fills_them_in() -> None:
    parser, _ = _parser()
    text = " ".join(parser.format_help().split())
    assert "how fast (default: 0.5)" in text and "steps (default: 3)" in text
    parser, _ = _parser(defaults=True, only=("rate", "mode"))
    args = parser.parse_args([])
    assert (args.rate, args.mode) == (0.5, "fast") and not hasattr(args, "steps")


def test_a_field_with_no_flag_form_is_a_programming_error() -> None:
    class Nested(msgspec.Struct):
        inner: Knobs = Knobs()

    with pytest.raises(TypeError, match="Nested.inner"):
        add_struct_flags(argparse.ArgumentParser(), Nested)
    add_struct_flags(argparse.ArgumentParser(), Nested, exclude=("inner",))
