"""Benchmark: n samples per problem, verified, scored with the unbiased pass@k estimator.

    summary = await evaluate(problems=problems, backend=backend, samples=10, ks=(1, 5, 10),
                             output_dir=Path("bench/base"))

pass@k = E_problems[1 - C(n-c, k) / C(n, k)] (Chen et al., 2021), where n is the number of
samples of a problem and c how many passed all its tests. compile@k is the same estimator with
c = how many compiled. They are different claims (a program that compiles may still be wrong),
so they are reported side by side, never mixed into one number.

Generation streams batches into a bounded anyio memory stream and verification consumes it
concurrently (as in a RAFT cycle), so the model does not wait for the compiler and memory holds
per-problem counters, not the samples. A `sandbox_error` verdict is the infrastructure's
failure, never the program's: it is left out of that problem's n (and reported), as are samples
the backend could not produce; a problem left with fewer than k scored samples is left out of
pass@k for that k, and the summary says how many problems each k was averaged over.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np

from halo_forge import faults
from halo_forge.atomic import write_atomic
from halo_forge.errors import HaloError
from halo_forge.generate.base import Backend, SamplingSettings
from halo_forge.records import STATUSES, Problem, Sample, Verdict
from halo_forge.verify.types import verify_input

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.jsonl"  # one ProblemResult per line
SAMPLES_FILE = "samples.jsonl"  # one SampleResult per line: what the model wrote and its verdict
REPORT_FILE = "report.md"
CHART_FILE = "pass_at_k.png"

# Sampling for pass@k with n > 1 wants diversity (Chen et al. sample at 0.2-0.8).
DEFAULT_SAMPLING = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=512)


# --- the estimator -------------------------------------------------------------------------


def _check(n: int, c: int, k: int) -> None:
    if n < 1:
        raise HaloError(f"pass@k needs at least one sample, got n={n}")
    if not 0 <= c <= n:
        raise HaloError(f"pass@k: c={c} correct samples out of n={n} is impossible")
    if not 1 <= k <= n:
        raise HaloError(f"pass@{k} needs k in 1..n={n} samples per problem; sample more "
                        f"(--samples >= {k}) or drop k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k), k <= n.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials telescopes into c
    factors, each in [0, 1), so nothing overflows however large n is."""
    n, c, k = int(n), int(c), int(k)
    _check(n, c, k)
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_array(n: Any, c: Any, k: int) -> np.ndarray:
    """pass@k per problem for arrays of n and c (a scalar broadcasts), as float64.

    The product of pass_at_k in log space: log C(n-c,k)/C(n,k) = S(n) - S(n-c) with
    S(m) = sum_{i=k+1}^{m} log1p(-k/i), one cumulative sum shared by every problem."""
    n_arr, c_arr = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64))
    k = int(k)
    if n_arr.size == 0:
        return np.zeros(n_arr.shape, dtype=np.float64)
    for n_i, c_i in zip(n_arr.ravel().tolist(), c_arr.ravel().tolist()):
        _check(n_i, c_i, k)  # the first bad problem names its numbers
    top = int(n_arr.max())
    i = np.arange(1, top + 1, dtype=np.float64)
    terms = np.where(i > k, np.log1p(-k / np.maximum(i, k + 1)), 0.0)
    cumulative = np.concatenate(([0.0], np.cumsum(terms)))  # cumulative[m] = S(m)
    all_hit = (n_arr - c_arr) < k
    lower = np.where(all_hit, n_arr, n_arr - c_arr)  # any index: masked below
    log_miss = cumulative[n_arr] - cumulative[lower]
    return np.where(all_hit, 1.0, -np.expm1(log_miss))


# --- records -------------------------------------------------------------------------------


class Rates(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """pass@k and compile@k over a set of problems (overall, one language, one difficulty)."""

    problems: int = 0
    samples: int = 0  # scored samples (sandbox errors and missing samples left out)
    pass_at_k: dict[int, float] = {}
    compile_at_k: dict[int, float] = {}
    scored_problems: dict[int, int] = {}  # per k: problems with at least k scored samples


class ProblemResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One problem's outcome: a line of results.jsonl."""

    id: str
    language: str
    source: str = ""
    difficulty: float | None = None
    tests: str = ""  # Problem.tests_kind: "io", "test_code", "io+test_code" or "none"
    requested: int = 0  # samples asked for
    n: int = 0  # scored samples: verified, not sandbox_error
    passed: int = 0  # c for pass@k
    compiled: int = 0  # c for compile@k
    status_counts: dict[str, int] = {}
    best_reward: float = 0.0
    mean_reward: float = 0.0
    pass_at_k: dict[int, float] = {}
    compile_at_k: dict[int, float] = {}

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


_json = msgspec.json.Encoder()


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


# --- scoring -------------------------------------------------------------------------------


class _Tally:
    """Counts for one problem, updated verdict by verdict (no samples kept)."""

    __slots__ = ("best_reward", "compiled", "n", "passed", "problem", "requested", "reward_sum",
                 "status_counts")

    def __init__(self, problem: Problem, requested: int) -> None:
        self.problem = problem
        self.requested = requested
        self.status_counts: dict[str, int] = {}
        self.passed = self.compiled = self.n = 0
        self.reward_sum = self.best_reward = 0.0

    def add(self, verdict: Verdict) -> None:
        self.status_counts[verdict.status] = self.status_counts.get(verdict.status, 0) + 1
        if verdict.status == "sandbox_error":
            return
        self.n += 1
        self.passed += verdict.status == "passed"
        self.compiled += bool(verdict.compiled)
        self.reward_sum += verdict.reward
        self.best_reward = max(self.best_reward, verdict.reward)

    def result(self, ks: Sequence[int]) -> ProblemResult:
        p = self.problem
        scored = [k for k in ks if k <= self.n]
        return ProblemResult(
            id=p.id, language=p.language, source=p.source, difficulty=p.difficulty,
            tests=p.tests_kind, requested=self.requested, n=self.n, passed=self.passed,
            compiled=self.compiled,
            status_counts={s: self.status_counts[s] for s in STATUSES if s in self.status_counts},
            best_reward=round(self.best_reward, 6),
            mean_reward=round(self.reward_sum / self.n, 6) if self.n else 0.0,
            pass_at_k={k: pass_at_k(self.n, self.passed, k) for k in scored},
            compile_at_k={k: pass_at_k(self.n, self.compiled, k) for k in scored},
        )


def rates(results: Sequence[ProblemResult], ks: Sequence[int]) -> Rates:
    """pass@k and compile@k averaged over `results`; per k, over the problems with >= k scored
    samples (all of them unless sandbox errors or failed requests thinned some out)."""
    out = Rates(problems=len(results), samples=sum(r.n for r in results))
    n = np.array([r.n for r in results], dtype=np.int64)
    passed = np.array([r.passed for r in results], dtype=np.int64)
    compiled = np.array([r.compiled for r in results], dtype=np.int64)
    for k in ks:
        mask = n >= k
        out.scored_problems[k] = int(mask.sum())
        if mask.any():
            out.pass_at_k[k] = float(pass_at_k_array(n[mask], passed[mask], k).mean())
            out.compile_at_k[k] = float(pass_at_k_array(n[mask], compiled[mask], k).mean())
    return out


def difficulty_bucket(difficulty: float | None) -> str:
    """Group label: CodeForces-like ratings in bands of 400, small scales as they are."""
    if difficulty is None:
        return "unknown"
    if difficulty >= 400:
        low = int(difficulty // 400 * 400)
        return f"{low}-{low + 399}"
    return f"{difficulty:g}"


def _grouped(results: Sequence[ProblemResult], ks: Sequence[int],
             key: Callable[[ProblemResult], str]) -> dict[str, Rates]:
    groups: dict[str, list[ProblemResult]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return {name: rates(groups[name], ks) for name in sorted(groups)}


def check_ks(ks: Sequence[int], samples: int) -> list[int]:
    """Sorted, distinct ks, each within 1..samples (a HaloError names the first that is not)."""
    if samples < 1:
        raise HaloError(f"--samples must be at least 1, got {samples}")
    out = sorted({int(k) for k in ks})
    if not out:
        raise HaloError("no k given: pass --k 1,5,10 (each k <= --samples)")
    for k in out:
        if k < 1:
            raise HaloError(f"k must be at least 1, got {k}")
        if k > samples:
            raise HaloError(f"pass@{k} needs at least {k} samples per problem but --samples is "
                            f"{samples}: raise --samples or drop k={k}")
    return out


# --- the run -------------------------------------------------------------------------------


def _version() -> str:
    try:
        from halo_forge import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return ""


async def evaluate(
    *,
    problems: Sequence[Problem],
    backend: Backend,
    samples: int,
    ks: Sequence[int],
    verifier_config: Any = None,
    sandbox: Any = None,
    output_dir: Path | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    sampling: SamplingSettings | None = None,
    dataset: str = "",
    cycle: int = 0,
    buffer: int | None = None,
    concurrency: int | None = None,
    keep_samples: bool = True,
) -> BenchmarkSummary:
    """Generate `samples` completions per problem with `backend`, verify them as they arrive,
    and score pass@k / compile@k for each k in `ks` (each k <= samples).

    `verifier_config`: a VerifierConfig (default: auto). `sandbox`: a running Sandbox to share
    (default: the verifier starts its own). `output_dir`: where summary.json, results.jsonl,
    samples.jsonl (unless keep_samples=False), report.md and pass_at_k.png go. `meta` is stored
    in the summary as given (cycle, split, ...). `progress(done, total)` is called after each
    verdict. `sampling` defaults to DEFAULT_SAMPLING; `buffer` is how many samples may wait
    between generation and verification (default: 4 x the verifier's workers)."""
    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier, verify_indexed

    config = verifier_config if verifier_config is not None else VerifierConfig()
    ks = check_ks(ks, samples)
    problems = list(problems)
    if not problems:
        raise HaloError("no problems to benchmark")
    by_id: dict[str, _Tally] = {}
    for p in problems:
        if p.id in by_id:
            raise HaloError(f"problem id {p.id!r} appears twice; benchmark problems need unique ids")
        if p.language not in config.languages:
            raise HaloError(f"problem {p.id!r} is {p.language} but --verifier {config.verifier} "
                            f"handles {', '.join(config.languages)}: use --verifier auto")
        by_id[p.id] = _Tally(p, samples)
    settings = sampling if sampling is not None else DEFAULT_SAMPLING
    workers = concurrency or config.workers()
    total = samples * len(problems)

    samples_out = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if keep_samples:
            samples_out = _SampleLog(output_dir / SAMPLES_FILE)

    started_unix, t0 = time.time(), time.perf_counter()
    gen = {"samples": 0, "failed": 0, "wall": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    waits = {"generate": 0.0, "verify": 0.0}
    # Samples between the generator and their verdict: bounded by buffer + workers.
    in_flight: dict[str, Sample] = {}
    done = 0
    send, receive = anyio.create_memory_object_stream[Sample](buffer or 4 * workers)

    async def produce() -> None:
        async with send:
            stream = backend.stream(problems, samples_per_prompt=samples, params=settings,
                                    cycle=cycle)
            try:
                async for batch in stream:
                    stats = batch.stats
                    gen["samples"] += len(batch.samples)
                    gen["failed"] += stats.failed
                    gen["wall"] += stats.wall_s
                    gen["prompt_tokens"] += stats.prompt_tokens
                    gen["completion_tokens"] += stats.completion_tokens
                    for sample in batch.samples:
                        if sample.problem_id not in by_id:
                            raise RuntimeError(f"backend returned a sample of unknown problem "
                                               f"{sample.problem_id!r}")
                        t = time.perf_counter()
                        await send.send(sample)
                        waits["generate"] += time.perf_counter() - t
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def to_verify() -> AsyncIterator[Any]:
        async with receive:
            while True:
                t = time.perf_counter()
                try:
                    sample = await receive.receive()
                except anyio.EndOfStream:
                    return
                waits["verify"] += time.perf_counter() - t
                in_flight[sample.id] = sample
                yield verify_input(by_id[sample.problem_id].problem, sample)

    try:
        async with Verifier(config, sandbox=sandbox) as verifier, anyio.create_task_group() as tg:
            tg.start_soon(produce)
            pairs = verify_indexed(to_verify(), verifier=verifier, concurrency=workers)
            try:
                async for _, verdict in pairs:
                    sample = in_flight.pop(verdict.id)
                    by_id[sample.problem_id].add(verdict)
                    if samples_out is not None:
                        samples_out.write(SampleResult(
                            id=sample.id, problem_id=sample.problem_id, status=verdict.status,
                            reward=verdict.reward, compiled=verdict.compiled,
                            tests_passed=verdict.tests_passed, tests_total=verdict.tests_total,
                            completion_tokens=sample.completion_tokens,
                            completion=sample.completion, output=verdict.output))
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    faults.point("evaluate.verdict")
            finally:
                await pairs.aclose()
    except BaseException as error:
        if samples_out is not None:
            samples_out.discard()
        if isinstance(error, BaseExceptionGroup):
            # One line for the user when every failure is theirs to fix (a missing compiler).
            leaves = list(_leaves(error))
            if leaves and all(isinstance(e, HaloError) for e in leaves):
                raise leaves[0] from None
        raise
    wall = time.perf_counter() - t0

    results = [by_id[p.id].result(ks) for p in problems]
    overall = rates(results, ks)
    status_counts: dict[str, int] = {}
    for r in results:
        for s, count in r.status_counts.items():
            status_counts[s] = status_counts.get(s, 0) + count
    scored = sum(r.n for r in results)
    summary = BenchmarkSummary(
        model=str(getattr(backend, "model", "")), adapter=str(getattr(backend, "adapter", "") or ""),
        backend=str(getattr(backend, "name", "")),
        dataset=dataset or ",".join(sorted({p.source for p in problems if p.source})),
        verifier=config.verifier, sampling=settings, n=samples, ks=ks, problems=len(problems),
        pass_at_k=overall.pass_at_k, compile_at_k=overall.compile_at_k,
        scored_problems=overall.scored_problems,
        by_language=_grouped(results, ks, lambda r: r.language),
        by_difficulty=_grouped(results, ks, lambda r: difficulty_bucket(r.difficulty)),
        status_counts={s: status_counts[s] for s in STATUSES if s in status_counts},
        samples_requested=total, samples_generated=gen["samples"], samples_scored=scored,
        sandbox_errors=status_counts.get("sandbox_error", 0),
        generation_failed=max(gen["failed"], total - gen["samples"]),
        mean_reward=round(sum(r.mean_reward * r.n for r in results) / scored, 6) if scored else 0.0,
        solved=sum(r.solved for r in results),
        wall_s=round(wall, 3), generate_s=round(gen["wall"], 3),
        samples_per_s=round(done / wall, 3) if wall > 0 else 0.0,
        tokens_per_s=round(gen["completion_tokens"] / gen["wall"], 1) if gen["wall"] > 0 else 0.0,
        completion_tokens=gen["completion_tokens"], prompt_tokens=gen["prompt_tokens"],
        generation_waited_s=round(waits["generate"], 3),
        verification_waited_s=round(waits["verify"], 3),
        started_unix=round(started_unix, 3), halo_forge_version=_version(),
        meta=dict(meta or {}),
    )
    if output_dir is not None:
        if samples_out is not None:
            samples_out.commit()
        write_outputs(output_dir, summary, results)
    return summary


class _SampleLog:
    """samples.jsonl, written line by line as verdicts arrive (memory stays flat) into a temp
    file that becomes the real one only when the run finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.file = self.tmp.open("wb")

    def write(self, record: SampleResult) -> None:
        # Buffered local writes: cheap next to a compile, not worth a thread hop each.
        self.file.write(_json.encode(record) + b"\n")

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _leaves(error: BaseException):
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def write_outputs(output_dir: Path, summary: BenchmarkSummary,
                  results: Sequence[ProblemResult]) -> None:
    """results.jsonl, report.md, pass_at_k.png, then summary.json last: a folder with a
    summary is a finished run."""
    from halo_forge.benchmark_report import markdown_report, write_chart

    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / RESULTS_FILE, b"".join(_json.encode(r) + b"\n" for r in results))
    write_atomic(output_dir / REPORT_FILE, markdown_report(summary, results).encode())
    write_chart(output_dir / CHART_FILE, summary)
    write_atomic(output_dir / SUMMARY_FILE, msgspec.json.format(_json.encode(summary)) + b"\n")


__all__ = [
    "DEFAULT_SAMPLING", "BenchmarkSummary", "ProblemResult", "Rates", "SampleResult",
    "check_ks", "difficulty_bucket", "evaluate", "pass_at_k", "pass_at_k_array", "rates",
    "read_results", "read_summary", "write_outputs",
]
