"""The records every stage reads and writes: Problem, Sample, Verdict, Example.

These Structs are the single schema of halo-forge's data. Shards store them msgpack-encoded
as maps (field names kept), so a reader decodes shards written by an older version: new fields
get defaults, never positions. Bump SCHEMA_VERSION when a field is removed or changes meaning
(adding a field with a default does not need a bump).

This module is the bottom layer: it imports nothing of the stages (generate, verify, raft,
benchmark), so each stage can change alone. Verdict is defined here, not in the verifier,
for that reason; halo_forge/verify/types.py holds only the verifier's input records.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

Language = Literal["c", "cpp", "rust", "python"]
LANGUAGES: tuple[str, ...] = Language.__args__  # type: ignore[attr-defined]

Status = Literal[
    "passed",
    # Compiled, ran and exited 0, but the problem has no tests: never "passed", never in pass@k.
    "ran",
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


class IOTest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One stdin/stdout test: the program's output must match `stdout`."""

    stdin: str = ""
    stdout: str = ""


JudgeStyle = Literal["testlib", "open-r1"]


class JudgeProgram(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A problem's own checker or interactor: the dataset's code, run in the sandbox (never
    in the sample's run) on files the verifier writes.

    style "testlib": a checker is called `checker input output answer`, an interactor
    `interactor input output answer` with the solution on its stdin/stdout; exit 0 accepts,
    1, 2, 4 and 8 (wrong answer, presentation, dirt, unexpected end of file) reject, anything
    else means the checker itself failed. style "open-r1" (open-r1/codeforces'
    `generated_checker`, Python): `checker input answer output`, exit 0 and the score as the
    last thing it prints (1 accepts, 0 <= score < 1 rejects)."""

    source: str
    language: Language = "cpp"
    style: JudgeStyle = "testlib"
    # Files compiled beside the source (a dataset's testlib.h, say): name -> text.
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError("JudgeProgram.source must not be empty")
        if self.language == "rust":
            raise ValueError("JudgeProgram: checkers and interactors are C, C++ or Python")


class Problem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A programming problem: what the model is asked, and how its answer is checked."""

    id: str
    language: Language
    prompt: str
    io_tests: list[IOTest] = []
    # Appended to the program: Python asserts, a Rust #[cfg(test)] module, a C/C++ main.
    test_code: str = ""
    reference: str = ""  # a known-good solution (source code, no fences); "" when none
    source: str = ""  # dataset name, e.g. "mbpp", "codeforces_cpp", "generate:topic"
    difficulty: float | None = None  # the source's own scale (CodeForces rating); None if unknown
    title: str = ""
    # Several outputs are right: io_tests' stdout is the checker's answer file, not the one
    # output that matches.
    checker: JudgeProgram | None = None
    # Interactive: each io test's stdin is the interactor's input file (the solution never
    # sees it), its stdout the interactor's answer file.
    interactor: JudgeProgram | None = None
    # Python: its samples may import the interpreter's site-packages (numpy & co); without it
    # they see the standard library only.
    python_packages: bool = False

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Problem.id must not be empty")
        if not self.prompt.strip():
            raise ValueError(f"Problem {self.id!r}: prompt must not be empty")
        if self.checker is not None and self.interactor is not None:
            raise ValueError(f"Problem {self.id!r}: a checker or an interactor, not both")
        if self.interactor is not None and not self.io_tests:
            raise ValueError(f"Problem {self.id!r}: an interactor needs io_tests (its input files)")

    @property
    def tests_kind(self) -> str:
        """"io", "test_code", "io+test_code" or "none"."""
        kinds = [k for k, v in (("io", self.io_tests), ("test_code", self.test_code)) if v]
        return "+".join(kinds) or "none"


class GenerationParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a sample was generated, so that a run can be reproduced and compared."""

    model: str = ""
    adapter: str = ""  # LoRA adapter path, "" for the base model
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 0
    seed: int | None = None


class Sample(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One model completion for one problem in one RAFT cycle."""

    id: str  # unique within a run, e.g. "<problem_id>/c<cycle>/s<index>"
    problem_id: str
    cycle: int = 0
    index: int = 0
    language: Language | None = None
    completion: str = ""  # raw model output
    code: str = ""  # code extracted from the completion ("" when none was found)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    params: GenerationParams = GenerationParams()


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: Literal["system", "user", "assistant"]
    content: str


class Example(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One SFT training example: chat messages, or text already in the model's template."""

    id: str
    messages: list[Message] = []
    text: str = ""
    source: str = ""
    reward: float | None = None  # the verdict's reward when the example came from RAFT

    def __post_init__(self) -> None:
        if bool(self.messages) == bool(self.text):
            raise ValueError(f"Example {self.id!r}: set exactly one of messages or text")


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


# Record type name (as stored in shard headers) -> Struct.
RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.__name__: cls for cls in (Problem, Sample, Verdict, Example)
}

__all__ = [
    "SCHEMA_VERSION",
    "LANGUAGES",
    "Language",
    "IOTest",
    "JudgeProgram",
    "JudgeStyle",
    "Problem",
    "GenerationParams",
    "Sample",
    "Message",
    "Example",
    "Status",
    "STATUSES",
    "Verdict",
    "RECORD_TYPES",
    "untested_warning",
]


def untested_warning(problems: list[Problem], source: str) -> str | None:
    """The one-line warning shown before work starts when some of `problems` have no tests
    (None when all have): their samples can only be `ran`, never `passed`."""
    untested = sum(p.tests_kind == "none" for p in problems)
    if not untested:
        return None
    if untested == len(problems):
        return (f"warning: none of the {untested} problems in {source} has tests: samples that "
                "run are `ran`, not `passed`; reporting run@k and compile@k, no pass@k")
    return (f"warning: {untested} of {len(problems)} problems in {source} have no tests: their "
            "samples that run are `ran`, never `passed`, and count as unsolved in pass@k")
