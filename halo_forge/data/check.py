"""Running reference solutions through the verifier (`data prepare --verify-references`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from halo_forge.records import Problem


def verify_sample(problem: Problem, code: str, *, sample_id: str | None = None) -> dict[str, Any]:
    """The verify contract's input for `code` as an answer to `problem`."""
    sample: dict[str, Any] = {"id": sample_id or problem.id, "language": problem.language,
                              "code": code}
    if problem.io_tests:
        sample["io_tests"] = [{"stdin": t.stdin, "stdout": t.stdout} for t in problem.io_tests]
    if problem.test_code:
        sample["test_code"] = problem.test_code
    # The problem's own judge decides, as it will for the model's samples.
    if problem.checker is not None:
        sample["checker"] = msgspec.to_builtins(problem.checker)
    if problem.interactor is not None:
        sample["interactor"] = msgspec.to_builtins(problem.interactor)
    return sample


def reference_verdicts(problems: Sequence[Problem], *, concurrency: int | None = None) -> dict:
    """problem id -> Verdict of its reference (problems without a reference are left out)."""
    from halo_forge.verify import verify_many

    with_ref = [p for p in problems if p.reference.strip()]
    verdicts = verify_many([verify_sample(p, p.reference) for p in with_ref],
                           concurrency=concurrency)
    return {v.id: v for v in verdicts}


def failing_references(problems: Sequence[Problem]) -> dict[str, str]:
    """problem id -> status, for each reference that did not pass. `sandbox_error` counts as
    failing here too: an unverified reference must not be trained on as if it were known good."""
    return {pid: v.status for pid, v in reference_verdicts(problems).items()
            if v.status not in ("passed", "ran")}  # "ran": the problem has no tests
