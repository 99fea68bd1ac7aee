"""A RAFT cycle's generation rate after a resume counts only what this process generated."""

from __future__ import annotations

import pytest

from halo_forge.generate.base import Batch, BatchStats, GenerationParams, make_sample
from halo_forge.raft import generate_and_verify
from halo_forge.records import Problem, Verdict

TOKENS_PER_SAMPLE = 10
BATCH_WALL_S = 0.5


class _Backend:
    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        for p in problems:
            out = [make_sample(p, cycle=cycle, index=i, completion="```python\nprint(1)\n```",
                               prompt_tokens=1, completion_tokens=TOKENS_PER_SAMPLE,
                               params=GenerationParams(model="fake"))
                   for i in range(samples_per_prompt)]
            yield Batch(out, BatchStats(samples=len(out),
                                        completion_tokens=TOKENS_PER_SAMPLE * len(out),
                                        wall_s=BATCH_WALL_S))


class _Verifier:
    async def verify(self, sample):
        return Verdict(id=sample.id, status="passed", reward=1.0, compiled=True)


def _problem(pid: str) -> Problem:
    return Problem(id=pid, language="python", prompt="print 1")


async def _cycle(problems, cycle_dir):
    return await generate_and_verify(problems=problems, backend=_Backend(), verifier=_Verifier(),
                                     cycle=1, cycle_dir=cycle_dir, samples_per_prompt=4,
                                     settings=None, concurrency=2)


@pytest.mark.anyio
async def test_resumed_tokens_do_not_inflate_tokens_per_s(tmp_path) -> None:
    first = await _cycle([_problem("a"), _problem("b")], tmp_path)
    assert first.rates()["tokens_per_s"] == pytest.approx(TOKENS_PER_SAMPLE * 4 / BATCH_WALL_S)
    # The same cycle with one more problem: a and b come from the shards, c is generated now,
    # in one batch of BATCH_WALL_S.
    resumed = await _cycle([_problem("a"), _problem("b"), _problem("c")], tmp_path)
    assert resumed.resumed_samples == 8 and resumed.generated == 4 and resumed.samples == 12
    assert resumed.gen_s == pytest.approx(BATCH_WALL_S)
    assert resumed.rates()["tokens_per_s"] == pytest.approx(TOKENS_PER_SAMPLE * 4 / BATCH_WALL_S)
