"""The host side of the Python judge (the program itself is pyjudge_main.py, run in the sandbox).

A Python sample with test code runs as one sandboxed command: the judge, holding the test code
and a one-time token it read from stdin, and the solution's own process, forked from it before
either arrived, which loads main.py (the solution alone: the test code never touches the run's
file system). The tests call the solution through proxies; results cross back as plain data.

One interpreter per sample, started with -S (no site-packages, no .pth files: a .pth that
imports certifi once cost two thirds of every start): the judge compiles main.py itself and a
syntax error is COMPILE_EXIT, a compile error. The judge's own code is compiled once per
interpreter on the host (`judge_code`) and reaches the run as bytecode ahead of the token on
stdin, so no run spends its time compiling the judge. The host has the solution and the tests
compiled too (pycompile.py: a compile in a fresh fork copies every page it writes); a solution
that does not compile cleanly (an error or a warning) is still compiled by the run, which
reports it as before.

What the runner reads back (`read_verdict`): a pass is exit status 0 AND the token as the last
line of stdout, which only the judge ever held; a defence that fired is exit GUARD_EXIT with
`<token> guard <reason>`; a failed assert is ASSERT_EXIT. Anything else is judged by the run's
status alone, and an exit 0 without the token means the tests did not finish.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import threading
from functools import cache
from pathlib import Path
from typing import Any

from halo_forge.errors import HaloError
from halo_forge.verify.pycompile import PythonCompiler

# Bump when the judge's behaviour changes: it is part of the verdict cache key.
JUDGE_VERSION = 2

COMPILE_EXIT = 85
ASSERT_EXIT = 86
FAULT_EXIT = 87
GUARD_EXIT = 88
EXITED = "exited before its tests finished"


def _program(name: str) -> str:
    """A sandboxed Python program's text: the shared prelude (site's builtins), then its own."""
    here = Path(__file__)
    return (here.with_name("pysite_prelude.py").read_text(encoding="utf-8") + "\n\n"
            + here.with_name(name).read_text(encoding="utf-8"))


@cache
def judge_source() -> str:
    return _program("pyjudge_main.py")


@cache
def run_source() -> str:
    """The plain runner (pyrun_main.py): Python samples without test code."""
    return _program("pyrun_main.py")


def run_argv(python: str, flags: tuple[str, ...], *, site: bool) -> list[str]:
    """The command that runs main.py alone (io tests, or no tests): one interpreter, -S."""
    return [python, *flags, "-S", "-c", run_source(), *(("site",) if site else ())]


# Reads exactly the judge's bytecode from stdin with os.read: a buffered read could take some
# of the token and the tests with it, into memory the solution's process is forked from.
_BOOT = ("import posix as os, marshal\n"
         "def _take(n):\n"
         "    b = b''\n"
         "    while len(b) < n:\n"
         "        c = os.read(0, n - len(b))\n"
         "        if not c: raise SystemExit(%d)\n"
         "        b += c\n"
         "    return b\n"
         "exec(marshal.loads(_take(int.from_bytes(_take(8), 'big'))))\n")


@cache
def _same_interpreter(python: str) -> bool:
    import os
    import sys

    ours = {os.path.realpath(p) for p in (sys.executable, getattr(sys, "_base_executable", "")) if p}
    return os.path.realpath(python) in ours


@cache
def _compiled(python: str, source: str) -> bytes:
    # By the interpreter that runs it: bytecode is private to one Python version (this one's,
    # when it is the same binary, saves every verify command a subprocess).
    if _same_interpreter(python):
        import marshal

        return marshal.dumps(compile(source, "<python judge>", "exec", dont_inherit=True))
    script = ("import marshal, sys; src = sys.stdin.read(); "
              "sys.stdout.buffer.write(marshal.dumps(compile(src, '<python judge>', 'exec')))")
    try:
        done = subprocess.run([python, "-I", "-S", "-c", script], input=source.encode(), capture_output=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HaloError(f"cannot compile the python judge with {python}: {exc}; check [verifier.python]") from None
    if done.returncode != 0 or not done.stdout:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise HaloError(f"{python} cannot compile the python judge ({tail[0]}): it needs Python 3.9 or newer; "
                        "set [verifier.python] command to one")
    return done.stdout


def judge_code(python: str) -> bytes:
    """The judge's bytecode for `python`, framed for the boot: compiled once per process."""
    code = _compiled(python, judge_source())
    return len(code).to_bytes(8, "big") + code


def judge_argv(python: str, flags: tuple[str, ...] = ("-I",), *, site: bool = False) -> list[str]:
    """The command: `-S` keeps site out of the judge; `site` lets the solution's process run it."""
    return [python, *flags, "-S", "-c", _BOOT % FAULT_EXIT, *(("site",) if site else ())]


_TESTS: dict[tuple[str, str], bytes] = {}  # the tests' bytecode, by interpreter and problem
_TESTS_LOCK = threading.Lock()  # verifiers on threads of their own (BackgroundVerifier's) share it


def _tests_compiled(compiler: PythonCompiler, test_code: str) -> bytes:
    # Kept per problem: RAFT verifies many samples against the same test code.
    key = (compiler.python, test_code)
    code = _TESTS.get(key)
    if code is None:
        code = compiler("<tests>", test_code.encode("utf-8", errors="surrogatepass"))  # the judge's stdin bytes
        if code:
            with _TESTS_LOCK:
                if len(_TESTS) >= 256:
                    _TESTS.pop(next(iter(_TESTS)))
                _TESTS[key] = code
    return code


def judge_input(test_code: str, python: str, *, compiler: PythonCompiler | None = None,
                solution: str | None = None) -> tuple[bytes, str]:
    """(stdin for the judge, the token that proves its pass). Ahead of the token, the judge's
    bytecode and the solution's (empty: the judge compiles main.py); after it the tests, as
    source or as NUL and their bytecode (source never holds a NUL). `compiler` (pycompile.py)
    makes the bytecode of `solution`, main.py's text, and of the tests."""
    token = secrets.token_hex(16)
    code = tests = b""
    if compiler is not None:
        if solution is not None:
            try:
                code = compiler("main.py", solution.encode())  # main.py's own bytes (Sandbox.workdir)
            except UnicodeEncodeError:
                pass
        tests = _tests_compiled(compiler, test_code)
    body = b"\0" + tests if tests else test_code.encode("utf-8", errors="surrogatepass")
    return judge_code(python) + len(code).to_bytes(8, "big") + code + token.encode() + b"\n" + body, token


@cache
def warm_source() -> str:
    """The warm template (pywarm_main.py): forks serve Python runs; see its docstring."""
    return (Path(__file__).with_name("pywarm_main.py")).read_text(encoding="utf-8")


def warm_argv(python: str, flags: tuple[str, ...]) -> list[str]:
    return [python, *flags, "-S", "-c", warm_source()]


def warm_data(python: str) -> bytes:
    """The template's stdin: the two commands it serves (the judge's boot, the plain runner),
    each with its bytecode for `python`. Nothing of any run."""
    import marshal

    return marshal.dumps((_BOOT % FAULT_EXIT, judge_code(python), run_source(), _compiled(python, run_source())), 4)


def judge_fingerprint() -> str:
    """Part of the verdict cache key: a change to the judge's text is a new judge."""
    return hashlib.blake2b(judge_source().encode() + run_source().encode(), digest_size=8).hexdigest()


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
                    site: bool = False, solution: str | None = None, compiler: PythonCompiler | None = None
                    ) -> tuple[list[str], bytes, str]:
    """(argv, stdin, token) of the run that judges `test_code` against main.py (`solution`, its
    text, and `compiler` let the host compile both); `legacy` is the unsafe baseline for
    benchmarks."""
    if legacy:
        token = secrets.token_hex(16)
        stdin = (token + "\n" + test_code).encode("utf-8", errors="surrogatepass")
        return [python, *flags, "-S", "-c", LEGACY_HARNESS], stdin, token  # -S: as the judge, for a fair cost
    stdin, token = judge_input(test_code, python, compiler=compiler, solution=solution)
    return judge_argv(python, flags, site=site), stdin, token


def compile_failed(run: Any) -> bool:
    """The run ended at the judge's (or the plain runner's) compile step: a compile error."""
    return run.status == "runtime_error" and run.signal is None and run.exit_code == COMPILE_EXIT


def compile_warnings(stderr: bytes) -> str:
    """The compile step's warnings (printed first, before any of the program ran)."""
    lines = stderr.decode("utf-8", errors="replace").splitlines()
    return "\n".join(line for line in lines if line.startswith("main.py:") and "SyntaxWarning: " in line)


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
    if run.exit_code == COMPILE_EXIT:
        return JudgeVerdict("compile_error")
    if run.exit_code == ASSERT_EXIT:
        return JudgeVerdict("wrong_answer")
    if run.exit_code == GUARD_EXIT and last.startswith(f"{token} guard "):
        reason = last[len(token) + len(" guard "):]
        return JudgeVerdict("wrong_answer", reason)
    if run.exit_code == FAULT_EXIT:
        return JudgeVerdict("sandbox_error", "", "python judge could not start: "
                            + run.stderr.decode("utf-8", errors="replace")[-500:])
    return JudgeVerdict()
