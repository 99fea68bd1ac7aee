"""Deterministic train/test split that never puts one problem on both sides.

A problem's side is a hash of (seed, id), not its position, so it does not change with
--limit, with the order of the source, or when the source grows. Where a dataset has an
official split (MBPP's task ids) that split is used instead. Either way, a train problem whose
normalised statement equals a test problem's (the same problem under two ids) is dropped from
train.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from halo_forge.data.loaders import prompt_key
from halo_forge.records import Problem


def _unit(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(1 << 64)


def side(problem: Problem, *, seed: int, test_fraction: float) -> str:
    return "test" if _unit(seed, problem.id) < test_fraction else "train"


def split_problems(
    problems: Sequence[Problem],
    *,
    seed: int = 0,
    test_fraction: float = 0.1,
    official: Callable[[Problem], str] | None = None,
) -> tuple[list[Problem], list[Problem]]:
    """(train, test), each in source order."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError("test_fraction must be within [0, 1]")
    train, test = [], []
    for p in problems:
        s = official(p) if official else side(p, seed=seed, test_fraction=test_fraction)
        (test if s == "test" else train).append(p)
    test_keys = {prompt_key(p) for p in test}
    train = [p for p in train if prompt_key(p) not in test_keys]
    return train, test


def sample_order(problems: Sequence[Problem], *, seed: int) -> list[Problem]:
    """A seeded, reproducible shuffle (by hash, so a problem keeps its rank as data grows)."""
    return sorted(problems, key=lambda p: _unit(seed + 1, p.id))
