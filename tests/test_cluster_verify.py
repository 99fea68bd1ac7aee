"""Verification on a Ray cluster of two simulated nodes (one raylet each, as Ray's own tests
do): the same verdicts as this machine's verifier, nothing lost or duplicated when a worker is
SIGKILLed mid-batch, a worker with a broken sandbox retired while its neighbour keeps the full
rewards, and `cluster check`'s table. The cluster starts once for the module (~20 s)."""

from __future__ import annotations

import contextlib
import os
import signal

import anyio
import msgspec
import pytest

from halo_forge.cluster import ClusterSettings, open_verifier
from halo_forge.cluster.verifier import RayVerifier, pids_of
from halo_forge.errors import HaloError
from halo_forge.sandbox import Limits
from halo_forge.verify.config import Compiler, VerifierConfig
from halo_forge.verify.runner import verify_indexed
from halo_forge.verify.types import VerifySample
from tests.sandbox_util import PYTHON

pytestmark = pytest.mark.slow

# The CPU limit ends the endless loops; the wall limit only guards against a hang, since load
# stretches an honest run's wall time (at load 10, runs of a 0.3 s sleep hit a 2 s wall limit
# having used 0.00 s of CPU).
CONFIG = VerifierConfig(
    run_limits=Limits(cpu_s=1.0, wall_s=60.0, memory_mb=256, output_bytes=1 << 16),
    pch=False, python=Compiler(command=PYTHON, flags=("-I",)),
)
AB = [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "40 2\n", "stdout": "42\n"}]
C_SUM = ('#include <stdio.h>\nint main(void){long a,b;if(scanf("%ld %ld",&a,&b)!=2)return 1;'
         'printf("%ld\\n",a+b);return 0;}\n')
PY_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


def sample(id: str, code: str, language: str, tests=AB) -> VerifySample:
    return msgspec.convert({"id": id, "code": code, "language": language, "io_tests": tests},
                           VerifySample)


def corpus() -> list[VerifySample]:
    return [
        sample("c-ok", C_SUM, "c"),
        sample("c-wrong", C_SUM.replace("a+b", "a-b"), "c"),
        sample("c-compile", "int main(void){ return x; }\n", "c"),
        sample("c-timeout", "int main(void){ for(;;){} }\n", "c"),
        sample("py-ok", PY_SUM, "python"),
        sample("py-wrong", PY_SUM.replace("a + b", "a * b"), "python"),
        sample("py-compile", "def f(:\n", "python"),
        sample("py-timeout", "while True:\n    pass\n", "python"),
    ]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # The head offers no CPUs, as a driver-only head would: the workers go to the two nodes.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=1)
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def distinct_samples(prefix: str, count: int = 16) -> list[VerifySample]:
    """Samples no verdict cache answers. The fault tests need no slow ones: the worker that
    faults is frozen (below), so it still holds its batch whatever the samples' speed."""
    return [sample(f"{prefix}{i}", f"print({i})\n", "python",
                   tests=[{"stdin": "", "stdout": f"{i}\n"}]) for i in range(count)]


@contextlib.contextmanager
def frozen(pid: int):
    """The worker `pid` stopped (SIGSTOP) until the block ends: a batch sent to it stays
    unfinished however fast the samples are, so a fault injected at the first verdict (which
    can only come from another worker) finds it mid-batch. Resumed at the end if still there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def not_passed(pairs) -> list[tuple[str, str, str]]:
    return [(v.id, v.status, v.output[:80]) for _, v in pairs if v.status != "passed"]


def settings(cluster, **kw) -> ClusterSettings:
    return ClusterSettings(address=cluster.address, start_timeout_s=120, **kw)


async def verify_all(verifier, samples, *, on_first=None) -> list[tuple[int, object]]:
    out = []
    async with verify_indexed(samples, verifier=verifier) as pairs:
        async for index, verdict in pairs:
            if not out and on_first is not None:
                on_first()
            out.append((index, verdict))
    return out


def essence(v) -> tuple:
    return (v.id, v.status, v.reward, v.compiled, v.tests_passed, v.tests_total)


@pytest.mark.anyio
async def test_two_nodes_give_the_local_verdicts(cluster):
    samples = corpus()
    async with open_verifier(CONFIG) as local:
        expected = sorted(essence(v) for _, v in await verify_all(local, samples))
    def ours(*_):
        pass

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        async with open_verifier(CONFIG, settings(cluster)) as remote:
            # The run's own SIGTERM handler (a stop at its next safe point) survives ray.init.
            kept = signal.getsignal(signal.SIGTERM) is ours
            assert isinstance(remote, RayVerifier)
            assert len({r.node_id for r in remote.reports}) == 2  # one worker on each node
            assert remote.config.workers() == 2  # one slot per single-CPU node
            got = sorted(essence(v) for _, v in await verify_all(remote, samples))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert kept
    assert got == expected
    statuses = {e[1] for e in expected}
    assert {"passed", "wrong_answer", "compile_error", "timeout"} <= statuses


@pytest.mark.anyio
async def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(cluster):
    samples = distinct_samples("s")
    # Four at once per worker, in batches of four: the victim (the first worker, so the first
    # batch is its own) is frozen with that batch and killed at the other's first verdict.
    async with RayVerifier(CONFIG, settings(cluster, batch_size=4,
                                            concurrency_per_worker=4)) as remote:
        victim = pids_of(remote)[0][0]
        killed = []

        def kill() -> None:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        with frozen(victim):
            pairs = await verify_all(remote, samples, on_first=kill)
        assert killed and len(remote.live_workers()) == 1
        assert remote.resent > 0  # the victim's unfinished samples went to the other worker
    indexes = [i for i, _ in pairs]
    assert sorted(indexes) == list(range(16))  # each sample once: none lost, none twice
    assert all(v.status == "passed" and v.reward == 1.0 for _, v in pairs), not_passed(pairs)


@pytest.mark.anyio
async def test_a_worker_whose_sandbox_fails_is_retired_and_the_other_keeps_full_rewards(cluster):
    samples = [sample(f"p{i}", PY_SUM.replace("a + b", f"a + b + {i} - {i}"), "python")
               for i in range(10)]
    async with RayVerifier(CONFIG, settings(cluster, max_sandbox_errors=2)) as remote:
        (_, zygote), _ = pids_of(remote)
        broken = remote.live_workers()[0].name
        os.kill(zygote, signal.SIGKILL)  # that worker's sandbox is gone: every run fails
        with anyio.fail_after(60):
            pairs = await verify_all(remote, samples)
        assert [w.name for w in remote.live_workers()] != [broken]
        assert len(remote.live_workers()) == 1
    # What the broken sandbox failed went to the honest worker: full reward for every sample.
    assert sorted(i for i, _ in pairs) == list(range(10))
    assert all(v.status == "passed" and v.reward == 1.0 for _, v in pairs), \
        [(v.id, v.status, v.output[:80]) for _, v in pairs]


@pytest.mark.anyio
async def test_no_worker_left_is_one_line_naming_the_cluster(cluster):
    async with RayVerifier(CONFIG, settings(cluster, max_sandbox_errors=1)) as remote:
        for _, zygote in pids_of(remote):
            os.kill(zygote, signal.SIGKILL)
        with anyio.fail_after(60), pytest.raises(HaloError) as err:
            await verify_all(remote, [sample(f"q{i}", PY_SUM, "python") for i in range(4)])
    msg = str(err.value)
    assert "\n" not in msg and cluster.address in msg and "no verifier worker left" in msg


@pytest.mark.anyio
async def test_a_worker_that_cannot_start_is_one_line_naming_why(cluster):
    config = msgspec.structs.replace(CONFIG, verifier="gcc", gcc_c=Compiler(command="no-such-gcc"))
    with pytest.raises(HaloError) as err:
        async with RayVerifier(config, settings(cluster)):
            pass
    msg = str(err.value)
    assert "\n" not in msg and "failed to start" in msg and "no-such-gcc" in msg


def test_cluster_check_lists_both_nodes(cluster, capsys):
    from halo_forge.cli import main

    assert main(["cluster", "check", "--ray-address", cluster.address]) == 0
    out = capsys.readouterr().out.splitlines()
    header, *rows = [line for line in out if line.strip()][:3]
    assert header.split()[:5] == ["node", "ip", "workers", "slots", "cores"]
    assert "gcc" in header and len(rows) == 2
    assert all(row.split()[2] == "1" for row in rows)  # one worker per node
    assert any("toolchains: the same on every node" in line for line in out)


def test_verify_cli_on_the_cluster_writes_the_local_verdicts_and_no_ray_noise(cluster, tmp_path,
                                                                             capfd):
    from halo_forge.cli import main

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(msgspec.json.encode(s) + b"\n" for s in corpus()
                                if s.language == "c"))
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    assert main(["verify", str(source), "--out", str(here)]) == 0
    capfd.readouterr()
    assert main(["verify", str(source), "--out", str(there), "--ray-address", cluster.address]) == 0
    err = capfd.readouterr().err
    assert "ray" not in err.lower() and "INFO" not in err  # Ray's logs stay off the terminal

    def lines(path):
        return [(v["id"], v["status"], v["reward"]) for v in
                map(msgspec.json.decode, path.read_bytes().splitlines())]

    assert lines(there) == lines(here) and len(lines(here)) == 4


@pytest.mark.anyio
async def test_a_node_that_dies_mid_batch_loses_and_duplicates_nothing(cluster):
    # Last in the module: it takes a node away (and puts a fresh one back for whatever follows).
    samples = distinct_samples("n")
    async with RayVerifier(CONFIG, settings(cluster, concurrency_per_worker=4,
                                            timeout_s=60)) as remote:
        doomed = remote.live_workers()[0].report
        node = next(n for n in cluster.worker_nodes if n.node_id == doomed.node_id)

        def node_dies() -> None:
            # remove_node kills the raylet only; its worker runs on until it notices (up to a
            # second), long enough on an idle machine to finish and send all it held. A node
            # that dies takes its worker with it.
            cluster.remove_node(node, allow_graceful=False)
            os.kill(doomed.pid, signal.SIGKILL)

        # A hang's guard only: Ray reports the dead actor in seconds, timeout_s in a minute.
        with frozen(doomed.pid), anyio.fail_after(600):
            pairs = await verify_all(remote, samples, on_first=node_dies)
        assert [w.report.node_id for w in remote.live_workers()] != [doomed.node_id]
        assert len(remote.live_workers()) == 1 and remote.resent > 0
    assert sorted(i for i, _ in pairs) == list(range(16))
    assert all(v.status == "passed" for _, v in pairs), not_passed(pairs)
    cluster.add_node(num_cpus=1)
