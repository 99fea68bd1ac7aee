"""Checkers: problems that accept several correct outputs judge each test with their own program.

After the sample's run of a test, the checker runs as a run of its own, in a fresh workdir that
holds the checker, `input.txt` (the test's stdin), `output.txt` (what the sample printed, as the
sandbox captured it) and `answer.txt` (the test's expected stdout). What the sample can reach of
the checker is exactly that one file:
- the sample's workdir is not the checker's: a file the sample writes (an `answer.txt` of its own,
  say) is never read by the checker, and the sample never sees `answer.txt` (it is written only
  into the checker's workdir);
- the verdict is the checker's exit status (testlib), a channel only the checker's process
  writes: whatever the sample prints, even text the checker echoes, cannot forge it. (open-r1's
  generated checkers print their score: the last token the checker prints is read, after an
  exit 0.)
- a checker that fails - does not compile, crashes, times out, exits with testlib's FAIL or any
  code it has no meaning for, prints no score - is an infrastructure verdict: `sandbox_error`,
  no reward, never the sample's fault.

`DEFENCES` names the one defence tests switch off to show it is what stops its attack.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.records import JudgeProgram
from halo_forge.verify.judge_build import Built, judge_argv, make_executable

# testlib's exit codes: _ok, then _wa, _pe, _dirt, _unexpected_eof (all the participant's fault).
# Anything else (_fail = 3: the checker found the jury's answer wrong, or crashed) is the judge's.
TESTLIB_OK = 0
TESTLIB_REJECT = frozenset({1, 2, 4, 8})
INPUT, OUTPUT, ANSWER = "input.txt", "output.txt", "answer.txt"

DEFENCES = {
    # Off: the checker runs in the sample's workdir, where the answer file was written before
    # the sample ran (a judge that keeps one folder per test); an interactor's input and
    # answer files are written beside the solution.
    "own_workdir": "the checker runs in a fresh workdir; the answer file never sits beside the sample",
}


class Judged(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # "passed", "wrong_answer" or "sandbox_error" (the checker failed)
    detail: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    program_run: Any = None  # interactive: the solution's own RunResult


def short_text(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def read_checker(program: JudgeProgram, run: Any) -> tuple[str, str]:
    """(status, detail) from a finished checker run."""
    said = short_text(run.stderr or run.stdout)
    if run.status not in ("ok", "runtime_error"):
        return "sandbox_error", f"checker failed: {run.status} {run.error}".strip()
    if program.style == "open-r1":
        if run.status != "ok":
            return "sandbox_error", f"checker failed: exit {run.exit_code} signal {run.signal}: {said}"
        tokens = run.stdout.split()
        try:
            score = float(tokens[-1]) if tokens else math.nan
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 1.0:  # nan fails both
            return "sandbox_error", f"checker failed: no score in its output ({short_text(run.stdout, 120)!r})"
        return ("passed", "") if score >= 1.0 - 1e-9 else ("wrong_answer", f"checker score {score:g}")
    if run.signal is None and run.exit_code == TESTLIB_OK:
        return "passed", ""
    if run.signal is None and run.exit_code in TESTLIB_REJECT:
        return "wrong_answer", f"checker: {said}" if said else f"checker exit {run.exit_code}"
    how = f"signal {run.signal}" if run.signal is not None else f"exit {run.exit_code}"
    return "sandbox_error", f"checker failed ({how}): {said}"


async def check(sandbox: Any, program: JudgeProgram, built: Built, *, stdin: str, expected: str,
                actual: bytes, limits: Any, sample_workdir: Path | None = None) -> Judged:
    """The checker's verdict on one test's output. `sample_workdir` is only ever given with the
    own_workdir defence off (tests)."""
    if built.error:
        return Judged(status="sandbox_error", detail=f"checker: {built.error}")
    if program.style == "open-r1":
        args = [INPUT, ANSWER, OUTPUT]
    else:
        args = [INPUT, OUTPUT, ANSWER]
    files: dict[str, bytes | str] = {**built.files, INPUT: stdin, OUTPUT: actual, ANSWER: expected}
    if sample_workdir is not None:
        for name, data in files.items():
            target = sample_workdir / name
            if name != ANSWER or not target.exists():  # the sample's own files stay
                target.write_bytes(data.encode() if isinstance(data, str) else data)
        make_executable(built, sample_workdir)
        run = await sandbox.run(judge_argv(built, sample_workdir, args), cwd=sample_workdir, limits=limits)
    else:
        with sandbox.workdir(files) as wd:
            make_executable(built, wd)
            run = await sandbox.run(judge_argv(built, wd, args), cwd=wd, limits=limits)
    status, detail = read_checker(program, run)
    return Judged(status=status, detail=detail, wall_s=run.wall_s, cpu_s=run.cpu_s)
