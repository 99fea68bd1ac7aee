"""Soak of the sandbox under hostile conditions: not a speed benchmark, a correctness one.

    python bench/soak_sandbox.py [--runs 3000] [--concurrency 6] [--prepared 3] [--seed 1]

Many mixed runs at once (echo, sleeps that hit the wall clock, output floods, workdir writes,
large stdin, runs cancelled at random moments, random disk limits) while a killer task
SIGKILLs runs' inits and spares' program processes from outside. Every answer must be the
run's own (its stdout, its workdir) with the status its kind allows; the zygote must live on
and nothing may be left behind. Prints the counts; exits 1 on any wrong answer. Run it after
any change to the zygote (a soak of this kind found a use-after-free there; its regression
test is tests/test_sandbox_prepared.py::test_spares_killed_from_outside_under_load_...).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import signal
import sys
import time

import anyio

from halo_forge.sandbox import Limits, Sandbox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sandbox import children, comm  # noqa: E402

# What each kind may end as: its own status, or what an outside kill makes of it (the init
# killed: sandbox_error; the program killed during its execve: runtime_error, SIGKILL).
KILLED = {"sandbox_error", "runtime_error"}
WANT = {"echo": "ok", "write": "ok", "stdin": "ok", "sleep": "timeout", "flood": "output_limit"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--prepared", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    counts: collections.Counter = collections.Counter()
    wrong: list[tuple] = []

    with Sandbox(max_concurrency=args.concurrency, prepared=args.prepared) as sb:
        async def one(i: int) -> None:
            kind = rng.choice(["echo", "echo", "write", "stdin", "sleep", "flood", "cancel"])
            limits = Limits(wall_s=0.3, cpu_s=1, disk_mb=rng.choice([16, 64, 256]),
                            output_bytes=4096 if kind == "flood" else 1 << 20)
            with sb.workdir({"in.txt": f"{i}\n"}) as wd:
                data = b""
                argv = {"echo": ["cat", "in.txt"], "write": ["sh", "-c", "echo x > out.txt; cat in.txt"],
                        "stdin": ["sha256sum"], "sleep": ["sleep", "5"], "flood": ["yes"],
                        "cancel": ["sleep", "5"]}[kind]
                if kind == "stdin":
                    data = os.urandom(rng.choice([0, 1000, 200_000]))
                if kind == "cancel":
                    with anyio.move_on_after(rng.uniform(0, 0.05)):
                        await sb.run(argv, cwd=wd, limits=limits)
                    counts["cancelled"] += 1
                    return
                r = await sb.run(argv, cwd=wd, stdin=data, limits=limits)
                counts[(kind, r.status)] += 1
                if r.status == WANT[kind]:
                    mine = {"echo": r.stdout == f"{i}\n".encode(),
                            "write": r.stdout == f"{i}\n".encode() and (wd / "out.txt").exists(),
                            "stdin": r.stdout[:64] == hashlib.sha256(data).hexdigest().encode()}
                    if not mine.get(kind, True):
                        wrong.append((i, kind, r.status, r.stdout[:60]))
                elif r.status not in KILLED or "exited unexpectedly" in r.error:
                    wrong.append((i, kind, r.status, r.error))

        async def killer(done: anyio.Event) -> None:
            while not done.is_set():
                await anyio.sleep(0.005)
                for init in children(sb.zygote_pid):
                    if rng.random() < 0.03:
                        targets = [init]
                    else:  # a program's process waiting for its run, or setting it up
                        targets = [k for k in children(init) if comm(k) == "hf-spare" and rng.random() < 0.5]
                    for pid in targets:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            counts["killed from outside"] += 1
                        except ProcessLookupError:
                            pass

        async def soak() -> None:
            done = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer, done)
                async with anyio.create_task_group() as runs:
                    for i in range(args.runs):
                        runs.start_soon(one, i)
                        if i % 20 == 0:
                            await anyio.sleep(0.005)
                done.set()

        t0 = time.monotonic()
        anyio.run(soak)
        took = time.monotonic() - t0
        with sb.workdir() as wd:
            after = anyio.run(lambda: sb.run(["true"], cwd=wd))
        # Every init left must be a spare (its one child still waiting for a run).
        def busy() -> list[int]:
            return [k for k in children(sb.zygote_pid) if [comm(c) for c in children(k)] != ["hf-spare"]]

        deadline = time.monotonic() + 5
        while busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftover = busy()

    for key, n in sorted(counts.items(), key=str):
        print(f"  {key}: {n}")
    print(f"{args.runs} runs in {took:.1f}s; after the soak a run is {after.status}; "
          f"inits left (not spares): {len(leftover)}; wrong answers: {len(wrong)}")
    for w in wrong[:10]:
        print("  wrong:", w)
    return 0 if not wrong and after.status == "ok" and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
