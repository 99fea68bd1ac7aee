"""The verifier worker: a Ray actor (async: one event loop runs many samples at once) that owns
a halo_forge Verifier on its node: its own sandbox, precompiled headers and verdict cache.

Only bytes cross the wire: a batch is a msgspec-encoded list of Jobs, and each Done comes
back encoded as soon as its sample is verified (a streaming generator), never a pickled
record. Nothing here imports Ray: verifier.py wraps the class with `ray.remote`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator

import msgspec

from halo_forge.errors import HaloError
from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.types import VerifySample

log = logging.getLogger(__name__)


class Job(msgspec.Struct, array_like=True, frozen=True):
    ticket: int  # the dispatcher's number for this verification (sample ids may repeat)
    sample: VerifySample


class Done(msgspec.Struct, array_like=True, frozen=True):
    ticket: int
    verdict: Verdict | None = None
    error: str = ""  # a HaloError (the sample's own fault, e.g. a language not handled)


class NodeReport(msgspec.Struct, frozen=True, kw_only=True):
    """What `cluster check` shows of one worker, and what the toolchain check compares."""

    node_id: str
    ip: str
    hostname: str
    cores: int  # os.cpu_count() on the node
    concurrency: int  # samples this worker verifies at once
    pid: int  # the worker's process
    zygote_pid: int  # its sandbox's zygote
    protections: dict[str, str | None]  # name -> None when active, else why not
    toolchains: dict[str, str]  # compiler command -> its version ("" when missing)


JOBS = msgspec.msgpack.Encoder()
_JOBS_IN = msgspec.msgpack.Decoder(list[Job])
DONE_IN = msgspec.msgpack.Decoder(Done)
REPORT_IN = msgspec.msgpack.Decoder(NodeReport)
CONFIG_IN = msgspec.msgpack.Decoder(VerifierConfig)


def toolchain_versions(config: VerifierConfig) -> dict[str, str]:
    """{compiler command: version} for every language the config handles; "" when missing.
    The version leaves out the binary's path and mtime, which differ between equal installs."""
    from halo_forge.verify.toolchains import resolve_toolchain

    out: dict[str, str] = {}
    for language in config.languages:
        command = config.compiler(language).command
        try:
            identity = resolve_toolchain(language, config.compiler(language)).identity
        except HaloError:
            out[command] = ""
            continue
        out[command] = identity.rsplit(" ", 1)[0]
    return out


class VerifyWorker:
    def __init__(self, config: bytes, concurrency: int, node_id: str = "") -> None:
        logging.basicConfig(level=logging.WARNING)
        # The verdict cache lives in the worker's memory: a cache_path file named by the driver
        # may not exist on this node, and workers sharing one node would contend for it.
        self.config = msgspec.structs.replace(CONFIG_IN.decode(config), concurrency=concurrency,
                                              cache_path=None)
        self.node_id = node_id
        self.verifier = None

    async def start(self) -> bytes:
        """Starts the Verifier (the sandbox first, so a broken one fails here) and reports."""
        from halo_forge.verify.runner import Verifier

        if self.verifier is None:
            verifier = Verifier(self.config)
            await verifier.__aenter__()
            self.verifier = verifier
        sandbox = self.verifier.sandbox
        report = NodeReport(
            node_id=self.node_id, ip=_ip(), hostname=socket.gethostname(),
            cores=os.cpu_count() or 1, concurrency=self.config.workers(), pid=os.getpid(),
            zygote_pid=sandbox.zygote_pid, protections=sandbox.protections(),
            toolchains=toolchain_versions(self.config))
        return JOBS.encode(report)

    async def verify_batch(self, data: bytes) -> AsyncIterator[bytes]:
        """Each job's Done, encoded, in the order the jobs finish."""
        tasks = [asyncio.ensure_future(self._one(job)) for job in _JOBS_IN.decode(data)]
        try:
            for finished in asyncio.as_completed(tasks):
                yield JOBS.encode(await finished)
        finally:
            for task in tasks:
                task.cancel()

    async def _one(self, job: Job) -> Done:
        assert self.verifier is not None, "start() first"
        try:
            return Done(job.ticket, await self.verifier.verify(job.sample))
        except HaloError as exc:
            return Done(job.ticket, error=str(exc))
        except Exception as exc:  # as verify_indexed: a verifier bug is the infrastructure's
            log.exception("verifying %s failed", job.sample.id)
            return Done(job.ticket, Verdict(
                id=job.sample.id, status="sandbox_error", reward=0.0,
                output=f"internal error: {type(exc).__name__}: {exc}",
                language=job.sample.language))

    async def close(self) -> None:
        if self.verifier is not None:
            verifier, self.verifier = self.verifier, None
            await verifier.aclose()


def _ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (unit tests)
        return "127.0.0.1"


__all__ = ["Done", "Job", "NodeReport", "VerifyWorker", "toolchain_versions"]
