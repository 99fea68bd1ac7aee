"""What a benchmark run writes and reads back: summary.json, results.jsonl, samples.jsonl.

A `sandbox_error` verdict is the infrastructure's failure, never the program's: it is left out
of a problem's n (and counted), as are samples the backend could not produce; a problem left
with fewer than k scored samples is left out of pass@k for that k, and `scored_problems` says
how many problems each k was averaged over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.errors import HaloError
from halo_forge.generate.base import SamplingSettings

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.jsonl"  # one ProblemResult per line
SAMPLES_FILE = "samples.jsonl"  # one SampleResult per line: what the model wrote and its verdict
REPORT_FILE = "report.md"
CHART_FILE = "pass_at_k.png"

# Sampling for pass@k with n > 1 wants diversity (Chen et al. sample at 0.2-0.8).
DEFAULT_SAMPLING = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=512)


class Rates(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """pass@k and compile@k over a set of problems (overall, one language, one difficulty)."""

    problems: int = 0
    samples: int = 0  # scored samples (sandbox errors and missing samples left out)
    # Over every problem, untested ones counting as unsolved; {} when none has tests, so that
    # a run rate is never shown as pass@k.
    pass_at_k: dict[int, float] = {}
    compile_at_k: dict[int, float] = {}
    scored_problems: dict[int, int] = {}  # per k: problems with at least k scored samples
    untested_problems: int = 0  # problems with no tests: run@k is over these alone
    run_at_k: dict[int, float] = {}  # untested problems: a sample ran and exited 0


class ProblemResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One problem's outcome: a line of results.jsonl."""

    id: str
    language: str
    source: str = ""
    difficulty: float | None = None
    tests: str = ""  # Problem.tests_kind: "io", "test_code", "io+test_code" or "none"
    requested: int = 0  # samples asked for
    n: int = 0  # scored samples: verified, not sandbox_error
    passed: int = 0  # c for pass@k: every test passed (0 for a problem with no tests)
    compiled: int = 0  # c for compile@k
    ran: int = 0  # c for run@k: a problem with no tests, the program ran and exited 0
    status_counts: dict[str, int] = {}
    best_reward: float = 0.0
    mean_reward: float = 0.0
    pass_at_k: dict[int, float] = {}
    compile_at_k: dict[int, float] = {}
    run_at_k: dict[int, float] = {}

    @property
    def solved(self) -> bool:
        return self.passed > 0


class SampleResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One sample and its verdict: a line of samples.jsonl."""

    id: str
    problem_id: str
    status: str
    reward: float
    compiled: bool
    tests_passed: int = 0
    tests_total: int = 0
    completion_tokens: int = 0
    completion: str = ""
    output: str = ""


class BenchmarkSummary(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """summary.json: what was measured, on what, how, and how long it took."""

    version: int = 1
    model: str = ""
    adapter: str = ""  # "" = the base model
    backend: str = ""
    dataset: str = ""
    verifier: str = ""
    sampling: SamplingSettings = DEFAULT_SAMPLING
    n: int = 0  # samples asked for per problem
    ks: list[int] = []
    problems: int = 0
    pass_at_k: dict[int, float] = {}
    compile_at_k: dict[int, float] = {}
    scored_problems: dict[int, int] = {}  # per k: how many problems pass@k was averaged over
    untested_problems: int = 0  # problems with no tests (pass@k is {} when all are)
    run_at_k: dict[int, float] = {}  # over the untested problems: ran and exited 0
    by_language: dict[str, Rates] = {}
    by_difficulty: dict[str, Rates] = {}
    status_counts: dict[str, int] = {}
    samples_requested: int = 0
    samples_generated: int = 0
    samples_scored: int = 0
    sandbox_errors: int = 0  # infrastructure failures: left out of n, never scored as wrong
    generation_failed: int = 0  # samples the backend could not produce (after its retries)
    mean_reward: float = 0.0
    solved: int = 0  # problems with at least one passing sample
    wall_s: float = 0.0
    generate_s: float = 0.0  # summed over batches, as the backend measured them
    samples_per_s: float = 0.0  # verified samples per wall second, end to end
    tokens_per_s: float = 0.0  # completion tokens per second of generation
    completion_tokens: int = 0
    prompt_tokens: int = 0
    generation_waited_s: float = 0.0  # generation blocked on a full buffer (verify is slower)
    verification_waited_s: float = 0.0  # verification idle on an empty buffer (generate is slower)
    started_unix: float = 0.0
    halo_forge_version: str = ""
    meta: dict[str, Any] = {}


def read_summary(path: str | os.PathLike[str]) -> BenchmarkSummary:
    """A run's summary from its output folder or its summary.json."""
    p = Path(path)
    if p.is_dir():
        p = p / SUMMARY_FILE
    try:
        return msgspec.json.decode(p.read_bytes(), type=BenchmarkSummary)
    except FileNotFoundError:
        raise HaloError(f"{path}: no benchmark summary ({SUMMARY_FILE}); pass the --output "
                        "folder of `halo-forge benchmark run`") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HaloError(f"{p}: not a benchmark summary ({exc})") from None


def read_results(path: str | os.PathLike[str]) -> list[ProblemResult]:
    """A run's per-problem results from its output folder or its results.jsonl."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    decoder = msgspec.json.Decoder(ProblemResult)
    try:
        lines = p.read_bytes().splitlines()
    except FileNotFoundError:
        raise HaloError(f"{path}: no per-problem results ({RESULTS_FILE})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise HaloError(f"{p}:{number}: not a benchmark result ({exc})") from None
    return out


__all__ = [
    "CHART_FILE", "DEFAULT_SAMPLING", "REPORT_FILE", "RESULTS_FILE", "SAMPLES_FILE",
    "SUMMARY_FILE", "BenchmarkSummary", "ProblemResult", "Rates", "SampleResult",
    "read_results", "read_summary",
]
