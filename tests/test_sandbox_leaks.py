"""10,000 runs leave the process with no more descriptors, threads or children than before."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from halo_forge.sandbox import Limits, Sandbox

try:
    from tests.sandbox_util import zygote_children
except ImportError:
    from sandbox_util import zygote_children


def counts(pid: int) -> dict[str, int]:
    proc = Path(f"/proc/{pid}")
    tasks = list((proc / "task").iterdir())
    children = sum(len((t / "children").read_text().split()) for t in tasks)
    return {"fds": len(os.listdir(proc / "fd")), "threads": len(tasks), "children": children}


def settle(sb: Sandbox) -> None:
    """A run is answered before its init's exit (namespace teardown) is reaped: wait until
    the zygote has reaped the last one."""
    deadline = time.monotonic() + 10
    while zygote_children(sb.zygote_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # the reap and the pidfd's close follow the child's exit


@pytest.mark.slow
def test_ten_thousand_runs_leak_nothing():
    limits = Limits(wall_s=30)

    async def batch(sb: Sandbox, n: int, statuses: list[str]) -> None:
        limiter = anyio.CapacityLimiter(64)

        async def one(wd):
            async with limiter:
                statuses.append((await sb.run(["true"], cwd=wd, limits=limits)).status)

        with sb.workdir() as wd:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one, wd)

    children_before = counts(os.getpid())["children"]
    with Sandbox(max_concurrency=16) as sb:
        warm: list[str] = []
        anyio.run(batch, sb, 200, warm)
        settle(sb)
        me, zygote = counts(os.getpid()), counts(sb.zygote_pid)
        statuses: list[str] = []
        anyio.run(batch, sb, 10_000, statuses)
        assert statuses.count("ok") == 10_000, {s: statuses.count(s) for s in set(statuses)}
        assert counts(os.getpid()) == me
        settle(sb)
        deadline = time.monotonic() + 5
        while counts(sb.zygote_pid) != zygote and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts(sb.zygote_pid) == zygote
        assert zygote_children(sb.zygote_pid) == []
    assert counts(os.getpid())["children"] == children_before, "the zygote was not reaped"
