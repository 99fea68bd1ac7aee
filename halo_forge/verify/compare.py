"""Judging a program's stdout against an io test's expected output."""

from __future__ import annotations

import math
from typing import Literal

CompareMode = Literal["lines", "tokens"]


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(got: str, want: str, tolerance: float | None) -> bool:
    if got == want:
        return True
    if tolerance is None:
        return False
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(b):
        return False
    # CodeForces-style: absolute or relative error within the tolerance.
    return abs(a - b) <= tolerance * max(1.0, abs(b))


def outputs_match(
    actual: bytes | str,
    expected: str,
    *,
    mode: CompareMode = "lines",
    float_tolerance: float | None = None,
) -> bool:
    """Whether `actual` matches `expected`.

    "lines": line by line, trailing whitespace of each line and trailing blank lines ignored
    (the contract's rule). "tokens": whitespace-separated tokens, layout ignored (a checker in
    the style of CodeForces' wcmp). With `float_tolerance`, numeric tokens compare within it."""
    if isinstance(actual, bytes):
        actual = actual.decode("utf-8", errors="replace")
    if mode == "tokens":
        got_lines, want_lines = [actual.split()], [expected.split()]
    else:
        got_lines = [line.split() if float_tolerance is not None else [line] for line in _lines(actual)]
        want_lines = [line.split() if float_tolerance is not None else [line] for line in _lines(expected)]
    if len(got_lines) != len(want_lines):
        return False
    for got, want in zip(got_lines, want_lines):
        if len(got) != len(want):
            return False
        if not all(_token_equal(g, w, float_tolerance) for g, w in zip(got, want)):
            return False
    return True
