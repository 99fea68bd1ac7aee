"""The cluster's parts that need no Ray cluster: the dispatcher's ledger (exactly once, late
duplicates dropped), the dispatcher's timeouts and resends over fake workers, the toolchain
check and `cluster check`'s table, [cluster] settings, and bad input as one line."""

from __future__ import annotations

import asyncio
import sys
import types

import anyio
import pytest

from halo_forge.cluster.check import refuse_mixed_toolchains, table, toolchain_mismatch
from halo_forge.cluster.ledger import Ledger
from halo_forge.cluster.settings import ClusterSettings
from halo_forge.cluster.verifier import RayVerifier, _Worker
from halo_forge.cluster.workers import DONE_IN, JOBS, Done, NodeReport
from halo_forge.errors import HaloError
from halo_forge.records import Verdict
from halo_forge.verify.types import VerifySample

GCC = "gcc (Debian 12.2.0-14) 12.2.0"


def report(node: str, ip: str, *, gcc: str = GCC, off: str = "") -> NodeReport:
    return NodeReport(node_id=node, ip=ip, hostname=ip, cores=8, concurrency=8, pid=1,
                      zygote_pid=2, protections={"seccomp": None, "userns": off or None},
                      toolchains={"gcc": gcc, "python3": "python 3.11.7 (main) [GCC 12.2.0]"})


# -- the ledger --------------------------------------------------------------------------

def test_a_late_duplicate_from_a_worker_thought_dead_is_dropped():
    ledger = Ledger()
    ledger.assign("a", [1, 2, 3])
    assert ledger.deliver("a", 1)
    assert ledger.lost("a") == [2, 3]  # a is taken as dead: its unfinished tickets go
    ledger.assign("b", [2, 3])
    assert not ledger.deliver("a", 2)  # a's verdict comes late: dropped
    assert ledger.deliver("b", 2)
    assert not ledger.deliver("b", 2)  # and never twice from anyone
    assert not ledger.deliver("a", 1)
    ledger.release(3)  # its caller left
    assert not ledger.deliver("b", 3) and len(ledger) == 0


# -- the dispatcher over fake workers ------------------------------------------------------

class _Ref:
    def __init__(self, data: bytes, delay: float) -> None:
        self.data, self.delay = data, delay

    def __await__(self):
        return self._get().__await__()

    async def _get(self) -> bytes:
        await asyncio.sleep(self.delay)
        return self.data


class _Stream:
    def __init__(self, actor: _Actor, data: bytes) -> None:
        from halo_forge.cluster.workers import _JOBS_IN

        self.jobs = list(_JOBS_IN.decode(data))
        self.actor = actor

    async def __anext__(self) -> _Ref:
        if self.actor.hang:
            await asyncio.sleep(3600)  # a node that went silent
        if not self.jobs:
            raise StopAsyncIteration
        job = self.jobs.pop(0)
        self.actor.seen.append(job.sample.id)
        verdict = Verdict(id=job.sample.id, status=self.actor.status, reward=1.0)
        # No delay: an answering worker never waits on the clock, so only the silent one meets
        # timeout_s, however long a loaded machine stalls this process.
        return _Ref(JOBS.encode(Done(job.ticket, verdict)), 0)


class _Actor:
    def __init__(self, *, hang: bool = False, status: str = "passed") -> None:
        self.hang, self.status, self.seen, self.killed = hang, status, [], False
        actor = self

        class _Method:
            def options(self, **_):
                return self

            def remote(self, data: bytes) -> _Stream:
                return _Stream(actor, data)

        self.verify_batch = _Method()


def _fake(workers: list[_Actor], **settings) -> RayVerifier:
    v = RayVerifier(None, ClusterSettings(address="local", **settings))
    v._ray = types.SimpleNamespace(
        exceptions=types.SimpleNamespace(RayError=RuntimeError),
        kill=lambda actor, no_restart: setattr(actor, "killed", True))
    v._workers = [_Worker(f"w{i}", actor, report(f"n{i}", f"10.0.0.{i}"))
                  for i, actor in enumerate(workers)]
    return v


def _sample(i: int) -> VerifySample:
    return VerifySample(id=f"s{i}", code="x", language="python")


@pytest.mark.anyio
async def test_a_silent_worker_times_out_and_its_samples_go_elsewhere():
    silent, honest = _Actor(hang=True), _Actor()
    v = _fake([silent, honest], timeout_s=0.3, batch_size=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            got: dict[str, Verdict] = {}

            async def one(i: int) -> None:
                got[f"s{i}"] = await v.verify(_sample(i))

            for i in range(6):
                tg.start_soon(one, i)
    assert sorted(got) == [f"s{i}" for i in range(6)]
    assert silent.killed and [w.name for w in v.live_workers()] == ["w1"]
    assert sorted(honest.seen) == sorted(got)  # the silent worker's samples were resent


@pytest.mark.anyio
async def test_sandbox_errors_retire_a_worker_and_its_samples_are_retried():
    broken, honest = _Actor(status="sandbox_error"), _Actor()
    v = _fake([broken, honest], max_sandbox_errors=2)
    with anyio.fail_after(10):
        verdicts = [await v.verify(_sample(i)) for i in range(5)]
    assert all(x.status == "passed" for x in verdicts)
    assert broken.killed and len(v.live_workers()) == 1


@pytest.mark.anyio
async def test_no_worker_left_fails_waiting_and_later_calls_in_one_line():
    v = _fake([_Actor(status="sandbox_error")], max_sandbox_errors=1)
    with anyio.fail_after(10), pytest.raises(HaloError, match="no verifier worker left"):
        await v.verify(_sample(0))
    with pytest.raises(HaloError, match="local") as err:
        await v.verify(_sample(1))
    assert "\n" not in str(err.value)


@pytest.mark.anyio
async def test_a_samples_own_error_reaches_its_caller_as_the_local_verifier_raises_it():
    actor = _Actor()
    v = _fake([actor])

    class _Erring(_Stream):
        async def __anext__(self):
            job = self.jobs.pop(0)
            return _Ref(JOBS.encode(Done(job.ticket, error="sample 's0' is rust but ...")), 0)

    actor.verify_batch.remote = lambda data: _Erring(actor, data)
    with anyio.fail_after(10), pytest.raises(HaloError, match="is rust"):
        await v.verify(_sample(0))
    assert v.live_workers()  # the sample's fault, not the worker's


@pytest.mark.anyio
async def test_a_garbled_reply_loses_the_worker_not_the_sample():
    garbled, honest = _Actor(), _Actor()

    class _Garbled(_Stream):
        async def __anext__(self):
            return _Ref(b"not msgpack", 0)

    garbled.verify_batch.remote = lambda data: _Garbled(garbled, data)
    v = _fake([garbled, honest])
    with anyio.fail_after(10):
        verdict = await v.verify(_sample(0))
    assert verdict.status == "passed" and garbled.killed


def test_done_round_trips_as_msgpack_bytes():
    done = Done(7, Verdict(id="a", status="passed", reward=1.0))
    assert DONE_IN.decode(JOBS.encode(done)) == done


# -- toolchains and the table -------------------------------------------------------------

def test_mixed_toolchains_are_refused_naming_node_and_tool():
    same = [report("aaaa1111", "10.0.0.1"), report("bbbb2222", "10.0.0.2")]
    assert toolchain_mismatch(same) == ""
    refuse_mixed_toolchains(same, allow=False)
    mixed = [same[0], report("bbbb2222", "10.0.0.2", gcc="gcc (Debian 13.1.0-1) 13.1.0")]
    with pytest.raises(HaloError) as err:
        refuse_mixed_toolchains(mixed, allow=False)
    msg = str(err.value)
    assert "\n" not in msg and "10.0.0.2" in msg and "gcc" in msg and "13.1.0" in msg
    assert "allow_mixed_toolchains" in msg
    refuse_mixed_toolchains(mixed, allow=True)


def test_the_table_has_a_row_per_node_with_workers_protections_and_versions():
    reports = [report("aaaa1111", "10.0.0.1"), report("aaaa1111", "10.0.0.1"),
               report("bbbb2222", "10.0.0.2", off="no user namespaces")]
    header, first, second = table(reports)
    assert header.split() == ["node", "ip", "workers", "slots", "cores", "protections", "gcc",
                              "python3"]
    assert first.split()[:6] == ["aaaa1111", "10.0.0.1", "2", "16", "8", "2/2"]
    assert first.split()[6:] == ["12.2.0", "python", "3.11.7"]
    assert "1/2 (off: userns)" in second


# -- settings and bad input ----------------------------------------------------------------

@pytest.mark.parametrize("body, key", [
    ('address = "nowhere"', "cluster.address"),
    ("workers_per_node = 0", "cluster.workers_per_node"),
    ("timeout_s = 0", "cluster.timeout_s"),
    ("concurrency_per_worker = 0", "cluster.concurrency_per_worker"),
])
def test_bad_cluster_settings_name_the_key(body, key):
    from halo_forge.config import parse_config

    with pytest.raises(HaloError, match=key.replace(".", r"\.")):
        parse_config('[model]\nname = "m"\n[cluster]\n' + body + "\n")


def test_the_default_is_no_cluster_and_the_local_verifier():
    from halo_forge.cluster import open_verifier
    from halo_forge.config import parse_config
    from halo_forge.verify.runner import Verifier

    config = parse_config('[model]\nname = "m"\n')
    assert not config.cluster.enabled
    assert type(open_verifier(config.verifier, config.cluster)) is Verifier


@pytest.mark.anyio
@pytest.mark.parametrize("address, blocked, message", [
    ("ray://127.0.0.1:1", "grpc", "needs Ray's client: pip install 'halo-forge[cluster]'"),
    ("auto", "ray", "needs Ray: pip install 'halo-forge[cluster]'"),
    ("127.0.0.1:1", None, "cannot reach it"),
])
async def test_a_cluster_that_cannot_be_used_is_one_line(monkeypatch, address, blocked, message):
    if blocked:
        monkeypatch.setitem(sys.modules, blocked, None)  # import fails as if not installed
    with anyio.fail_after(30), pytest.raises(HaloError) as err:
        async with RayVerifier(None, ClusterSettings(address=address)):
            pass
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ray_address_flag_is_checked_as_the_setting(capsys):
    from halo_forge.cli import main

    assert main(["verify", "in.jsonl", "--out", "o.jsonl", "--ray-address", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--ray-address" in err and "nowhere" in err


def test_ray_address_overrides_the_config_files_cluster_address(tmp_path):
    from halo_forge.cli import build_parser
    from halo_forge.cli.raft import build_config

    cfg = tmp_path / "p.toml"
    cfg.write_text('[model]\nname = "m"\n[cluster]\naddress = "auto"\nworkers_per_node = 2\n')
    args = build_parser().parse_args(["raft", "train", "--config", str(cfg),
                                      "--ray-address", "ray://head:10001"])
    config, _ = build_config(args)
    assert config.cluster.address == "ray://head:10001" and config.cluster.workers_per_node == 2
    config, _ = build_config(build_parser().parse_args(["raft", "train", "--config", str(cfg)]))
    assert config.cluster.address == "auto"
