"""The async facade's own behaviour: how results reach waiting runs (one persistent reader on
asyncio, a reading task elsewhere), event loops coming and going, close() with runs waiting,
and what it remembers between runs (toolchains yes, programs a run built no)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

import anyio
import pytest

import halo_forge.sandbox as sandbox_mod
from halo_forge.sandbox import Limits, Sandbox

try:  # tests/ may or may not be a package, depending on who else added files there
    from tests.sandbox_util import processes_with_arg
except ImportError:
    from sandbox_util import processes_with_arg

pytestmark = pytest.mark.anyio

TRUE = shutil.which("true") or "/bin/true"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(max_concurrency=4) as s:
        yield s


async def _many(sb: Sandbox, n: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    with sb.workdir() as wd:
        async def one(i: int) -> None:
            r = await sb.run(["sh", "-c", f"echo {i}; exit {i % 3}"], cwd=wd)
            out.append((i, r.stdout, r.exit_code))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return out


async def test_concurrent_results_reach_their_own_runs(sb):
    out = await _many(sb, 24)
    assert sorted(out) == [(i, f"{i}\n".encode(), i % 3) for i in range(24)]


async def test_the_reading_task_path_delivers_too(sb, monkeypatch):
    # Under a backend other than asyncio (trio) runs take turns reading the zygote's fd.
    monkeypatch.setattr(sandbox_mod, "_asyncio_loop", lambda: None)
    out = await _many(sb, 24)
    assert sorted(out) == [(i, f"{i}\n".encode(), i % 3) for i in range(24)]


def test_one_sandbox_serves_event_loops_one_after_another():
    async def runs(sb: Sandbox, wd) -> list[str]:
        # The reader registered with the first loop must move to the next one: without
        # that, the second loop would wait forever for a readable fd it never watches.
        with anyio.fail_after(30):
            return [(await sb.run([TRUE], cwd=wd)).status for _ in range(3)]

    with Sandbox(max_concurrency=2) as sb, sb.workdir() as wd:
        first = anyio.run(runs, sb, wd)
        second = anyio.run(runs, sb, wd)
        assert first == second == ["ok"] * 3


async def test_close_with_runs_waiting_ends_them_as_sandbox_errors():
    sb = Sandbox(max_concurrency=2)
    results = []
    with sb.workdir() as wd:
        async def one() -> None:
            results.append(await sb.run(["sleep", "30"], cwd=wd, limits=Limits(wall_s=60)))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
                await anyio.sleep(0.3)
                sb.close()
    assert [r.status for r in results] == ["sandbox_error", "sandbox_error"]
    assert all("closed" in r.error for r in results)


async def test_a_program_a_run_built_is_looked_up_afresh(sb):
    with sb.workdir({"prog": "#!/bin/sh\necho built\n"}) as wd:
        os.chmod(wd / "prog", 0o755)
        r = await sb.run(["./prog"], cwd=wd)
        assert (r.status, r.stdout) == ("ok", b"built\n")
        os.unlink(wd / "prog")
        r = await sb.run(["./prog"], cwd=wd)
        assert r.status == "sandbox_error" and "not found" in r.error


@pytest.fixture
def tools_dir():
    # Outside /tmp: every run has a /tmp of its own, so a tool there could not be shown.
    d = tempfile.mkdtemp(prefix="halo-forge-test-tools-", dir="/var/tmp")
    yield Path(d)
    shutil.rmtree(d)


async def test_a_toolchain_is_remembered_per_path(sb, tools_dir, monkeypatch):
    # A tool outside /usr is shown to the run read-only; the facade remembers where it is
    # per (name, PATH), and a different PATH finds a different tool.
    tmp_path = tools_dir
    tools = []
    for name in ("a", "b"):
        d = tmp_path / name / "bin"
        d.mkdir(parents=True)
        (d / "hello").write_text(f"#!/bin/sh\necho {name}\n")
        (d / "hello").chmod(0o755)
        tools.append(d)
    base = os.environ.get("PATH", "")
    with sb.workdir() as wd:
        monkeypatch.setenv("PATH", f"{tools[0]}:{base}")
        assert (await sb.run(["hello"], cwd=wd)).stdout == b"a\n"
        assert (await sb.run(["hello"], cwd=wd)).stdout == b"a\n"
        monkeypatch.setenv("PATH", f"{tools[1]}:{base}")
        assert (await sb.run(["hello"], cwd=wd)).stdout == b"b\n"


@pytest.mark.parametrize("reader", ["loop", "task"])
async def test_a_dead_zygote_ends_waiting_runs_and_refuses_new_ones(reader, monkeypatch):
    if reader == "task":
        monkeypatch.setattr(sandbox_mod, "_asyncio_loop", lambda: None)
    marker = f"halo-forge-orphan-{os.getpid()}-{reader}"
    results = []
    with Sandbox(max_concurrency=2) as sb, sb.workdir() as wd:
        async def one() -> None:
            results.append(await sb.run(["sh", "-c", f"sleep 30; : {marker}"], cwd=wd,
                                        limits=Limits(wall_s=60)))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
                while len(processes_with_arg(marker)) < 2:  # both runs started
                    await anyio.sleep(0.05)
                os.kill(sb.zygote_pid, signal.SIGKILL)
        assert [r.status for r in results] == ["sandbox_error"] * 2
        assert all("zygote exited unexpectedly" in r.error for r in results)
        after = await sb.run([TRUE], cwd=wd)
        assert after.status == "sandbox_error" and "zygote" in after.error
    # The runs' processes die with their init, which dies with the zygote.
    deadline = time.monotonic() + 5
    while processes_with_arg(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with_arg(marker) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run uids are handed out only as root "
                                "(unprivileged, each run has a user namespace of its own)")


async def _uid(sb: Sandbox) -> int:
    with sb.workdir() as wd:
        r = await sb.run(["id", "-u"], cwd=wd)
        assert r.status == "ok", r
        return int(r.stdout)


@needs_root
async def test_sandboxes_alive_at_once_never_share_run_uids():
    # Two sandboxes whose runs shared a uid would share its RLIMIT_NPROC: one run's fork bomb
    # would make the other sandbox's runs fail to fork.
    with Sandbox(max_concurrency=2) as a, Sandbox(max_concurrency=2) as b:
        ua, ub = await _uid(a), await _uid(b)
        assert ua != ub and min(ua, ub) >= 1999900000
        # Each holds a block of 256: no uid of one is a uid of the other.
        assert abs(ua - ub) >= 256


@needs_root
async def test_more_than_256_runs_at_once_get_uids_of_their_own():
    n = 260
    seen: list[tuple[int, int, int]] = []  # (uid, start ns, end ns) per run
    with Sandbox(max_concurrency=n, prepared=0) as sb, sb.workdir() as wd:
        async def one() -> None:
            r = await sb.run(["sh", "-c", "date +%s%N; id -u; sleep 6; date +%s%N"], cwd=wd,
                             limits=Limits(wall_s=60))
            assert r.status == "ok", r
            start, uid, end = (int(x) for x in r.stdout.split())
            seen.append((uid, start, end))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)
    # Runs that were alive at the same time had different uids (slots past the first 256
    # wrapped onto the first ones before the blocks grew with max_concurrency).
    seen.sort(key=lambda t: t[1])
    for i, (uid, _start, end) in enumerate(seen):
        for other, ostart, _ in seen[i + 1:]:
            if ostart >= end:
                break
            assert uid != other, "two runs alive at once shared a uid"
    uids = {u for u, _, _ in seen}
    assert max(uids) - min(uids) >= 256, "the test never had more than 256 runs at once"


def _client_result(client, job: int, timeout: float = 20.0) -> tuple:
    fd = client.fileno()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([fd], [], [], 0.1)
        for item in client.take()[1]:
            if item[0] == job:
                return item
    raise AssertionError(f"no result for run {job}")


def test_the_zygote_refuses_a_second_run_under_an_id_still_running():
    # The facade never reuses an id, but the zygote must not trust its caller: a second run
    # under a live id would replace the first one's bookkeeping while its init still runs.
    with Sandbox(max_concurrency=2) as sb, sb.workdir() as wd:
        client, job = sb._client, 1 << 50
        env = ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
        limits = Limits(wall_s=10)._as_tuple()
        client.submit(job, "/bin/sh", ["sh", "-c", "sleep 1; echo first"], env, str(wd), b"", [], limits)
        time.sleep(0.2)
        client.submit(job, "/bin/sh", ["sh", "-c", "echo second"], env, str(wd), b"", [], limits)
        second = _client_result(client, job)
        assert second[1] == "sandbox_error" and "already running" in second[-1], second
        first = _client_result(client, job)
        assert (first[1], first[7]) == ("ok", b"first\n"), first
        # The id is free again once its run is answered, even before its init is reaped.
        client.submit(job, "/bin/sh", ["sh", "-c", "echo third"], env, str(wd), b"", [], limits)
        third = _client_result(client, job)
        assert (third[1], third[7]) == ("ok", b"third\n"), third
        assert anyio.run(lambda: sb.run([TRUE], cwd=wd)).status == "ok"
