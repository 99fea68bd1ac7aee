"""Interactive problems: the solution and the problem's interactor, two sandboxed runs wired
stdin<->stdout (Sandbox.run_pair), the interactor's verdict deciding.

Each test: the interactor's fresh workdir holds the interactor, `input.txt` (the test's stdin:
the secret the solution must find) and `answer.txt` (the test's stdout); it is called testlib's
way, `interactor input.txt output.txt answer.txt`. The solution runs in its own workdir with
only its program. What keeps the solution to its side of the pipes:
- two runs, not one: own namespaces (pid: it cannot see the interactor's process or its
  /proc/<pid>/fd), own uid slot, own mount view (the interactor's workdir and input file are
  not in it), own limits and wall clock, the same seccomp filter and no network;
- the verdict is the interactor's exit status, which only its process writes.

How a test ends:
- the solution's own failure first: a timeout (both blocked on reads - the idle wait - ends
  at the solution's wall clock, and it is killed), memory or output limit;
- then the interactor: exit 0 accepts (the solution must also have exited 0), testlib's
  rejections (1, 2, 4, 8) are `wrong_answer`;
- an interactor killed by SIGPIPE (or Python's BrokenPipeError) wrote to a solution that had
  left: the solution's
  `runtime_error` if it crashed, else `wrong_answer`;
- an interactor that fails in any other way (testlib's FAIL, a crash, its own timeout) is the
  judge's failure (`sandbox_error`, no reward), even when the solution then died of its EOF.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.records import JudgeProgram
from halo_forge.verify.checker import (
    ANSWER,
    INPUT,
    OUTPUT,
    TESTLIB_OK,
    TESTLIB_REJECT,
    Judged,
    short_text,
)
from halo_forge.verify.judge_build import Built, judge_argv, make_executable

# The interactor outlives the solution by this much, so that an idle wait ends at the
# solution's clock (as its timeout) rather than at the interactor's (as a judge failure).
INTERACTOR_GRACE_S = 2.0


def _broken_pipe(interactor: Any) -> bool:
    """The interactor died writing to a solution that had gone: SIGPIPE, or Python's
    BrokenPipeError (an uncaught one, or exit 120 when flushing stdout at exit fails). Only
    ever moves a verdict between unrewarded statuses, so the interactor's own words are safe
    to read here even if they echo the solution's."""
    if interactor.signal == signal.SIGPIPE:
        return True
    return interactor.signal is None and interactor.exit_code in (1, 120) and b"BrokenPipeError" in interactor.stderr


def judge_pair(solution: Any, interactor: Any) -> tuple[str, str]:
    """(status, detail) of one interactive test from the two runs."""
    if solution.status == "sandbox_error":
        return "sandbox_error", f"sandbox: {solution.error}"
    if solution.status in ("timeout", "memory_limit", "output_limit"):
        return solution.status, f"solution: {solution.status.replace('_', ' ')}"
    said = short_text(interactor.stderr)
    if interactor.status in ("ok", "runtime_error") and interactor.signal is None:
        if interactor.exit_code == TESTLIB_OK:
            if solution.status == "ok":
                return "passed", ""
            how = f"exit code {solution.exit_code}" if solution.signal is None else f"signal {solution.signal}"
            return "runtime_error", f"solution: {how}: {short_text(solution.stderr)}"
        if interactor.exit_code in TESTLIB_REJECT:
            return "wrong_answer", f"interactor: {said}" if said else f"interactor exit {interactor.exit_code}"
    if _broken_pipe(interactor):
        # It wrote to a solution that had stopped reading: the solution left mid-conversation.
        if solution.status == "runtime_error":
            return "runtime_error", f"solution: {short_text(solution.stderr)}"
        return "wrong_answer", "solution: ended before the interactor was done"
    how = interactor.status if interactor.status not in ("ok", "runtime_error") else (
        f"signal {interactor.signal}" if interactor.signal is not None else f"exit {interactor.exit_code}")
    return "sandbox_error", f"interactor failed ({how}) {interactor.error}: {said}".strip()


async def interact(sandbox: Any, program: JudgeProgram, built: Built, *, solution_argv: list[str],
                   solution_workdir: Any, stdin: str, expected: str, run_limits: Any,
                   judge_limits: Any, exposed: bool = False) -> Judged:
    """One interactive test. `solution_argv` runs the sample's program in `solution_workdir`.
    `exposed` (tests only: checker.DEFENCES' own_workdir off) also writes the interactor's
    files beside the solution, as a judge with one folder per test would."""
    if built.error:
        return Judged(status="sandbox_error", detail=f"interactor: {built.error}")
    judge_limits = msgspec.structs.replace(
        judge_limits, wall_s=max(judge_limits.wall_s, run_limits.wall_s + INTERACTOR_GRACE_S))
    files: dict[str, bytes | str] = {**built.files, INPUT: stdin, ANSWER: expected}
    if exposed:
        for name in (INPUT, ANSWER):
            data = files[name]
            (Path(solution_workdir) / name).write_bytes(data.encode() if isinstance(data, str) else data)
    with sandbox.workdir(files) as wd:
        make_executable(built, wd)
        solution, interactor = await sandbox.run_pair(
            solution_argv, judge_argv(built, wd, [INPUT, OUTPUT, ANSWER]),
            cwd=(solution_workdir, wd), limits=(run_limits, judge_limits),
        )
    status, detail = judge_pair(solution, interactor)
    return Judged(status=status, detail=detail, wall_s=max(solution.wall_s, interactor.wall_s),
                  cpu_s=solution.cpu_s, program_run=solution)
