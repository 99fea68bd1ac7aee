"""Generation returns completions; RAFT, where generation and verification meet, records the
verifier's extraction with each sample, so the filter's duplicate check compares code."""

from __future__ import annotations

import pytest

from halo_forge.filter import FilterConfig, select
from halo_forge.generate.base import Batch, BatchStats, GenerationParams, make_sample
from halo_forge.raft import generate_and_verify, read_cycle
from halo_forge.records import Problem, Verdict

# The same program in different prose: one sample to train on, not three.
COMPLETIONS = ["Here:\n```python\nprint(1)\n```", "```python\nprint(1)\n```\nDone.",
               "Sure.\n```py\nprint(1)\n```"]


class _Backend:
    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        for p in problems:
            out = [make_sample(p, cycle=cycle, index=i, completion=COMPLETIONS[i],
                               prompt_tokens=1, completion_tokens=1,
                               params=GenerationParams(model="fake"))
                   for i in range(samples_per_prompt)]
            yield Batch(out, BatchStats(samples=len(out), completion_tokens=len(out), wall_s=0.1))


class _Verifier:
    async def verify(self, sample):
        return Verdict(id=sample.id, status="passed", reward=1.0, compiled=True)


@pytest.mark.anyio
async def test_samples_carry_the_extracted_code_and_duplicates_are_found(tmp_path) -> None:
    problem = Problem(id="p", language="python", prompt="print 1")
    await generate_and_verify(problems=[problem], backend=_Backend(), verifier=_Verifier(),
                              cycle=1, cycle_dir=tmp_path, samples_per_prompt=3,
                              settings=None, concurrency=2)
    samples, verdicts = read_cycle(tmp_path)
    assert sorted(s.completion for s in samples) == sorted(COMPLETIONS)
    assert [s.code for s in samples] == ["print(1)\n"] * 3
    by_id = {v.id: v for v in verdicts}
    kept, report = select([(s, by_id[s.id]) for s in samples], FilterConfig())
    assert len(kept) == 1 and report.removed["duplicate"] == 2
