"""Launch overhead of the sandbox against a bare fork/exec (and bubblewrap, when installed).

    python bench/bench_sandbox.py [--runs 2000] [--rounds 10]

Runs /bin/true N times each way, one at a time, in the same process, and reports the mean
wall time per launch and the ratio to the bare baseline; then the sandbox's throughput with
many runs in flight. The launchers take turns in `rounds` slices of N/rounds runs each, so
load from other processes on a shared machine falls on all of them alike. Numbers are only
comparable within one run of this script. HALO_SANDBOX_TRACE=1 also prints the sandbox's
mean time per set-up step (from the zygote, on exit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import anyio

from halo_forge.sandbox import Limits, Sandbox

TRUE = shutil.which("true") or "/bin/true"


def bare(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(TRUE, [TRUE], {})
        os.waitpid(pid, 0)
    return time.perf_counter() - t0


def bwrap_argv() -> list[str] | None:
    exe = shutil.which("bwrap")
    if not exe:
        return None
    argv = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    argv += [TRUE]
    pid = os.posix_spawn(exe, argv, {})
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        return None  # bwrap cannot create namespaces here
    return argv


def bwrap(argv: list[str], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(argv[0], argv, {})
        os.waitpid(pid, 0)
    return time.perf_counter() - t0


async def sandbox_serial(sb: Sandbox, wd, n: int) -> float:
    limits = Limits()
    t0 = time.perf_counter()
    for _ in range(n):
        r = await sb.run([TRUE], cwd=wd, limits=limits)
        assert r.status == "ok", r
    return time.perf_counter() - t0


async def _parallel(sb: Sandbox, n: int) -> float:
    with sb.workdir() as wd:
        async def one():
            r = await sb.run([TRUE], cwd=wd)
            assert r.status == "ok", r

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, args.runs))
    per = max(1, args.runs // rounds)
    n = per * rounds
    bw_argv = bwrap_argv()
    totals = {"bare": 0.0, "sandbox": 0.0, "bwrap": 0.0}
    with Sandbox(max_concurrency=os.cpu_count() or 1) as sb:
        with sb.workdir() as wd:
            anyio.run(sandbox_serial, sb, wd, 20)  # warm up
            for _ in range(rounds):
                totals["bare"] += bare(per)
                totals["sandbox"] += anyio.run(sandbox_serial, sb, wd, per)
                if bw_argv:
                    totals["bwrap"] += bwrap(bw_argv, per)
        par = anyio.run(_parallel, sb, n)
        active = sum(1 for v in sb.protections().values() if v is None)
        total = len(sb.protections())
    base, ours = totals["bare"] / n, totals["sandbox"] / n
    bw = totals["bwrap"] / n if bw_argv else None
    rows = [("bare posix_spawn + waitpid", base), ("halo-forge sandbox, one at a time", ours)]
    if bw is not None:
        rows.append(("bwrap --unshare-all, one at a time", bw))
    rows.append((f"halo-forge sandbox, {n} in flight", par))
    print(f"/bin/true x {n} in {rounds} interleaved rounds ({os.cpu_count()} CPUs; "
          f"sandbox protections active: {active}/{total}; load average {os.getloadavg()[0]:.1f})")
    print(f"{'launcher':<40} {'ms/run':>8} {'x bare':>8}")
    for name, v in rows:
        print(f"{name:<40} {v * 1e3:>8.3f} {v / base:>8.2f}")
    print(f"sandbox overhead per run over bare: {(ours - base) * 1e3:.3f} ms")
    if bw is not None:
        print(f"bwrap overhead per run over bare: {(bw - base) * 1e3:.3f} ms; sandbox / bwrap: {ours / bw:.2f}")
    return {"bare": base, "sandbox": ours, "bwrap": bw, "sandbox_parallel": par}


if __name__ == "__main__":
    main()
