"""The reward ladder (DESIGN.md): a pure function of what a verification observed.

Default: no code or compile error 0.0; compiles with warnings 0.3; compiles clean 0.5; runs and
exits 0 with no tests 0.7; with tests 0.5 + 0.5 x fraction passed. A program that only
compiles is never worth as much as one that runs, and one that passes tests is worth most.
"""

from __future__ import annotations

from itertools import pairwise

import msgspec


class RewardLadder(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    no_code: float = 0.0
    compile_error: float = 0.0
    compiled_with_warnings: float = 0.3
    compiled: float = 0.5
    ran: float = 0.7  # compiled, ran, exited 0; the sample has no tests
    tests_base: float = 0.5  # with tests: tests_base + tests_scale * passed / total (> 0 passed)
    tests_scale: float = 0.5

    def __post_init__(self) -> None:
        steps = [
            ("compile_error", self.compile_error),
            ("compiled_with_warnings", self.compiled_with_warnings),
            ("compiled", self.compiled),
            ("ran", self.ran),
        ]
        for (lo_name, lo), (hi_name, hi) in pairwise(steps):
            if lo > hi:
                raise ValueError(f"reward ladder: {lo_name} ({lo}) must not exceed {hi_name} ({hi})")
        if self.compiled >= self.ran:
            raise ValueError("reward ladder: `ran` must be worth more than `compiled`")
        if self.tests_scale <= 0 or self.tests_base < self.compiled_with_warnings:
            raise ValueError("reward ladder: tests_scale must be > 0 and tests_base >= compiled_with_warnings")


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one verification saw, reduced to what the ladder needs."""

    has_code: bool
    compiled: bool = False
    warnings: bool = False
    ran_ok: bool = False  # with no tests: the program ran and exited 0
    tests_passed: int = 0
    tests_total: int = 0
    guarded: bool = False  # a reward-hacking guard fired: never above "compiles"


DEFAULT_LADDER = RewardLadder()


def reward(outcome: Outcome, ladder: RewardLadder = DEFAULT_LADDER) -> float:
    if not outcome.has_code:
        return ladder.no_code
    if not outcome.compiled:
        return ladder.compile_error
    compiles = ladder.compiled_with_warnings if outcome.warnings else ladder.compiled
    if outcome.guarded:
        return compiles
    if outcome.tests_total > 0:
        if outcome.tests_passed <= 0:
            return compiles
        fraction = min(outcome.tests_passed, outcome.tests_total) / outcome.tests_total
        return max(compiles, ladder.tests_base + ladder.tests_scale * fraction)
    return ladder.ran if outcome.ran_ok else compiles
