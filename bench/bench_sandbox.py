"""Launch overhead of the sandbox against a bare fork/exec (and bubblewrap, when installed).

    python bench/bench_sandbox.py [--runs 2000] [--rounds 10]

Runs /bin/true N times each way, one at a time, in the same process, and reports the mean
wall time per launch and the ratio to the bare baseline, and the overhead over bare: the
median over the rounds of each round's difference, so a burst of load from elsewhere moves
one round rather than the figure. The launchers take turns in `rounds` slices of N/rounds
runs each, so load from other processes on a shared machine falls on all of them alike.
"sandbox" is the default (runs' inits prepared ahead: Sandbox(prepared=2)); "cold" is the
same code preparing each init when its run arrives (prepared=0); "client" is the default
sandbox driven through its C++ client directly, without the async facade. Then throughput: the
sandbox with N runs in flight against bare spawns, as many at a time as there are CPUs.
Numbers are only comparable within one run of this script. HALO_SANDBOX_TRACE=1 also prints
the sandbox's mean time per step (from the zygote, on exit), spare set-up first, then the
steps from a run's arrival to its answer.

Besides wall time, the CPU time each way costs per launch (this process plus everything it
reaped: for the sandbox, the zygote, the runs' inits and the programs). On a busy machine the
wall time is mostly waiting for a CPU at each hand-over between processes; the CPU time is
what the launcher itself burns, and moves much less with the machine's load. (Work the
kernel defers to its own threads, such as parts of namespace teardown, is in neither.)
"""

from __future__ import annotations

import argparse
import itertools
import os
import select
import shutil
import statistics
import time

import anyio

from halo_forge.sandbox import Limits, Sandbox

TRUE = shutil.which("true") or "/bin/true"


def _cpu(pid: int | None = None) -> float:
    """CPU seconds of this process and its reaped children, or of process `pid` and its."""
    if pid is None:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _settle(sb: Sandbox) -> None:
    """Runs are answered before their init's exit is reaped: wait for the last reap, so the
    zygote's children's CPU is all counted. (Inits prepared for future runs stay: as many
    at the end of a slice as at its start. Their program's process is named hf-spare.)"""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if all(_is_spare(k) for k in children(sb.zygote_pid)):
            return
        time.sleep(0.002)


def children(pid: int) -> list[int]:
    """Live children of `pid` ([] once it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(k) for k in f.read().split()]
    except OSError:
        return []


def _is_spare(init: int) -> bool:
    kids = children(init)
    return len(kids) == 1 and comm(kids[0]) == "hf-spare"


def comm(pid: int) -> str:
    """A process's name ('' once it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def bare(n: int) -> tuple[float, float]:
    c0, t0 = _cpu(), time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(TRUE, [TRUE], {})
        os.waitpid(pid, 0)
    return time.perf_counter() - t0, _cpu() - c0


def bare_parallel(n: int, width: int) -> float:
    """Seconds per run with `width` bare spawns in flight at a time (the throughput baseline)."""
    t0 = time.perf_counter()
    running = 0
    for _ in range(n):
        if running == width:
            os.wait()
            running -= 1
        os.posix_spawn(TRUE, [TRUE], {})
        running += 1
    while running:
        os.wait()
        running -= 1
    return (time.perf_counter() - t0) / n


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


def bwrap(argv: list[str], n: int) -> tuple[float, float]:
    c0, t0 = _cpu(), time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(argv[0], argv, {})
        os.waitpid(pid, 0)
    return time.perf_counter() - t0, _cpu() - c0


async def _serial(sb: Sandbox, wd, n: int) -> float:
    limits = Limits()
    t0 = time.perf_counter()
    for _ in range(n):
        r = await sb.run([TRUE], cwd=wd, limits=limits)
        assert r.status == "ok", r
    return time.perf_counter() - t0


def sandbox_serial(sb: Sandbox, wd, n: int) -> tuple[float, float]:
    _settle(sb)
    c0 = _cpu() + _cpu(sb.zygote_pid)
    wall = anyio.run(_serial, sb, wd, n)
    _settle(sb)
    return wall, _cpu() + _cpu(sb.zygote_pid) - c0


_client_ids = itertools.count(1 << 40)


def client_serial(sb: Sandbox, wd, n: int) -> tuple[float, float]:
    """The same runs through the extension's client alone (submit, select, take), without
    the async facade: the difference to "sandbox" is what the facade costs per run."""
    client, fd = sb._client, sb._client.fileno()
    limits = Limits()._as_tuple()
    env = ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", f"HOME={wd}", f"TMPDIR={wd}"]
    _settle(sb)
    c0, t0 = _cpu() + _cpu(sb.zygote_pid), time.perf_counter()
    for _ in range(n):
        job = next(_client_ids)  # never one of the facade's ids
        client.submit(job, TRUE, [TRUE], env, str(wd), b"", [], limits)
        while True:
            select.select([fd], [], [])
            _, batch = client.take()
            if any(item[0] == job for item in batch):
                break
    wall = time.perf_counter() - t0
    _settle(sb)
    return wall, _cpu() + _cpu(sb.zygote_pid) - c0


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


def _ratio(a: float, b: float) -> float:
    # CPU times come in clock ticks: a short run may measure 0 for a launcher.
    return a / b if b else float("nan")


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, args.runs))
    per = max(1, args.runs // rounds)
    n = per * rounds
    bw_argv = bwrap_argv()
    names = ["bare", "sandbox", "sandbox_cold", "client"] + (["bwrap"] if bw_argv else [])
    wall: dict[str, list[float]] = {k: [] for k in names}  # per round, seconds per run
    cpu: dict[str, list[float]] = {k: [] for k in names}

    def add(name: str, took: tuple[float, float]) -> None:
        wall[name].append(took[0] / per)
        cpu[name].append(took[1] / per)

    conc = os.cpu_count() or 1
    # The default sandbox keeps runs' inits prepared ahead; "cold" prepares each one when
    # its run arrives (prepared=0): the same code otherwise, in the same process.
    with Sandbox(max_concurrency=conc) as sb, Sandbox(max_concurrency=conc, prepared=0) as cold:
        with sb.workdir() as wd, cold.workdir() as cold_wd:
            sandbox_serial(sb, wd, 20)  # warm up
            sandbox_serial(cold, cold_wd, 20)
            for _ in range(rounds):
                add("bare", bare(per))
                add("sandbox", sandbox_serial(sb, wd, per))
                add("sandbox_cold", sandbox_serial(cold, cold_wd, per))
                add("client", client_serial(sb, wd, per))
                if bw_argv:
                    add("bwrap", bwrap(bw_argv, per))
        par = anyio.run(_parallel, sb, n)
        bare_par = bare_parallel(n, conc)
        active = sum(1 for v in sb.protections().values() if v is None)
        total = len(sb.protections())
    mean = {k: statistics.fmean(v) for k, v in wall.items()}
    cmean = {k: statistics.fmean(v) for k, v in cpu.items()}
    # The median over rounds of each round's overhead: a burst of load from elsewhere on a
    # shared machine moves one round, not the figure.
    over = {k: statistics.median(w - b for w, b in zip(wall[k], wall["bare"])) for k in names}
    cover = {k: statistics.median(c - b for c, b in zip(cpu[k], cpu["bare"])) for k in names}
    labels = {"bare": "bare posix_spawn + waitpid", "sandbox": "halo-forge sandbox, one at a time",
              "sandbox_cold": "  same, no prepared inits (prepared=0)",
              "client": "  same, the C++ client without the facade",
              "bwrap": "bwrap --unshare-all, one at a time"}
    print(f"/bin/true x {n} in {rounds} interleaved rounds ({os.cpu_count()} CPUs; "
          f"sandbox protections active: {active}/{total}; load average {os.getloadavg()[0]:.1f})")
    print(f"{'launcher':<40} {'ms/run':>8} {'x bare':>8} {'cpu ms':>8} {'x bare':>8} {'over ms':>8} {'cpu over':>8}")
    for k in names:
        print(f"{labels[k]:<40} {mean[k] * 1e3:>8.3f} {_ratio(mean[k], mean['bare']):>8.2f} {cmean[k] * 1e3:>8.3f} "
              f"{_ratio(cmean[k], cmean['bare']):>8.2f} {over[k] * 1e3:>8.3f} {cover[k] * 1e3:>8.3f}")
    print(f"{'bare, ' + str(conc) + ' in flight at a time':<40} {bare_par * 1e3:>8.3f} {bare_par / mean['bare']:>8.2f}")
    print(f"{'halo-forge sandbox, ' + str(n) + ' in flight':<40} {par * 1e3:>8.3f} {par / mean['bare']:>8.2f}"
          f"   ({par / bare_par:.2f}x bare in flight)")
    print("over ms / cpu over: median over the rounds of (launcher - bare) per run")
    print(f"sandbox overhead per run over bare: {over['sandbox'] * 1e3:.3f} ms wall, "
          f"{cover['sandbox'] * 1e3:.3f} ms CPU; prepared / cold overhead: {_ratio(over['sandbox'], over['sandbox_cold']):.2f}; "
          f"of it the async facade: {(over['sandbox'] - over['client']) * 1e3:.3f} ms wall")
    if bw_argv:
        print(f"bwrap overhead per run over bare: {over['bwrap'] * 1e3:.3f} ms wall, {cover['bwrap'] * 1e3:.3f} ms CPU; "
              f"sandbox / bwrap: {mean['sandbox'] / mean['bwrap']:.2f} wall, {_ratio(cmean['sandbox'], cmean['bwrap']):.2f} CPU")
    return {"bare": mean["bare"], "sandbox": mean["sandbox"], "sandbox_cold": mean["sandbox_cold"],
            "bwrap": mean.get("bwrap"), "sandbox_parallel": par, "bare_parallel": bare_par,
            "sandbox_overhead": over["sandbox"], "client": mean["client"],
            "bare_cpu": cmean["bare"], "sandbox_cpu": cmean["sandbox"], "bwrap_cpu": cmean.get("bwrap")}


if __name__ == "__main__":
    main()
