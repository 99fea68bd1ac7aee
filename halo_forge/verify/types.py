"""The verifier's records: what goes in (VerifySample) and what comes out (Verdict).

The field names are DESIGN.md's "Verify contract"; scripts and users depend on them. Input
samples tolerate unknown fields (a JSONL line may carry `prompt`, `problem_id`, ...), while
Verdict is a schema of its own and rejects them. New fields always get defaults.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal[
    "passed",
    "wrong_answer",
    "runtime_error",
    "timeout",
    "memory_limit",
    "output_limit",
    "compile_error",
    "no_code",
    "sandbox_error",
]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]

LANGUAGES: tuple[str, ...] = ("c", "cpp", "rust", "python")

# Spellings users and models use for the four languages (fence tags, dataset fields).
LANGUAGE_ALIASES: dict[str, str] = {
    "c": "c",
    "h": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "cc": "cpp",
    "cxx": "cpp",
    "hpp": "cpp",
    "cplusplus": "cpp",
    "rust": "rust",
    "rs": "rust",
    "python": "python",
    "py": "python",
    "python3": "python",
    "py3": "python",
}


def normalize_language(name: str | None) -> str | None:
    """The canonical language for a tag or field value, or None when it names no language we run."""
    if not name:
        return None
    return LANGUAGE_ALIASES.get(name.strip().lower())


class SampleIOTest(msgspec.Struct, frozen=True, kw_only=True):
    """One stdin/stdout test of an input sample (unknown keys, e.g. `explanation`, are ignored)."""

    stdin: str = ""
    stdout: str = ""


class VerifySample(msgspec.Struct, kw_only=True):
    """One line of `halo-forge verify` input: code (or a raw completion) and its tests."""

    id: str
    language: str | None = None
    code: str | None = None
    completion: str | None = None
    io_tests: list[SampleIOTest] = []
    test_code: str | None = None

    def __post_init__(self) -> None:
        # msgspec turns these ValueErrors into ValidationErrors naming the field on decode.
        if self.language is not None and self.language.strip():
            canonical = normalize_language(self.language)
            if canonical is None:
                raise ValueError(
                    f"unknown language {self.language!r} (expected one of {', '.join(LANGUAGES)})"
                )
            self.language = canonical
        else:
            self.language = None
        if self.code is None and self.completion is None:
            raise ValueError(f"sample {self.id!r} needs `code` or `completion`")


class Verdict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The verifier's judgement of one sample (DESIGN.md, "Verify contract")."""

    id: str
    status: Status
    reward: float
    compiled: bool = False
    tests_passed: int = 0
    tests_total: int = 0
    wall_s: float = 0.0  # compile + every test run, as measured by the sandbox
    cpu_s: float = 0.0
    output: str = ""  # a short tail of compiler or program output explaining the status
    # Extras (not in the contract; defaults keep older verdict files readable).
    language: str | None = None
    warnings: bool = False  # compiled, with compiler warnings
    # Why a reward-hacking guard capped the reward ("" when none did), as "<key>: <detail>":
    # the key, a short stable name of the defence ("stub", "test tampering"), is what RAFT
    # counts per cycle (metrics.guard_key); keep it unchanged when the detail changes.
    guard: str = ""
    cached: bool = False  # copied from an identical sample verified earlier
    compile_s: float = 0.0  # wall seconds of the compile step alone


def verify_input(problem: object, sample: object) -> VerifySample:
    """The verifier's input for a generated `records.Sample` of a `records.Problem` (duck-typed:
    records imports this module). The raw completion is verified, with the problem's tests."""
    language = getattr(sample, "language", None) or getattr(problem, "language", None)
    return VerifySample(
        id=sample.id,  # type: ignore[attr-defined]
        language=language,
        completion=sample.completion,  # type: ignore[attr-defined]
        io_tests=[SampleIOTest(stdin=t.stdin, stdout=t.stdout) for t in getattr(problem, "io_tests", ())],
        test_code=getattr(problem, "test_code", "") or None,
    )
