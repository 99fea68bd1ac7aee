"""RayVerifier: the pipeline's verifier (`async verify(sample) -> Verdict`, `config.workers()`,
an async context manager) with the work done by VerifyWorker actors on a Ray cluster.

Each verify() call gets a ticket and waits in a queue; whenever a worker has free slots the
queue's head goes to the least-loaded live worker as one small batch, whose verdicts stream
back one by one. rollout.py's bounded stream and back-pressure are unchanged: it keeps at most
`config.workers()` (the workers' slots, all together) samples here.

Faults: a worker that dies, or sends nothing for `timeout_s`, is dropped and the tickets it
held go back to the head of the queue for another worker; the Ledger takes each ticket's
verdict once, so a late one from a worker thought dead is dropped. A worker whose sandbox
fails `max_sandbox_errors` samples in a row is retired, and a sample its sandbox failed is
tried once more on another worker. With no worker left, every waiting call (and each later
one) fails with one line naming the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec

from halo_forge.cluster.check import refuse_mixed_toolchains
from halo_forge.cluster.ledger import Ledger
from halo_forge.cluster.settings import ClusterSettings
from halo_forge.cluster.workers import DONE_IN, JOBS, REPORT_IN, Job, NodeReport, VerifyWorker
from halo_forge.errors import HaloError
from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.types import VerifySample

log = logging.getLogger(__name__)

_REACH_TIMEOUT_S = 5.0  # a TCP connect to the address: Ray itself waits minutes, then exits


class _Worker:
    def __init__(self, name: str, actor: Any, report: NodeReport) -> None:
        self.name = name
        self.actor = actor
        self.report = report
        self.capacity = report.concurrency
        self.outstanding = 0
        self.streak = 0  # sandbox_error verdicts in a row
        self.alive = True

    @property
    def free(self) -> int:
        return self.capacity - self.outstanding if self.alive else 0


class _Waiting(msgspec.Struct):
    sample: VerifySample
    future: Any  # asyncio.Future[Verdict]
    avoid: str = ""  # a worker whose sandbox failed this sample once
    retried: bool = False


class RayVerifier:
    def __init__(self, config: VerifierConfig | None, cluster: ClusterSettings, *,
                 check_toolchains: bool = True) -> None:
        if not cluster.enabled:
            raise ValueError("RayVerifier needs a cluster address")
        self.worker_config = config or VerifierConfig()
        # Until the workers report, workers() is the local guess; then their slots' total.
        self.config = self.worker_config
        self.cluster = cluster
        self.reports: list[NodeReport] = []
        self._check_toolchains = check_toolchains
        self._workers: list[_Worker] = []
        self._ledger = Ledger()
        self._waiting: dict[int, _Waiting] = {}
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._kick_due = False
        self._error = ""
        self._owns_ray = False
        self._ray: Any = None
        self.resent = 0  # samples a lost or retired worker held, sent to another

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> RayVerifier:  # noqa: PYI034
        try:
            with anyio.fail_after(self.cluster.start_timeout_s):
                self._connect()
                await self._start_workers()
        except TimeoutError:
            await self.aclose()
            raise HaloError(f"cluster {self._where()}: the verifier workers did not start "
                            f"within {self.cluster.start_timeout_s:g}s; check the nodes with "
                            "`halo-forge cluster check`, or raise cluster.start_timeout_s") from None
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _where(self) -> str:
        return self.cluster.address if self.cluster.address != "local" else "local (in-process)"

    def _connect(self) -> None:
        address = self.cluster.address
        try:
            import ray
        except ImportError:
            raise HaloError(f"cluster.address = {address!r} needs Ray: pip install "
                            "'halo-forge[cluster]' (or leave cluster.address empty to verify "
                            "on this machine)") from None
        self._ray = ray
        if address.startswith("ray://"):
            try:
                import grpc  # noqa: F401 - Ray's client extra
            except ImportError:
                raise HaloError(f"cluster.address {address}: a ray:// address needs Ray's client: "
                                "pip install 'halo-forge[cluster]'") from None
        if ray.is_initialized():  # the caller's own connection: used, and left open
            return
        if address not in ("local", "auto"):
            _reachable(address)
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address == "local":
            kwargs["include_dashboard"] = False
        try:
            with _signals_kept():
                ray.init(address=address, **kwargs)  # "local": a new one, whatever RAY_ADDRESS says
        except (Exception, SystemExit) as exc:  # Ray exits the process when the GCS is gone
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            raise HaloError(f"cluster.address {address}: cannot connect: {first}; start one "
                            "with `ray start --head` or fix the address") from None
        self._owns_ray = True

    async def _start_workers(self) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
        if not nodes:
            raise HaloError(f"cluster {self._where()}: no live node offers CPUs; start workers "
                            "with `ray start --address HEAD:6379`")
        remote = ray.remote(VerifyWorker)
        encoded = JOBS.encode(self.worker_config)
        per_node = self.cluster.workers_per_node
        actors = []
        for node in nodes:
            cpus = int(node["Resources"]["CPU"])
            concurrency = self.cluster.concurrency_per_worker or max(1, cpus // per_node)
            for _ in range(per_node):
                # num_cpus=0: the sandbox's runs use the cores, not Ray's accounting, and
                # NodeAffinity (hard) spreads the workers one set per node.
                actor = remote.options(
                    num_cpus=0, max_restarts=0, max_concurrency=max(1000, 4 * concurrency),
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                ).remote(encoded, concurrency, node["NodeID"])
                actors.append(actor)
        self._workers = []
        starts = [actor.start.remote() for actor in actors]  # all at once
        try:
            reports = [REPORT_IN.decode(await ref) for ref in starts]
        except self._ray.exceptions.RayError as exc:
            for actor in actors:
                self._kill(actor)
            # A task's error carries the worker's own exception (a missing compiler, say).
            cause = getattr(exc, "cause", None)
            raise HaloError(f"cluster {self._where()}: a verifier worker failed to start: "
                            f"{_first_line(cause if cause is not None else exc)}") from None
        except BaseException:
            for actor in actors:
                self._kill(actor)
            raise
        for i, (actor, report) in enumerate(zip(actors, reports, strict=True)):
            self._workers.append(_Worker(f"w{i}@{report.ip}/{report.node_id[:8]}", actor, report))
        self.reports = reports
        if self._check_toolchains:
            refuse_mixed_toolchains(reports, allow=self.cluster.allow_mixed_toolchains)
        total = sum(w.capacity for w in self._workers)
        self.config = msgspec.structs.replace(self.worker_config, concurrency=total)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._fail_waiting("the verifier was closed")
        workers, self._workers = self._workers, []

        async def close(w: _Worker) -> None:
            try:
                await w.actor.close.remote()  # its sandbox ends its runs and its zygote
            except Exception:  # noqa: S110 - closing what may be dead already
                pass

        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(10):  # a dead node does not hold the run's exit
                async with anyio.create_task_group() as tg:
                    for w in workers:
                        if w.alive:
                            tg.start_soon(close, w)
            for w in workers:
                self._kill(w.actor)
        if self._owns_ray and self._ray is not None:
            self._owns_ray = False
            with _signals_kept():
                self._ray.shutdown()

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # noqa: S110 - gone already
            pass

    # -- the verifier's interface -------------------------------------------------------

    async def verify(self, sample: VerifySample) -> Verdict:
        if self._error:
            raise HaloError(self._error)
        if not self._workers:
            raise RuntimeError("RayVerifier used outside `async with`")
        ticket = next(self._tickets)
        future = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = _Waiting(sample, future)
        self._queue.append(ticket)
        self._schedule_kick()
        try:
            return await future
        finally:
            if self._waiting.pop(ticket, None) is not None:  # cancelled: drop what comes later
                self._ledger.release(ticket)

    def describe(self) -> str:
        """One line for the run's log: where the samples are verified."""
        live = self.live_workers()
        nodes = len({w.report.node_id for w in live})
        return (f"verifying on Ray cluster {self._where()}: {len(live)} worker(s) on {nodes} "
                f"node(s), {sum(w.capacity for w in live)} samples at once")

    def live_workers(self) -> list[_Worker]:
        return [w for w in self._workers if w.alive]

    # -- dispatch -----------------------------------------------------------------------

    def _schedule_kick(self) -> None:
        # Once per loop turn: the calls that arrive together leave as one batch.
        if not self._kick_due:
            self._kick_due = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_due = False
        while self._queue:
            live = self.live_workers()
            batch: list[Job] = []
            # The least loaded first; the next when all the queue's head avoids that one.
            for worker in sorted(live, key=lambda w: -w.free):
                if worker.free <= 0:
                    break
                batch = self._take(worker, min(worker.free, self.cluster.batch_size), len(live))
                if batch:
                    break
            if not batch:
                return
            worker.outstanding += len(batch)
            self._ledger.assign(worker.name, [job.ticket for job in batch])
            task = asyncio.get_running_loop().create_task(self._run_batch(worker, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, worker: _Worker, n: int, live: int) -> list[Job]:
        batch: list[Job] = []
        skipped: list[int] = []
        while self._queue and len(batch) < n:
            ticket = self._queue.popleft()
            waiting = self._waiting.get(ticket)
            if waiting is None:
                continue  # its caller left
            if waiting.avoid == worker.name and live > 1:
                skipped.append(ticket)
                continue
            batch.append(Job(ticket, waiting.sample))
        self._queue.extendleft(reversed(skipped))
        return batch

    async def _run_batch(self, worker: _Worker, batch: list[Job]) -> None:
        ray = self._ray
        left = len(batch)
        try:
            stream = worker.actor.verify_batch.options(num_returns="streaming").remote(
                JOBS.encode(batch))
            while left:
                with anyio.fail_after(self.cluster.timeout_s):
                    ref = await stream.__anext__()
                    done = DONE_IN.decode(await ref)
                left -= 1
                worker.outstanding -= 1
                self._arrived(worker, done)
        except TimeoutError:
            self._lose(worker, f"no verdict for {self.cluster.timeout_s:g}s")
        except (ray.exceptions.RayError, StopAsyncIteration) as exc:
            self._lose(worker, _first_line(exc))
        except Exception as exc:  # a bug here must not leave its samples waiting for ever
            log.exception("cluster: batch on %s failed", worker.name)
            self._lose(worker, f"internal error: {type(exc).__name__}: {_first_line(exc)}")
        finally:
            worker.outstanding -= left
            self._schedule_kick()

    def _arrived(self, worker: _Worker, done: Any) -> None:
        if not self._ledger.deliver(worker.name, done.ticket):
            return  # a late duplicate, or its caller left
        waiting = self._waiting.get(done.ticket)
        if waiting is None or waiting.future.done():
            return
        if done.error:
            waiting.future.set_exception(HaloError(done.error))
            return
        verdict = done.verdict
        if verdict.status != "sandbox_error":
            worker.streak = 0
            waiting.future.set_result(verdict)
            return
        worker.streak += 1
        if worker.streak >= self.cluster.max_sandbox_errors:
            self._lose(worker, f"its sandbox failed {worker.streak} samples in a row "
                               f"({verdict.output.strip()[:200]})", retire=True)
        if waiting.future.done():  # that was the last worker: the call has its error
            return
        others = [w for w in self.live_workers() if w is not worker]
        if not waiting.retried and others:
            # The infrastructure's failure, not the sample's: once more, elsewhere.
            waiting.retried, waiting.avoid = True, worker.name
            self._queue.appendleft(done.ticket)
            self._schedule_kick()
        else:
            waiting.future.set_result(verdict)

    def _lose(self, worker: _Worker, why: str, *, retire: bool = False) -> None:
        if not worker.alive:
            return
        worker.alive = False
        self._kill(worker.actor)
        lost = [t for t in self._ledger.lost(worker.name) if t in self._waiting]
        log.warning("cluster: verifier worker %s %s (%s); %d unfinished samples go to another",
                    worker.name, "retired" if retire else "lost", why, len(lost))
        self.resent += len(lost)
        self._queue.extendleft(reversed(lost))
        if not self.live_workers():
            self._error = (f"cluster {self._where()}: no verifier worker left (the last, "
                           f"{worker.name}, {'retired' if retire else 'lost'}: {why}); check "
                           "the nodes with `halo-forge cluster check`, or verify on this "
                           "machine with cluster.address = \"\"")
            self._fail_waiting(self._error)
        else:
            self._schedule_kick()

    def _fail_waiting(self, message: str) -> None:
        for waiting in self._waiting.values():
            if not waiting.future.done():
                waiting.future.set_exception(HaloError(message))
        self._queue.clear()


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """ray.init installs a SIGTERM handler of its own in the driver, which would end the run
    on the spot instead of at its next safe point (pipeline.py's Stopper): keep the run's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in kept.items():
            if handler is not None:
                signal.signal(s, handler)


def _reachable(address: str) -> None:
    """A quick TCP connect, so a wrong address is one line in seconds (Ray waits minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise HaloError(f"cluster.address {address}: cannot reach it ({exc.strerror or exc}); "
                        "is the head running (`ray start --head`)? fix the address or leave "
                        "it empty to verify on this machine") from None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def pids_of(verifier: RayVerifier) -> list[tuple[int, int]]:
    """(worker pid, sandbox zygote pid) of each live worker (tests kill them)."""
    return [(w.report.pid, w.report.zygote_pid) for w in verifier.live_workers()]


__all__ = ["RayVerifier", "pids_of"]
