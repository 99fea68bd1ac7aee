"""Launch overhead of the sandbox against a bare fork/exec (and bubblewrap, when installed).

    python bench/bench_sandbox.py [--runs 2000]

Runs /bin/true N times each way, one at a time, in the same process, and reports the mean
wall time per launch and the ratio to the bare baseline; then the sandbox's throughput with
many runs in flight. Numbers are only comparable within one run of this script.
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
    return (time.perf_counter() - t0) / n


def bwrap(n: int) -> float | None:
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
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(exe, argv, {})
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / n


async def sandbox_serial(sb: Sandbox, n: int) -> float:
    with sb.workdir() as wd:
        for _ in range(20):
            await sb.run([TRUE], cwd=wd)
        t0 = time.perf_counter()
        for _ in range(n):
            r = await sb.run([TRUE], cwd=wd, limits=Limits())
            assert r.status == "ok", r
        return (time.perf_counter() - t0) / n


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
    args = ap.parse_args(argv)
    n = args.runs
    base = bare(n)
    bw = bwrap(n)
    with Sandbox(max_concurrency=os.cpu_count() or 1) as sb:
        ours = anyio.run(sandbox_serial, sb, n)
        par = anyio.run(_parallel, sb, n)
        active = sum(1 for v in sb.protections().values() if v is None)
        total = len(sb.protections())
    rows = [("bare posix_spawn + waitpid", base), ("halo-forge sandbox, one at a time", ours)]
    if bw is not None:
        rows.append(("bwrap --unshare-all, one at a time", bw))
    rows.append((f"halo-forge sandbox, {n} in flight", par))
    print(f"/bin/true x {n} ({os.cpu_count()} CPUs; sandbox protections active: {active}/{total})")
    print(f"{'launcher':<40} {'ms/run':>8} {'x bare':>8}")
    for name, v in rows:
        print(f"{name:<40} {v * 1e3:>8.3f} {v / base:>8.2f}")
    print(f"sandbox overhead per run over bare: {(ours - base) * 1e3:.3f} ms")
    if bw is not None:
        print(f"sandbox / bwrap: {ours / bw:.2f}")
    return {"bare": base, "sandbox": ours, "bwrap": bw, "sandbox_parallel": par}


if __name__ == "__main__":
    main()
