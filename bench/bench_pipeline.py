"""The RAFT cycle's streaming overlap: generation and verification running at once.

    python bench/bench_pipeline.py [--languages python,c] [--samples 6] [--batch 8]
                                   [--gen-ratio 1.0] [--concurrency N] [--repeat 2]
    python -m pytest bench/bench_pipeline.py      # the same measurement under pytest-benchmark

A scripted generator emits batches at a fixed rate (it sleeps, as a GPU backend's thread
leaves the event loop free while it generates) and the REAL verifier (sandbox, compilers,
tests) checks them through the real cycle code, `raft.generate_and_verify` (shards written,
waits measured). The samples are built-in problems' references (they pass) and broken
variants (they fail to compile or to pass), so the verifier does real work of both kinds.

Measured in the same run, on the same samples:
  verify   the verifier alone on every sample (no generator)
  gen      the generator alone (no verifier); its rate is set so gen = gen-ratio x verify
  cycle    generate_and_verify: both at once through the bounded stream
  seq      a sequential loop: generate a batch, verify it, repeat (what a naive loop costs)
Printed: cycle / max(gen, verify) (1.0 = perfect overlap), cycle / (gen + verify), and
cycle / seq (the real sequential loop, the baseline). The verdict cache is off so every
sample costs a real compile and run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402

from halo_forge.data.registry import load_problems  # noqa: E402
from halo_forge.generate.base import (  # noqa: E402
    Batch,
    BatchStats,
    GenerationParams,
    SamplingSettings,
    make_sample,
)
from halo_forge.raft import generate_and_verify  # noqa: E402
from halo_forge.records import Problem, Sample  # noqa: E402
from halo_forge.verify.config import VerifierConfig  # noqa: E402
from halo_forge.verify.runner import Verifier, verify_indexed  # noqa: E402
from halo_forge.verify.types import verify_input  # noqa: E402

# Lines that stop each language's program from building (compile_error) or, for Python, from
# starting; prepended to a reference to make a failing sample.
_BREAK = {
    "c": "#error this variant does not build\n",
    "cpp": "#error this variant does not build\n",
    "rust": "compile_error!(\"this variant does not build\");\n",
    "python": "raise SystemExit(3)\n",
}


def completion_for(problem: Problem, index: int) -> str:
    """Two of three samples are the reference, the third a broken variant; each distinct."""
    code = problem.reference if index % 3 != 2 else _BREAK[problem.language] + problem.reference
    mark = "#" if problem.language == "python" else "//"
    return f"```{problem.language}\n{mark} sample {index}\n{code}\n```"


class RateGenerator:
    """A generation backend that yields `batch` samples every `seconds_per_batch`."""

    name = "bench"
    model = "bench"
    adapter = ""

    def __init__(self, *, batch: int, seconds_per_batch: float) -> None:
        self.batch = batch
        self.seconds_per_batch = seconds_per_batch

    def samples(self, problems: list[Problem], samples_per_prompt: int, cycle: int):
        params = GenerationParams(model=self.model)
        rows = [(p, i) for p in problems for i in range(samples_per_prompt)]
        for k in range(0, len(rows), self.batch):
            yield [make_sample(p, cycle=cycle, index=i, completion=completion_for(p, i),
                               prompt_tokens=1, completion_tokens=64, params=params)
                   for p, i in rows[k:k + self.batch]]

    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        for samples in self.samples(list(problems), samples_per_prompt, cycle):
            await anyio.sleep(self.seconds_per_batch)
            yield Batch(samples, BatchStats(samples=len(samples),
                                            completion_tokens=64 * len(samples),
                                            wall_s=self.seconds_per_batch))


async def _verify_all(verifier: Verifier, pairs: list[tuple[Problem, Sample]],
                      concurrency: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    async with verify_indexed((verify_input(p, s) for p, s in pairs), verifier=verifier,
                              concurrency=concurrency) as indexed:
        async for _, verdict in indexed:
            statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    return statuses


async def _generate_all(gen: RateGenerator, problems: list[Problem], spp: int) -> int:
    n = 0
    async for batch in gen.stream(problems, samples_per_prompt=spp, params=None, cycle=1):
        n += len(batch.samples)
    return n


async def _sequential(gen: RateGenerator, verifier: Verifier, problems: list[Problem],
                      spp: int, concurrency: int) -> None:
    by_id = {p.id: p for p in problems}
    async for batch in gen.stream(problems, samples_per_prompt=spp, params=None, cycle=1):
        await _verify_all(verifier, [(by_id[s.problem_id], s) for s in batch.samples],
                          concurrency)


def measure(*, languages: list[str], samples: int, batch: int, gen_ratio: float,
            concurrency: int, repeat: int) -> dict[str, float]:
    problems = [p for p in load_problems("builtin")
                if p.language in languages and p.reference.strip()]
    if not problems:
        raise SystemExit(f"no built-in problems with a reference in {languages}")
    config = VerifierConfig(cache=False, concurrency=concurrency)
    probe = RateGenerator(batch=batch, seconds_per_batch=0.0)
    all_pairs = [(next(p for p in problems if p.id == s.problem_id), s)
                 for b in probe.samples(problems, samples, 1) for s in b]
    n_batches = -(-len(all_pairs) // batch)

    async def main() -> dict[str, float]:
        best: dict[str, float] = {}

        def keep(name: str, seconds: float) -> None:
            best[name] = min(best.get(name, float("inf")), seconds)

        async with Verifier(config) as verifier:
            # Warm-up: toolchain probes, precompiled headers, page cache.
            await _verify_all(verifier, [(p, s) for p, s in all_pairs if s.index == 0][:8],
                              concurrency)
            t = time.perf_counter()
            statuses = await _verify_all(verifier, all_pairs, concurrency)
            keep("verify", time.perf_counter() - t)
            print(f"{len(all_pairs)} samples ({len(problems)} problems in "
                  f"{', '.join(sorted({p.language for p in problems}))}), {n_batches} batches "
                  f"of {batch}, concurrency {concurrency}; verdicts: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
            gen = RateGenerator(batch=batch,
                                seconds_per_batch=gen_ratio * best["verify"] / n_batches)
            settings = SamplingSettings(max_new_tokens=64, seed=0)
            for r in range(repeat):
                if r:
                    t = time.perf_counter()
                    await _verify_all(verifier, all_pairs, concurrency)
                    keep("verify", time.perf_counter() - t)
                t = time.perf_counter()
                await _generate_all(gen, problems, samples)
                keep("gen", time.perf_counter() - t)
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    stats = await generate_and_verify(
                        problems=problems, backend=gen, verifier=verifier, cycle=1,
                        cycle_dir=Path(tmp) / "cycle_1", samples_per_prompt=samples,
                        settings=settings, buffer_batches=4, concurrency=concurrency)
                    wall = time.perf_counter() - t
                assert stats.verdicts == len(all_pairs), stats
                if wall < best.get("cycle", float("inf")):
                    best.update(gen_wait=stats.gen_wait_s, verify_wait=stats.verify_wait_s)
                keep("cycle", wall)
                t = time.perf_counter()
                await _sequential(gen, verifier, problems, samples, concurrency)
                keep("seq", time.perf_counter() - t)
        return best

    return anyio.run(main)


def report(t: dict[str, float]) -> dict[str, float]:
    ratios = {
        "cycle/max": t["cycle"] / max(t["gen"], t["verify"]),
        "cycle/sum": t["cycle"] / (t["gen"] + t["verify"]),
        "cycle/seq": t["cycle"] / t["seq"],
    }
    print(f"verify alone {t['verify']:.2f}s, generate alone {t['gen']:.2f}s, "
          f"streaming cycle {t['cycle']:.2f}s (generation waited {t['gen_wait']:.2f}s on "
          f"verification, verification {t['verify_wait']:.2f}s on generation), "
          f"sequential loop {t['seq']:.2f}s")
    print(f"cycle / max(gen, verify) = {ratios['cycle/max']:.2f}  (1.00 = full overlap)")
    print(f"cycle / (gen + verify)   = {ratios['cycle/sum']:.2f}  (1.00 = no overlap)")
    print(f"cycle / sequential loop  = {ratios['cycle/seq']:.2f}")
    return ratios


def test_pipeline_overlap(benchmark) -> None:
    times = benchmark.pedantic(measure, kwargs=dict(
        languages=["python", "c"], samples=3, batch=8, gen_ratio=1.0,
        concurrency=os.cpu_count() or 1, repeat=1), rounds=1, iterations=1)
    ratios = report(times)
    benchmark.extra_info.update(ratios)
    # Overlap must beat doing one after the other.
    assert ratios["cycle/sum"] < 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--languages", default="python,c",
                    help="comma-separated built-in problem languages (c, cpp, rust, python)")
    ap.add_argument("--samples", type=int, default=6, help="samples per problem")
    ap.add_argument("--batch", type=int, default=8, help="samples per generated batch")
    ap.add_argument("--gen-ratio", type=float, default=1.0,
                    help="generation time as a multiple of the verifier's (1.0: equal)")
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=2, help="keep the best of R runs of each")
    args = ap.parse_args(argv)
    times = measure(languages=[x.strip() for x in args.languages.split(",") if x.strip()],
                    samples=args.samples, batch=args.batch, gen_ratio=args.gen_ratio,
                    concurrency=args.concurrency, repeat=args.repeat)
    report(times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
