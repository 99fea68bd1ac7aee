"""halo_forge.integrations.verl: verl's custom reward function signature on samples whose
verdicts are known, the batch form agreeing with the single one and with `halo-forge verify`,
and sandbox errors flagged (or raised on request), never silently a failing program."""

from __future__ import annotations

import json
import sys

import msgspec
import pytest

from halo_forge.errors import HaloError
from halo_forge.integrations import verl
from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier, verify_many
from halo_forge.verify.types import VerifySample

CONFIG = VerifierConfig(pch=False, cache=False)

DOUBLE = {"language": "python", "io_tests": [{"stdin": "2\n", "stdout": "4\n"},
                                              {"stdin": "-5\n", "stdout": "-10\n"}]}
ADD_C = {"language": "c", "test_code": "#include <assert.h>\nint main(void) { assert(add(2, 3) == 5); "
         "assert(add(-1, 1) == 0); return 0; }\n"}

PASSING = "```python\nprint(int(input()) * 2)\n```"
WRONG = "```python\nprint(int(input()) + 2)\n```"  # right for 2, wrong for -5
C_PASSING = "```c\nint add(int a, int b) { return a + b; }\n```"
C_BROKEN = "```c\nint add(int a, int b) { return a + ; }\n```"
NO_CODE = "I would double the number."

CASES = [  # (solution, ground truth, status, score)
    (PASSING, DOUBLE, "passed", 1.0),
    (WRONG, DOUBLE, "wrong_answer", 0.75),
    (C_PASSING, ADD_C, "passed", 1.0),
    (C_BROKEN, ADD_C, "compile_error", 0.0),
    (NO_CODE, DOUBLE, "no_code", 0.0),
]


def _verify_cli(solution: str, truth: dict) -> Verdict:
    """What `halo-forge verify` says of the same sample (its library entry point)."""
    sample = msgspec.convert({"id": "x", "completion": solution, **truth}, VerifySample)
    return verify_many([sample], config=CONFIG)[0]


@pytest.mark.parametrize("solution,truth,status,score", CASES, ids=[c[2] + ":" + c[1]["language"] for c in CASES])
def test_compute_score_documented_signature(solution, truth, status, score):
    # verl passes ground_truth as stored in the parquet: here as JSON text.
    got = verl.compute_score("halo/builtin", solution, json.dumps(truth), extra_info={"index": 0},
                             config=CONFIG)
    expected = _verify_cli(solution, truth)
    assert expected.status == status
    assert got["score"] == pytest.approx(score) == pytest.approx(expected.reward)
    assert got["passed"] == float(status == "passed")
    assert got["compiled"] == float(expected.compiled)
    assert got["sandbox_error"] == 0.0
    assert all(isinstance(v, float) for v in got.values())  # verl averages every extra


def test_batch_form_matches_single_calls():
    solutions = [c[0] for c in CASES]
    truths = [c[1] for c in CASES]  # dicts this time: both forms are accepted
    batch = verl.compute_score_batch(data_sources=["halo"] * len(CASES), solution_strs=solutions,
                                     ground_truths=truths, extra_infos=[None] * len(CASES), config=CONFIG)
    assert [b["score"] for b in batch] == pytest.approx([c[3] for c in CASES])
    assert [b["passed"] for b in batch] == [float(c[2] == "passed") for c in CASES]


def test_numpy_columns_as_verl_hands_them_over():
    import numpy as np

    truth = {"language": "python", "io_tests": np.array(DOUBLE["io_tests"], dtype=object)}
    got = verl.compute_score_batch(np.array(["halo"], dtype=object), [PASSING], np.array([truth], dtype=object),
                                   np.array([{"index": 0}], dtype=object), config=CONFIG)
    assert got[0]["score"] == 1.0


def test_language_from_extra_info():
    truth = {"io_tests": DOUBLE["io_tests"]}
    unfenced = "print(int(input()) * 2)\n"
    got = verl.compute_score("halo", unfenced, truth, {"language": "python"}, config=CONFIG)
    assert got["score"] == 1.0


def test_default_config_without_keyword():
    # What verl does: no config keyword, the process's shared verifier.
    assert verl.compute_score("halo", PASSING, json.dumps(DOUBLE))["score"] == 1.0


def test_verl_is_never_imported():
    assert "verl" not in sys.modules


@pytest.fixture
def sandbox_breaks_on_marker(monkeypatch):
    """The runner reports a sandbox_error for any program holding the marker (what it returns
    when the sandbox fails: see test_verify_runner.test_sandbox_error_is_never_a_bad_sample)."""
    execute = Verifier._execute

    async def flaky(self, prepared):
        if "SANDBOX_BREAKS" in prepared.program:
            return Verdict(id=prepared.sample_id, status="sandbox_error", reward=0.0,
                           output="sandbox: clone failed (test)", language=prepared.language)
        return await execute(self, prepared)

    monkeypatch.setattr(Verifier, "_execute", flaky)


def test_sandbox_error_flagged_not_a_failure(sandbox_breaks_on_marker):
    broken = "```python\n# SANDBOX_BREAKS\nprint(int(input()) * 2)\n```"
    got = verl.compute_score_batch(["halo"] * 2, [broken, PASSING], [DOUBLE, DOUBLE], None, config=CONFIG)
    assert got[0]["sandbox_error"] == 1.0 and got[0]["score"] == 0.0 and got[0]["passed"] == 0.0
    assert got[1]["sandbox_error"] == 0.0 and got[1]["score"] == 1.0  # its batch mate is unharmed
    with pytest.raises(HaloError, match="sandbox error"):
        verl.compute_score("halo", broken, DOUBLE, config=CONFIG, on_sandbox_error="raise")


@pytest.mark.parametrize("truth,match", [
    ("{not json", "not JSON"),
    ("[1, 2]", "must be an object"),
    ({"io_tests": "nonsense"}, "io_tests"),
    ({"language": "cobol", "io_tests": []}, "cobol"),
])
def test_bad_ground_truth_is_one_clear_error(truth, match):
    with pytest.raises(HaloError, match=match):
        verl.compute_score("halo", PASSING, truth, config=CONFIG)


def test_bad_policy_named():
    with pytest.raises(HaloError, match="on_sandbox_error"):
        verl.compute_score("halo", PASSING, DOUBLE, config=CONFIG, on_sandbox_error="skip")
