"""Sandbox.run_pair: two runs wired stdin<->stdout (interactive problems). Each keeps the
protections of a run of its own; the pair starts whatever the concurrency limit; cancelling
it or one side going wild leaves nothing behind."""

from __future__ import annotations

import anyio

from halo_forge.sandbox import Limits, Sandbox
from tests.sandbox_util import PYTHON, assert_nothing_left, loopback_listener

PY = PYTHON
ECHO = "import sys\nfor line in sys.stdin:\n    print(line.strip() + '!', flush=True)\n"
ASK = "import sys\nfor w in ('a', 'b'):\n    print(w, flush=True)\n    print(input(), file=sys.stderr)\n"


def test_a_pair_runs_at_concurrency_one_beside_another_run():
    async def go():
        with Sandbox(max_concurrency=1) as sb:
            with sb.workdir({"a.py": ASK}) as a, sb.workdir({"b.py": ECHO}) as b, sb.workdir() as c:
                out = {}

                async def single():
                    out["single"] = await sb.run(["/bin/sleep", "0.5"], cwd=c)

                async def pair():
                    out["pair"] = await sb.run_pair([PY, "a.py"], [PY, "b.py"], cwd=(a, b),
                                                    limits=(Limits(wall_s=5), Limits(wall_s=5)))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(single)
                    tg.start_soon(pair)
                assert_nothing_left(sb)
                return out

    out = anyio.run(go)
    assert out["single"].status == "ok"
    asker, echo = out["pair"]
    assert asker.status == echo.status == "ok", out["pair"]
    assert asker.stderr.split() == [b"a!", b"b!"]


def test_cancelling_a_pair_kills_both_sides():
    async def go():
        with Sandbox(max_concurrency=2) as sb:
            with sb.workdir() as a, sb.workdir() as b:
                with anyio.move_on_after(1.0):
                    await sb.run_pair(["/bin/sleep", "30"], ["/bin/sleep", "30"], cwd=(a, b),
                                      limits=(Limits(wall_s=60, cpu_s=60), Limits(wall_s=60, cpu_s=60)))
                assert_nothing_left(sb, marker="sleep 30")
                # The sandbox still serves runs afterwards.
                return await sb.run(["/bin/echo", "ok"], cwd=a)

    assert anyio.run(go).stdout == b"ok\n"


def test_each_side_has_its_own_limits_and_no_network():
    # One side floods its stderr and dies at its output limit; the other, unlimited in time,
    # is not stopped by its peer's limits but by its own wall clock. Neither reaches the host.
    flood = "import sys\nwhile True:\n    sys.stderr.write('x' * 4096)\n"
    connect = ("import socket, sys, time\n"
               "try:\n"
               "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=1)\n"
               "    print('connected', file=sys.stderr)\n"
               "except OSError as e:\n"
               "    print('refused', e, file=sys.stderr)\n"
               "time.sleep(30)\n")

    async def go(port):
        with Sandbox(max_concurrency=2) as sb:
            with sb.workdir({"f.py": flood}) as a, sb.workdir({"c.py": connect}) as b:
                got = await sb.run_pair([PY, "f.py"], [PY, "c.py", str(port)], cwd=(a, b),
                                        limits=(Limits(output_bytes=1 << 14), Limits(wall_s=2.0)))
                assert_nothing_left(sb)
                return got

    with loopback_listener() as (port, accepted):
        flooder, connector = anyio.run(go, port)
        assert accepted == []
    assert flooder.status == "output_limit"
    assert connector.status == "timeout" and b"refused" in connector.stderr
