"""The verifier's input records: what goes in (VerifySample); what comes out, Verdict, is
part of the schema (halo_forge/records.py), which every stage shares.

The field names are DESIGN.md's "Verify contract"; scripts and users depend on them. Input
samples tolerate unknown fields (a JSONL line may carry `prompt`, `problem_id`, ...), while
Verdict is a schema of its own and rejects them. New fields always get defaults.
"""

from __future__ import annotations

import msgspec

from halo_forge.records import LANGUAGES, JudgeProgram, Problem, Sample

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
    # The problem's own judge for its io_tests (halo_forge/records.py, JudgeProgram).
    checker: JudgeProgram | None = None
    interactor: JudgeProgram | None = None
    # Python: the interpreter's site-packages (numpy & co) are visible; otherwise the standard
    # library only (also [verifier] python_packages).
    python_packages: bool = False

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
        if self.checker is not None and self.interactor is not None:
            raise ValueError(f"sample {self.id!r}: a checker or an interactor, not both")
        if (self.checker is not None or self.interactor is not None) and not self.io_tests:
            raise ValueError(f"sample {self.id!r}: a checker or an interactor needs io_tests")


def verify_input(problem: Problem, sample: Sample) -> VerifySample:
    """The verifier's input for a generated Sample of a Problem: the raw completion is
    verified, with the problem's tests."""
    return VerifySample(
        id=sample.id,
        language=sample.language or problem.language,
        completion=sample.completion,
        io_tests=[SampleIOTest(stdin=t.stdin, stdout=t.stdout) for t in problem.io_tests],
        test_code=problem.test_code or None,
        checker=problem.checker,
        interactor=problem.interactor,
        python_packages=problem.python_packages,
    )
