"""VerifierConfig: compilers, flags, limits, comparison and reward ladder, as one msgspec Struct.

It is the `[verifier]` table of pipeline.toml and the options of `halo-forge verify`; unknown
keys are errors. The step limits are the sandbox's own `Limits` (every field, `disk_mb` too);
importing them does not load the sandbox extension, so a config loads anywhere.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

import msgspec

from halo_forge.sandbox import Limits
from halo_forge.verify.compare import CompareMode
from halo_forge.verify.rewards import RewardLadder

VerifierName = Literal["auto", "gcc", "clang", "rustc", "python"]
VERIFIERS: tuple[str, ...] = VerifierName.__args__  # type: ignore[attr-defined]


class Compiler(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A compiler (or, for Python, the interpreter) and its flags.

    `command` is a name looked up on PATH or a path. For Python, `flags` go to the interpreter
    when it runs the program."""

    command: str
    flags: tuple[str, ...] = ()
    link_flags: tuple[str, ...] = ()


# -Wall so that "compiles with warnings" is seen; -O2 so that correct programs do not time out.
_C_FLAGS = ("-std=gnu17", "-O2", "-Wall", "-pipe", "-fdiagnostics-color=never")
_CPP_FLAGS = ("-std=gnu++17", "-O2", "-Wall", "-pipe", "-fdiagnostics-color=never")


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "halo-forge")


class VerifierConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    verifier: Annotated[VerifierName, msgspec.Meta(description=(
        "toolchain family: gcc/clang (C, C++), rustc, python, or auto by each sample's "
        "language"))] = "auto"
    gcc_c: Compiler = Compiler(command="gcc", flags=_C_FLAGS + ("-fmax-errors=20",), link_flags=("-lm",))
    gcc_cpp: Compiler = Compiler(command="g++", flags=_CPP_FLAGS + ("-fmax-errors=20",))
    clang_c: Compiler = Compiler(command="clang", flags=_C_FLAGS + ("-ferror-limit=20",), link_flags=("-lm",))
    clang_cpp: Compiler = Compiler(command="clang++", flags=_CPP_FLAGS + ("-ferror-limit=20",))
    rustc: Compiler = Compiler(
        command="rustc",
        flags=("--edition", "2021", "-C", "opt-level=2", "-C", "debuginfo=0", "--color", "never"),
    )
    python: Compiler = Compiler(command="python3", flags=("-I",))
    python_packages: Annotated[bool, msgspec.Meta(description=(
        "Python samples may import the interpreter's site-packages (numpy & co); default: the "
        "standard library only, and a problem's own python_packages asks for them"))] = False

    python_warm: Annotated[bool, msgspec.Meta(description=(
        "Python runs (stdlib only) are forks of one warm interpreter that has the judge loaded, "
        "each still in a sandbox run of its own, instead of an interpreter start each; where "
        "the sandbox has no pid and mount namespace per run they start cold"))] = True

    compile_limits: Limits = Limits(cpu_s=30.0, wall_s=60.0, memory_mb=4096, processes=64)
    run_limits: Limits = Limits(cpu_s=2.0, wall_s=5.0, memory_mb=1024)

    compare: Annotated[CompareMode, msgspec.Meta(description=(
        "io_tests: compare lines (trailing whitespace ignored) or whitespace-separated "
        "tokens"))] = "lines"
    float_tolerance: Annotated[float | None, msgspec.Meta(description=(
        "numbers in the output may differ by this much (absolute or relative)"))] = None
    ladder: RewardLadder = RewardLadder()

    concurrency: Annotated[int | None, msgspec.Meta(
        description="runs at once in the sandbox (default: CPU count); up to twice as many samples "
                    "are in flight, the next ones prepared while runs go")] = None
    # After this many timed-out tests the rest of the sample's tests are not run (they count
    # as failed): a program that hangs on one input rarely finishes the next, and each
    # timeout costs a full wall limit.
    max_timeouts: int = 1
    output_tail: int = 2000  # characters of compiler/program output kept in a verdict

    pch: bool = True  # precompiled <bits/stdc++.h> for C++
    cache: bool = True  # in-memory verdict cache (identical work is never done twice)
    cache_path: Annotated[str | None, msgspec.Meta(description=(
        "sqlite file that keeps verdicts across runs (default: in memory only)"))] = None
    cache_dir: str = msgspec.field(default_factory=_default_cache_dir)  # PCH and the like

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_timeouts < 1:
            raise ValueError(f"max_timeouts must be >= 1, got {self.max_timeouts}")
        if self.float_tolerance is not None and self.float_tolerance < 0:
            raise ValueError("float_tolerance must be >= 0")

    def compiler(self, language: str) -> Compiler:
        """The compiler configured for a language under this config's verifier.

        Raises ValueError when the verifier does not handle the language (e.g. `rust` with
        `--verifier gcc`)."""
        family = self.verifier
        if family == "auto":
            family = {"c": "gcc", "cpp": "gcc", "rust": "rustc", "python": "python"}[language]
        table = {
            ("gcc", "c"): self.gcc_c, ("gcc", "cpp"): self.gcc_cpp,
            ("clang", "c"): self.clang_c, ("clang", "cpp"): self.clang_cpp,
            ("rustc", "rust"): self.rustc, ("python", "python"): self.python,
        }
        try:
            return table[(family, language)]
        except KeyError:
            raise ValueError(
                f"--verifier {self.verifier} does not handle {language} samples (use --verifier auto)"
            ) from None

    @property
    def languages(self) -> tuple[str, ...]:
        return {
            "auto": ("c", "cpp", "rust", "python"), "gcc": ("c", "cpp"), "clang": ("c", "cpp"),
            "rustc": ("rust",), "python": ("python",),
        }[self.verifier]

    def workers(self) -> int:
        return self.concurrency or os.cpu_count() or 1
