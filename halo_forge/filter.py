"""Which verified samples a RAFT cycle trains on: pure functions of (samples, verdicts, config).

Rules, in order, each counting what it removed:
1. `sandbox_error`: the infrastructure failed, the sample says nothing about the model;
2. `guarded`: a reward-hacking guard fired (Verdict.guard), whatever the reward or status: a
   guard that caps the reward is the verifier's floor, and a threshold of 0 or a ladder that
   still scores the capped sample must not let RAFT train on, and so amplify, the hack;
3. `below_threshold`: reward under `reward_threshold`;
4. `duplicate`: identical code for the same prompt is kept once (the copy with the best reward);
5. `per_prompt_cap`: at most `max_per_prompt` per prompt, so easy prompts do not crowd out
   the rest;
6. `top_percent`: of what remains, the best `keep_top_percent` by reward.

Ties (equal rewards) are broken by a seeded hash of the sample id, never by prompt or
generation order: which of two equal samples survives does not depend on where its prompt sits
in the dataset, and a different seed gives a different, equally fair draw.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import msgspec

from halo_forge.records import Sample, Verdict

RULES = ("sandbox_error", "guarded", "below_threshold", "duplicate", "per_prompt_cap", "top_percent")


class FilterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reward_threshold: float = 0.5
    keep_top_percent: float = 1.0  # a fraction in (0, 1]
    max_per_prompt: int = 0  # 0 = no cap
    dedupe: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.keep_top_percent <= 1:
            raise ValueError(f"keep_top_percent must be in (0, 1], got {self.keep_top_percent}")
        if self.max_per_prompt < 0:
            raise ValueError("max_per_prompt must be >= 0")


class FilterReport(msgspec.Struct, kw_only=True):
    total: int = 0  # samples with a verdict
    removed: dict[str, int] = {}  # rule -> samples it removed
    kept: int = 0
    prompts_kept: int = 0  # prompts with at least one kept sample

    def describe(self) -> str:
        parts = ", ".join(f"{rule} -{n}" for rule, n in self.removed.items() if n)
        return f"kept {self.kept} of {self.total} ({parts or 'nothing removed'}) " \
               f"from {self.prompts_kept} prompts"


def tie_key(sample_id: str, seed: int) -> int:
    """A seeded, order-free rank for breaking ties between equal rewards."""
    digest = hashlib.blake2b(f"{seed}\0{sample_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def normalize_code(code: str) -> str:
    """Code compared for duplicates: trailing whitespace and blank lines do not make it new."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def _rank(pair: tuple[Sample, Verdict], seed: int) -> tuple[float, int]:
    sample, verdict = pair
    return (-verdict.reward, tie_key(sample.id, seed))


def select(pairs: Iterable[tuple[Sample, Verdict]],
           config: FilterConfig) -> tuple[list[tuple[Sample, Verdict]], FilterReport]:
    """(kept pairs, best first, and what each rule removed)."""
    items = list(pairs)
    removed = dict.fromkeys(RULES, 0)
    report = FilterReport(total=len(items), removed=removed)

    usable = [p for p in items if p[1].status != "sandbox_error"]
    removed["sandbox_error"] = len(items) - len(usable)

    honest = [p for p in usable if not p[1].guard]
    removed["guarded"] = len(usable) - len(honest)

    above = [p for p in honest if p[1].reward >= config.reward_threshold]
    removed["below_threshold"] = len(honest) - len(above)

    ranked = sorted(above, key=lambda p: _rank(p, config.seed))
    if config.dedupe:
        seen: set[tuple[str, str]] = set()
        unique = []
        for pair in ranked:  # best first: the copy kept is the best-rewarded one
            key = (pair[0].problem_id, normalize_code(pair[0].code or pair[0].completion))
            if key not in seen:
                seen.add(key)
                unique.append(pair)
        removed["duplicate"] = len(ranked) - len(unique)
        ranked = unique

    if config.max_per_prompt:
        per_prompt: dict[str, int] = defaultdict(int)
        capped = []
        for pair in ranked:
            if per_prompt[pair[0].problem_id] < config.max_per_prompt:
                per_prompt[pair[0].problem_id] += 1
                capped.append(pair)
        removed["per_prompt_cap"] = len(ranked) - len(capped)
        ranked = capped

    n_keep = math.ceil(config.keep_top_percent * len(ranked) - 1e-9)
    removed["top_percent"] = len(ranked) - n_keep
    kept = ranked[:n_keep]
    report.kept = len(kept)
    report.prompts_kept = len({p[0].problem_id for p in kept})
    return kept, report


def join(samples: Sequence[Sample], verdicts: Iterable[Verdict]) -> list[tuple[Sample, Verdict]]:
    """(sample, verdict) pairs by id; samples without a verdict are left out."""
    by_id = {v.id: v for v in verdicts}
    return [(s, by_id[s.id]) for s in samples if s.id in by_id]
