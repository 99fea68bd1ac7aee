"""Inits prepared ahead of their runs (Sandbox(prepared=N)): each still serves one run, in
namespaces of its own, with the limits of that run; a dead spare is replaced; prepared=0
(each init made when its run arrives) contains runs the same way."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from halo_forge.sandbox import Limits, Sandbox
from tests.util import sh

try:
    from tests.sandbox_util import assert_nothing_left, children, comm, is_spare, zygote_children
except ImportError:
    from sandbox_util import assert_nothing_left, children, comm, is_spare, zygote_children

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[2, 0], ids=["prepared", "cold"], scope="module")
def sb(request):
    with Sandbox(max_concurrency=2, prepared=request.param) as s:
        yield s


async def run(sb: Sandbox, script: str, **kw):
    with sb.workdir() as wd:
        return await sb.run(sh(script), cwd=wd, **kw)


def spares(sb: Sandbox) -> list[int]:
    return [k for k in zygote_children(sb.zygote_pid, spares=True) if is_spare(k)]


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


async def test_each_run_gets_namespaces_and_tmp_of_its_own(sb):
    # pid 2 (the program, under its init) is only ever given once in a pid namespace, and the
    # marker would be in a /tmp that was reused.
    probe = "ls /tmp; touch /tmp/left-by-a-run; echo $$"
    for _ in range(4):
        r = await run(sb, probe)
        assert r.status == "ok", r
        out = r.stdout.decode().split()
        assert "left-by-a-run" not in out, "a file in one run's /tmp reached the next run"
        assert out[-1] == "2", "the program is not pid 2 of a fresh pid namespace"


async def test_spares_take_the_disk_limit_of_each_run(sb):
    # After runs with a 4 MB tmpfs, a run with the default limit must get its 256 MB (and the
    # other way round): a spare made for one size never serves a run of another.
    write = "dd if=/dev/zero of=blob bs=1M count=8 2>/dev/null && echo wrote"
    for _ in range(3):
        small = await run(sb, write, limits=Limits(disk_mb=4))
        assert small.status == "output_limit", small
    for _ in range(3):
        big = await run(sb, write)
        assert big.status == "ok" and big.stdout == b"wrote\n", big
    small = await run(sb, write, limits=Limits(disk_mb=4))
    assert small.status == "output_limit", small


async def test_a_killed_spare_is_replaced():
    with Sandbox(max_concurrency=2, prepared=2) as sb:
        assert (await run(sb, "true")).status == "ok"
        assert wait_for(lambda: len(spares(sb)) == 2), spares(sb)
        victim = spares(sb)[0]
        os.kill(victim, signal.SIGKILL)
        # Until its pid namespace is torn down, its program's process may still take a run
        # (and die with it): wait until the zygote has reaped it.
        assert wait_for(lambda: victim not in children(sb.zygote_pid))
        for _ in range(4):  # more runs than spares: the dead one would have been handed one
            r = await run(sb, "echo alive")
            assert r.status == "ok" and r.stdout == b"alive\n", r
        assert wait_for(lambda: len(spares(sb)) == 2 and victim not in spares(sb)), spares(sb)
        assert_nothing_left(sb)


async def test_a_killed_spare_program_process_is_replaced():
    with Sandbox(max_concurrency=1, prepared=1) as sb:
        assert (await run(sb, "true")).status == "ok"
        assert wait_for(lambda: len(spares(sb)) == 1), spares(sb)
        (program,) = children(spares(sb)[0])
        # No waiting: whether the zygote hands this spare the next run or not, a run whose
        # process died before its execve goes to another init.
        os.kill(program, signal.SIGKILL)
        for _ in range(3):
            r = await run(sb, "echo alive")
            assert r.status == "ok" and r.stdout == b"alive\n", r


async def test_spares_killed_from_outside_under_load_never_take_the_zygote_down():
    # Programs' processes killed while they wait for a run, or while they set it up, send
    # their runs to other inits; the old init is still reaped later. (Its Job stayed under
    # the run's id: the next init taking the run replaced it while its pidfd was watched, and
    # the zygote crashed at that reap within a few kills.)
    killed = 0
    statuses: dict[str, int] = {}

    def kill_some_spares() -> None:
        nonlocal killed
        for init in children(sb.zygote_pid):
            try:
                programs = children(init)
            except OSError:  # reaped meanwhile
                continue
            for program in programs:
                if comm(program) == "hf-spare":
                    try:
                        os.kill(program, signal.SIGKILL)
                        killed += 1
                    except ProcessLookupError:
                        pass

    with Sandbox(max_concurrency=4, prepared=4) as sb, sb.workdir() as wd:
        async def one(i: int) -> None:
            r = await sb.run(sh(f"echo {i}"), cwd=wd)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            # Killed during its execve, a run fails (runtime_error, SIGKILL); it is never
            # someone else's answer, and the zygote lives on.
            assert (r.status == "ok" and r.stdout == f"{i}\n".encode()) or \
                   (r.status == "runtime_error" and r.signal == signal.SIGKILL), r

        async def killer(done: anyio.Event) -> None:
            while not done.is_set():
                kill_some_spares()
                await anyio.sleep(0.01)

        with anyio.fail_after(120):
            done = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer, done)
                async with anyio.create_task_group() as runs:
                    for i in range(400):
                        runs.start_soon(one, i)
                done.set()
        assert killed >= 20, killed
        assert statuses.get("ok", 0) >= 300, statuses
        r = await sb.run(["true"], cwd=wd)
        assert r.status == "ok", r
        assert_nothing_left(sb)


async def test_a_readonly_path_added_after_the_spares_were_made_is_visible():
    # Spares copy the mount table when they are made; a directory shown later must retire
    # them, or the next runs would not see it.
    shown = Path(tempfile.mkdtemp(prefix="halo-forge-test-ro-", dir="/var/tmp"))
    try:
        shown.chmod(0o755)
        (shown / "tool.txt").write_text("toolchain file\n")
        (shown / "tool.txt").chmod(0o666)  # writable by anyone: only the read-only view stops it
        with Sandbox(max_concurrency=2, prepared=2) as plain:
            assert (await run(plain, "true")).status == "ok"
        with Sandbox(max_concurrency=2, prepared=2, readonly_paths=[str(shown)]) as sb:
            assert wait_for(lambda: len(spares(sb)) == 2)
            for _ in range(3):
                r = await run(sb, f"cat {shown}/tool.txt; echo x > {shown}/tool.txt")
                assert r.stdout == b"toolchain file\n", r
                assert (shown / "tool.txt").read_text() == "toolchain file\n"
    finally:
        shutil.rmtree(shown)


async def test_the_base_directory_held_by_the_init_is_out_of_reach(sb):
    # The init holds the sandbox's base directory (all workdirs) open to copy the run back.
    script = ("for f in /proc/1/fd/* /proc/1/cwd /proc/1/root; do echo x > $f/escaped 2>/dev/null; "
              "ls $f/ 2>/dev/null; done; echo end")
    with sb.workdir() as wd:
        r = await sb.run(sh(script), cwd=wd)
        assert r.stdout.endswith(b"end\n"), r
        base = wd.parent
        assert not list(base.rglob("escaped"))
        assert b".root" not in r.stdout and wd.name.encode() not in r.stdout.replace(str(wd).encode(), b"")


async def test_runs_at_once_each_in_their_own_init(sb):
    pids: list[str] = []

    async def one():
        r = await run(sb, "touch /tmp/mine; ls /tmp; echo $$; sleep 0.2")
        assert r.status == "ok", r
        assert "mine" in r.stdout.decode().split(), r
        pids.append(r.stdout.decode().split()[-1])

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert pids == ["2"] * 8
    assert_nothing_left(sb)


def test_prepared_must_not_be_negative():
    from halo_forge.errors import HaloError

    with pytest.raises(HaloError, match="prepared"):
        Sandbox(prepared=-1)
