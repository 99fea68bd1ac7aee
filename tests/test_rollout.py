"""The rollout engine (generate -> verify) and verify_indexed, with a scripted verifier."""

from __future__ import annotations

import anyio
import pytest

from halo_forge.errors import HaloError
from halo_forge.records import Problem, Sample, Verdict
from halo_forge.rollout import rollout
from halo_forge.verify.runner import verify_indexed

PROBLEM = Problem(id="p", language="python", prompt="print 1")


def _sample(index: int, *, id: str | None = None) -> Sample:
    return Sample(id=id or f"s{index}", problem_id="p", index=index, language="python",
                  completion=f"```python\nprint({index})\n```")


class _Verifier:
    """Echoes the code back in the verdict; later samples finish first, so order differs."""

    def __init__(self, *, fail_on: str = "", hold: anyio.Event | None = None) -> None:
        self.seen: list[str] = []
        self.fail_on = fail_on
        self.hold = hold
        self.cancelled = 0

    async def verify(self, sample) -> Verdict:
        self.seen.append(sample.completion)
        if sample.completion and sample.completion == self.fail_on:
            raise HaloError("no python3 on PATH: install it")
        try:
            if self.hold is not None:
                await self.hold.wait()
            for _ in range(10 - len(self.seen) % 10):
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return Verdict(id=sample.id, status="passed", reward=1.0, output=sample.completion)


class _Source:
    """Batches of samples; records how far it got and whether it was closed."""

    def __init__(self, batches: list[list[Sample]] | None = None, *, endless: bool = False):
        self.batches = batches or []
        self.endless = endless
        self.yielded = 0
        self.closed = False

    async def __call__(self):
        try:
            if self.endless:
                index = 0
                while True:
                    self.yielded += 1
                    index += 1
                    yield [_sample(index)]
            for batch in self.batches:
                self.yielded += 1
                yield batch
        finally:
            self.closed = True


def _run(fn):
    return anyio.run(fn)


def test_every_sample_meets_its_own_verdict_even_when_ids_repeat():
    # Two samples share an id (a backend bug, or a rerun): matching by id would pair them wrong.
    batches = [[_sample(0), _sample(1, id="dup")], [_sample(2, id="dup"), _sample(3)]]
    verifier = _Verifier()

    async def main():
        out = []
        async with rollout(_Source(batches)(), verifier=verifier, problems={"p": PROBLEM},
                           buffer=1, concurrency=3) as pairs:
            async for sample, verdict in pairs:
                out.append((sample, verdict))
        return out

    out = _run(main)
    assert sorted(s.index for s, _ in out) == [0, 1, 2, 3]
    for sample, verdict in out:
        assert verdict.output == sample.completion


def test_pending_samples_are_verified_before_anything_new():
    pending = [_sample(7), _sample(8)]
    verifier = _Verifier()

    async def main():
        async with rollout(_Source([[_sample(0)], [_sample(1)]])(), verifier=verifier,
                           problems={"p": PROBLEM}, buffer=2, concurrency=1,
                           pending=pending) as pairs:
            return [s.index async for s, _ in pairs]

    assert sorted(_run(main)) == [0, 1, 7, 8]
    assert verifier.seen[:2] == [pending[0].completion, pending[1].completion]


def test_a_stop_ends_generation_and_the_stream_without_an_error():
    source = _Source(endless=True)
    stopped = False

    async def main():
        nonlocal stopped
        got = 0
        async with rollout(source(), verifier=_Verifier(), problems={"p": PROBLEM}, buffer=2,
                           concurrency=2, stopping=lambda: stopped) as pairs:
            async for _ in pairs:
                got += 1
                stopped = got >= 3
        return got

    got = _run(main)
    assert got >= 3 and source.closed
    assert source.yielded < 20  # an endless generator was stopped, not drained


def test_a_users_error_in_verification_comes_out_as_itself_and_closes_generation():
    source = _Source(endless=True)
    verifier = _Verifier(fail_on=_sample(4).completion)

    async def main():
        async with rollout(source(), verifier=verifier, problems={"p": PROBLEM}, buffer=2,
                           concurrency=2) as pairs:
            async for _ in pairs:
                pass

    with pytest.raises(HaloError, match="no python3"):  # not an ExceptionGroup
        _run(main)
    assert source.closed


def test_a_failing_generator_fails_the_rollout_with_its_own_error():
    async def broken():
        yield [_sample(0)]
        raise HaloError("generation failed: the server went away")

    async def main():
        async with rollout(broken(), verifier=_Verifier(), problems={"p": PROBLEM}, buffer=1,
                           concurrency=1) as pairs:
            async for _ in pairs:
                pass

    with pytest.raises(HaloError, match="server went away"):
        _run(main)


def test_leaving_early_cancels_generation_and_verification():
    source = _Source(endless=True)

    class FirstOnly(_Verifier):
        async def verify(self, sample):  # the first sample finishes, the rest hang
            if not self.seen:
                self.seen.append(sample.completion)
                return Verdict(id=sample.id, status="passed", reward=1.0)
            return await super().verify(sample)

    verifier = FirstOnly(hold=anyio.Event())  # never set

    async def main():
        with anyio.fail_after(30):
            async with rollout(source(), verifier=verifier, problems={"p": PROBLEM}, buffer=2,
                               concurrency=3) as pairs:
                async for _ in pairs:
                    break
        return "left"

    assert _run(main) == "left"
    assert source.closed
    assert verifier.cancelled >= 1  # in-flight runs were cancelled, not awaited


def test_verify_indexed_is_a_context_manager_and_early_exit_cancels_in_flight():
    verifier = _Verifier(hold=anyio.Event())  # never released
    samples = [{"id": f"v{i}", "language": "python", "code": "print(1)"} for i in range(5)]
    finished = _Verifier()

    async def main():
        async with verify_indexed(samples[:2], verifier=finished, concurrency=2) as pairs:
            assert sorted([i async for i, _ in pairs]) == [0, 1]
        with anyio.fail_after(30):
            async with verify_indexed(samples, verifier=verifier, concurrency=3):
                while len(verifier.seen) < 3:
                    await anyio.sleep(0.01)
                # leave now: three verifications are in flight, two not started
        return True

    assert _run(main)
    assert verifier.cancelled == 3


@pytest.mark.parametrize(("run_slots", "in_flight"), [(3, 6), (2, 6), (8, 3), (None, 3)])
def test_samples_are_taken_in_ahead_only_where_the_sandbox_queues_their_runs(run_slots, in_flight):
    """With a sandbox that holds at most `concurrency` runs (it queues the rest), as many samples
    again are taken in ahead of a free slot; with more slots than that, or none said, taking
    more in would run more at once than the caller asked for."""
    verifier = _Verifier(hold=anyio.Event())  # never released
    verifier.run_slots = run_slots
    samples = [{"id": f"v{i}", "language": "python", "code": "print(1)"} for i in range(9)]

    async def main():
        with anyio.fail_after(30):
            async with verify_indexed(samples, verifier=verifier, concurrency=3):
                while len(verifier.seen) < in_flight:
                    await anyio.sleep(0.01)
                for _ in range(50):  # nothing more is taken in while these wait
                    await anyio.lowlevel.checkpoint()
                return len(verifier.seen)

    assert _run(main) == in_flight
