"""Benchmark evaluation: n samples per problem, verified as they arrive, scored per k.

    summary = await evaluate(problems=problems, backend=backend, samples=10, ks=(1, 5, 10),
                             output_dir=Path("bench/base"))

Generation and verification run at once through halo_forge.rollout (as in a RAFT cycle), so
the model does not wait for the compiler and memory holds per-problem counters, not the
samples. pass@k (every test passed) and compile@k (it compiled) are different claims and are
reported side by side, never mixed into one number (halo_forge.pass_at_k has the estimator,
halo_forge.benchmark_records the files' schema, halo_forge.benchmark_report what a reader sees).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from halo_forge import faults
from halo_forge.atomic import AtomicFile
from halo_forge.benchmark_records import (
    DEFAULT_SAMPLING,
    SAMPLES_FILE,
    BenchmarkSummary,
    ProblemResult,
    Rates,
    SampleResult,
)
from halo_forge.benchmark_report import write_outputs
from halo_forge.errors import HaloError
from halo_forge.generate.base import Backend, SamplingSettings
from halo_forge.pass_at_k import check_ks, pass_at_k, pass_at_k_array
from halo_forge.records import STATUSES, Problem, Sample, Verdict
from halo_forge.rollout import rollout

_json = msgspec.json.Encoder()

# --- scoring -------------------------------------------------------------------------------


class _Tally:
    """Counts for one problem, updated verdict by verdict (no samples kept)."""

    __slots__ = ("best_reward", "compiled", "n", "passed", "problem", "ran", "requested",
                 "reward_sum", "status_counts")

    def __init__(self, problem: Problem, requested: int) -> None:
        self.problem = problem
        self.requested = requested
        self.status_counts: dict[str, int] = {}
        self.passed = self.compiled = self.ran = self.n = 0
        self.reward_sum = self.best_reward = 0.0

    def add(self, verdict: Verdict) -> None:
        self.status_counts[verdict.status] = self.status_counts.get(verdict.status, 0) + 1
        if verdict.status == "sandbox_error":
            return
        self.n += 1
        self.passed += verdict.status == "passed"
        self.ran += verdict.status == "ran"
        self.compiled += bool(verdict.compiled)
        self.reward_sum += verdict.reward
        self.best_reward = max(self.best_reward, verdict.reward)

    def result(self, ks: Sequence[int]) -> ProblemResult:
        p = self.problem
        scored = [k for k in ks if k <= self.n]
        return ProblemResult(
            id=p.id, language=p.language, source=p.source, difficulty=p.difficulty,
            tests=p.tests_kind, requested=self.requested, n=self.n, passed=self.passed,
            compiled=self.compiled, ran=self.ran,
            status_counts={s: self.status_counts[s] for s in STATUSES if s in self.status_counts},
            best_reward=round(self.best_reward, 6),
            mean_reward=round(self.reward_sum / self.n, 6) if self.n else 0.0,
            pass_at_k={k: pass_at_k(self.n, self.passed, k) for k in scored},
            compile_at_k={k: pass_at_k(self.n, self.compiled, k) for k in scored},
            run_at_k=({k: pass_at_k(self.n, self.ran, k) for k in scored}
                      if p.tests_kind == "none" else {}),
        )


def rates(results: Sequence[ProblemResult], ks: Sequence[int]) -> Rates:
    """pass@k and compile@k averaged over `results`; per k, over the problems with >= k scored
    samples (all of them unless sandbox errors or failed requests thinned some out). run@k is
    over the problems without tests alone; pass@k is left empty when no problem has tests."""
    untested = np.array([r.tests == "none" for r in results], dtype=bool)
    out = Rates(problems=len(results), samples=sum(r.n for r in results),
                untested_problems=int(untested.sum()))
    n = np.array([r.n for r in results], dtype=np.int64)
    passed = np.array([r.passed for r in results], dtype=np.int64)
    compiled = np.array([r.compiled for r in results], dtype=np.int64)
    ran = np.array([r.ran for r in results], dtype=np.int64)
    for k in ks:
        mask = n >= k
        out.scored_problems[k] = int(mask.sum())
        if mask.any():
            if not untested.all():
                out.pass_at_k[k] = float(pass_at_k_array(n[mask], passed[mask], k).mean())
            out.compile_at_k[k] = float(pass_at_k_array(n[mask], compiled[mask], k).mean())
        run_mask = mask & untested
        if run_mask.any():
            out.run_at_k[k] = float(pass_at_k_array(n[run_mask], ran[run_mask], k).mean())
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
    verifier: Any = None,
    cluster: Any = None,
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
    (default: the verifier starts its own). `verifier`: a running verifier to use instead (the
    pipeline's, local or on a cluster); `cluster`: ClusterSettings for one of its own.
    `output_dir`: where summary.json, results.jsonl, samples.jsonl (unless
    keep_samples=False), report.md and pass_at_k.png go. `meta` is stored
    in the summary as given (cycle, split, ...). `progress(done, total)` is called after each
    verdict. `sampling` defaults to DEFAULT_SAMPLING; `buffer` is how many samples may wait
    between generation and verification (default: 4 x the verifier's workers)."""
    from contextlib import AsyncExitStack, nullcontext

    from halo_forge.cluster import open_verifier
    from halo_forge.verify.config import VerifierConfig

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
    verifying = (nullcontext(verifier) if verifier is not None
                 else open_verifier(config, cluster, sandbox=sandbox))
    total = samples * len(problems)

    samples_out = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if keep_samples:
            samples_out = _SampleLog(output_dir / SAMPLES_FILE)

    started_unix, t0 = time.time(), time.perf_counter()
    gen = {"samples": 0, "failed": 0, "wall": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    done = 0

    async def batches() -> AsyncIterator[list[Sample]]:
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
                    # One sample at a time: `buffer` counts samples, whatever the batch size.
                    yield [sample]
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    try:
        async with AsyncExitStack() as stack:
            verifier = await stack.enter_async_context(verifying)
            # A cluster's verifier knows its slots once its workers are up.
            workers = concurrency or verifier.config.workers()
            pairs = await stack.enter_async_context(rollout(
                batches(), verifier=verifier, problems={p.id: p for p in problems},
                buffer=buffer or 4 * workers, concurrency=workers))
            async for sample, verdict in pairs:
                by_id[sample.problem_id].add(verdict)
                if samples_out is not None:
                    samples_out.add(SampleResult(
                        id=sample.id, problem_id=sample.problem_id, status=verdict.status,
                        reward=verdict.reward, compiled=verdict.compiled,
                        tests_passed=verdict.tests_passed, tests_total=verdict.tests_total,
                        completion_tokens=sample.completion_tokens,
                        completion=sample.completion, output=verdict.output))
                done += 1
                if progress is not None:
                    progress(done, total)
                faults.point("evaluate.verdict")
    except BaseException:
        if samples_out is not None:
            samples_out.discard()
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
        untested_problems=overall.untested_problems, run_at_k=overall.run_at_k,
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
        generation_waited_s=round(pairs.waits.generation_s, 3),
        verification_waited_s=round(pairs.waits.verification_s, 3),
        started_unix=round(started_unix, 3), halo_forge_version=_version(),
        meta=dict(meta or {}),
    )
    if output_dir is not None:
        if samples_out is not None:
            samples_out.commit()
        write_outputs(output_dir, summary, results)
    return summary


class _SampleLog(AtomicFile):
    """samples.jsonl, written line by line as verdicts arrive (memory stays flat); it appears
    only when the run finishes (commit)."""

    def add(self, record: SampleResult) -> None:
        # Buffered local writes: cheap next to a compile, not worth a thread hop each.
        self.write(_json.encode(record) + b"\n")


__all__ = ["DEFAULT_SAMPLING", "check_ks", "difficulty_bucket", "evaluate", "rates"]
