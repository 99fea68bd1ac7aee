"""The host side of the Python judge (the program itself is pyjudge_main.py, run in the sandbox).

A Python sample with test code runs as one sandboxed command: the judge, holding the test code
and a one-time token it read from stdin, and the solution's own process, forked from it before
either arrived, which loads main.py (the solution alone: the test code never touches the run's
file system). The tests call the solution through proxies; results cross back as plain data.

What the runner reads back (`read_verdict`): a pass is exit status 0 AND the token as the last
line of stdout, which only the judge ever held; a defence that fired is exit GUARD_EXIT with
`<token> guard <reason>`; a failed assert is ASSERT_EXIT. Anything else is judged by the run's
status alone, and an exit 0 without the token means the tests did not finish.
"""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from typing import Any

# Bump when the judge's behaviour changes: it is part of the verdict cache key.
JUDGE_VERSION = 1

ASSERT_EXIT = 86
FAULT_EXIT = 87
GUARD_EXIT = 88
EXITED = "exited before its tests finished"


@cache
def judge_source() -> str:
    return (Path(__file__).with_name("pyjudge_main.py")).read_text(encoding="utf-8")


def judge_argv(python: str, flags: tuple[str, ...] = ("-I",)) -> list[str]:
    """The command: `-S` skips site in the judge (the solution's process runs site itself)."""
    return [python, *flags, "-S", "-c", judge_source()]


def judge_input(test_code: str) -> tuple[bytes, str]:
    """(stdin for the judge, the token that proves its pass)."""
    token = secrets.token_hex(16)
    return (token + "\n" + test_code).encode("utf-8", errors="surrogatepass"), token


# The harness before the judge, kept ONLY as the baseline of bench/bench_verify.py (the cost of
# the defences, same run): solution and tests in one process, so any solution can forge it.
LEGACY_HARNESS = f"""
def _halo_harness():
    import sys
    token = sys.stdin.readline().strip()
    tests = sys.stdin.read()
    with open("main.py", "rb") as f:
        code = compile(f.read().rstrip(b"\\n") + b"\\n\\n" + tests.encode(), "main.py", "exec", dont_inherit=True)
    scope = {{"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}}
    try:
        exec(code, scope)
    except AssertionError:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        raise SystemExit({ASSERT_EXIT})
    sys.stdout.flush()
    sys.stdout.write("\\n" + token + " pass\\n")
    sys.stdout.flush()
_halo_harness()
"""


def python_test_run(python: str, flags: tuple[str, ...], test_code: str, *, legacy: bool = False,
                    ) -> tuple[list[str], bytes, str]:
    """(argv, stdin, token) of the run that judges `test_code`; `legacy` is the unsafe
    baseline for benchmarks."""
    stdin, token = judge_input(test_code)
    if legacy:
        return [python, *flags, "-c", LEGACY_HARNESS], stdin, token
    return judge_argv(python, flags), stdin, token


class JudgeVerdict:
    """How the runner should read one judge run: `status` None keeps the run's own status."""

    __slots__ = ("detail", "guard", "status")

    def __init__(self, status: str | None = None, guard: str = "", detail: str = "") -> None:
        self.status, self.guard, self.detail = status, guard, detail


def read_verdict(run: Any, token: str) -> JudgeVerdict:
    lines = run.stdout.decode("utf-8", errors="replace").split("\n")
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    if run.status == "ok":
        if last == f"{token} pass":
            return JudgeVerdict("passed")
        return JudgeVerdict("wrong_answer", EXITED, "the program ended with status 0 before the tests ran to the end")
    if run.status != "runtime_error" or run.signal is not None:
        return JudgeVerdict()
    if run.exit_code == ASSERT_EXIT:
        return JudgeVerdict("wrong_answer")
    if run.exit_code == GUARD_EXIT and last.startswith(f"{token} guard "):
        reason = last[len(token) + len(" guard "):]
        return JudgeVerdict("wrong_answer", reason)
    if run.exit_code == FAULT_EXIT:
        return JudgeVerdict("sandbox_error", "", "python judge could not start: "
                            + run.stderr.decode("utf-8", errors="replace")[-500:])
    return JudgeVerdict()
