"""The one generate -> verify stream, used by a RAFT cycle and by the benchmark.

    async with rollout(batches(), verifier=verifier, problems=by_id, buffer=4) as pairs:
        async for sample, verdict in pairs:
            ...
    pairs.waits.generation_s, pairs.waits.verification_s

`batches` is the caller's async iterable of sample lists (RAFT makes each durable before it
yields it, the benchmark counts its generation statistics). A producer task moves them into a
bounded anyio memory stream, so the generator only waits when `buffer` batches are already
waiting for the verifier, and the verifier only waits when that buffer is empty; both waits
are measured. Samples `pending` from an earlier run are verified first, never regenerated.
Memory holds the buffer and the samples in the verifier (its slots, and as many again taken in
ahead where its sandbox queues their runs: verify_indexed), nothing more.

A stop (`stopping()` true) ends generation after the batch in hand and verification before
the next sample; what is already in flight finishes, unless the caller cancels it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from halo_forge.errors import first_error
from halo_forge.records import Problem, Sample, Verdict

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup


class Waits:
    """Seconds each side of the stream spent waiting on the other."""

    __slots__ = ("generation_s", "verification_s")

    def __init__(self) -> None:
        self.generation_s = 0.0  # generation blocked on a full buffer (verification is slower)
        self.verification_s = 0.0  # verification idle on an empty buffer (generation is slower)


class Pairs:
    """(Sample, Verdict) pairs in the order verdicts finish, and the waits so far."""

    def __init__(self, indexed: MemoryObjectReceiveStream[tuple[int, Verdict]],
                 in_flight: dict[int, Sample], waits: Waits) -> None:
        self._indexed = indexed
        self._in_flight = in_flight
        self.waits = waits

    def __aiter__(self) -> AsyncIterator[tuple[Sample, Verdict]]:
        return self._pairs()

    async def _pairs(self) -> AsyncIterator[tuple[Sample, Verdict]]:
        # A plain generator over a stream: no task group is held across its yields.
        async for index, verdict in self._indexed:
            yield self._in_flight.pop(index), verdict


@asynccontextmanager
async def rollout(
    batches: AsyncIterable[Sequence[Sample]],
    *,
    verifier: Any,
    problems: Mapping[str, Problem],
    buffer: int,
    concurrency: int | None = None,
    pending: Iterable[Sample] = (),
    stopping: Callable[[], bool] = lambda: False,
) -> AsyncIterator[Pairs]:
    """Verifies `pending`, then every batch from `batches` as it arrives, against its problem
    in `problems` (by Sample.problem_id), with at most `concurrency` samples running in the
    verifier (default: the verifier's workers; up to twice that many in flight, verify_indexed)
    and at most `buffer` batches waiting for it."""
    from halo_forge.verify.runner import verify_indexed
    from halo_forge.verify.types import verify_input

    waits = Waits()
    in_flight: dict[int, Sample] = {}  # by verify_indexed's input index: ids may repeat
    send, receive = anyio.create_memory_object_stream[Sequence[Sample]](buffer)

    async def produce() -> None:
        async with send:
            try:
                async for batch in batches:
                    t = time.perf_counter()
                    try:
                        await send.send(batch)
                    except anyio.BrokenResourceError:
                        return  # verification stopped reading (a stop, or an error on its way)
                    finally:
                        waits.generation_s += time.perf_counter() - t
                    if stopping():
                        return
            finally:
                aclose = getattr(batches, "aclose", None)
                if aclose is not None:  # the backend's stream ends here, in this task
                    await aclose()

    async def inputs() -> AsyncIterator[Any]:
        index = 0
        for sample in pending:
            if stopping():
                return
            in_flight[index] = sample
            index += 1
            yield verify_input(problems[sample.problem_id], sample)
        async with receive:
            while not stopping():
                t = time.perf_counter()
                try:
                    batch = await receive.receive()
                except anyio.EndOfStream:
                    return
                finally:
                    waits.verification_s += time.perf_counter() - t
                for sample in batch:
                    in_flight[index] = sample
                    index += 1
                    yield verify_input(problems[sample.problem_id], sample)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with verify_indexed(inputs(), verifier=verifier,
                                      concurrency=concurrency) as indexed:
                yield Pairs(indexed, in_flight, waits)
            # The caller has every verdict it wanted: a generator still running is not needed.
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None


__all__ = ["Pairs", "Waits", "rollout"]
