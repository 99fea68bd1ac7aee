"""Python verification in one interpreter per sample (issue #15): the run compiles main.py itself
(a syntax error is still a compile error, the reward ladder unchanged), starts without
site-packages unless the problem or the config asks for them, and the judge's bytecode that
reaches the run ahead of the token leaks nothing of the token or the tests to the solution."""

from __future__ import annotations

import marshal
import os
import select
import signal
import subprocess
import sys
import threading

import anyio
import msgspec
import pytest

from halo_forge.records import Problem, Sample
from halo_forge.sandbox import Limits
from halo_forge.verify import pycompile, pyjudge
from halo_forge.verify import pyjudge_main as judge_main
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.pycompile import PythonCompiler
from halo_forge.verify.rewards import RewardLadder
from halo_forge.verify.runner import Verifier
from halo_forge.verify.toolchains import resolve_toolchain
from halo_forge.verify.types import SampleIOTest, VerifySample, verify_input
from tests.util import python_path  # noqa: F401 - autouse: each test cold and warm

CONFIG = VerifierConfig(verifier="python", pch=False, cache=False,
                        run_limits=Limits(cpu_s=5.0, wall_s=10.0, memory_mb=1024))
LADDER = RewardLadder()



ADD = "def add(a, b):\n    return a + b\n"
T_ADD = "assert add(1, 2) == 3\nassert add(-4, 10) == 6\nassert 7 == add(3, 4)\n"


def _verify(samples: list[VerifySample], config: VerifierConfig = CONFIG) -> tuple[dict, list[list[str]]]:
    """Verdicts by id, and the argv of every sandbox run made for them."""
    argvs: list[list[str]] = []

    async def main() -> dict:
        async with Verifier(config) as verifier:
            run = verifier.sandbox.run

            async def counting(argv, **kwargs):
                argvs.append(list(argv))
                return await run(argv, **kwargs)

            verifier.sandbox.run = counting  # type: ignore[method-assign]
            return {s.id: await verifier.verify(s) for s in samples}

    return anyio.run(main), argvs


def _python(**kw) -> VerifySample:
    return VerifySample(language="python", **kw)


# -- one interpreter per sample ----------------------------------------------------------------

def test_a_sample_with_test_code_is_one_run():
    got, argvs = _verify([_python(id="ok", code=ADD, test_code=T_ADD)])
    assert (got["ok"].status, got["ok"].reward) == ("passed", 1.0)
    assert len(argvs) == 1  # no syntax check of its own before the judge


@pytest.mark.parametrize("tests", ["test_code", "io", "none"])
def test_a_syntax_error_is_a_compile_error_and_nothing_runs_after_it(tests):
    extra = {"test_code": {"test_code": T_ADD},
             "io": {"io_tests": [SampleIOTest(stdin="1", stdout="1")] * 3},
             "none": {}}[tests]
    got, argvs = _verify([_python(id="bad", code="def add(a, b)\n    return a + b\n", **extra)])
    v = got["bad"]
    assert (v.status, v.compiled, v.reward) == ("compile_error", False, LADDER.compile_error), v
    assert "main.py:1:" in v.output and "error:" in v.output
    assert len(argvs) == 1  # io tests: the other two never ran


def test_a_program_that_exits_with_the_compile_code_gains_nothing():
    # The run's compile step has exit status 85 of its own. Under the judge the solution's exit
    # is its worker's (never the judge's status); a plain program that exits 85 only lowers its
    # reward (a compile error is worth least), so the code needs no secret.
    got, _ = _verify([_python(id="exit85", code=ADD + "raise SystemExit(85)\n", test_code=T_ADD),
                      _python(id="io85", code="raise SystemExit(85)\n", io_tests=[SampleIOTest(stdout="")])])
    assert got["exit85"].guard == pyjudge.EXITED and got["exit85"].reward <= LADDER.compiled
    assert (got["io85"].status, got["io85"].reward) == ("compile_error", LADDER.compile_error)


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # the host's static guard parses it too
def test_syntax_warnings_are_the_compilers_warnings_and_other_warnings_are_not():
    warn = "def add(a, b):\n    assert 1 is 1\n    return a {} b\n"
    escape = 'import re\nPATTERN = "\\d+"\ndef add(a, b):\n    return a - b\n'  # DeprecationWarning in 3.11
    got, _ = _verify([
        _python(id="warn-fail", code=warn.format("-"), test_code=T_ADD),
        _python(id="warn-pass", code=warn.format("+"), test_code=T_ADD),
        _python(id="warn-io", code="assert 1 is 1\nprint(2)\n", io_tests=[SampleIOTest(stdout="2")]),
        _python(id="escape-fail", code=escape, test_code=T_ADD),
        _python(id="prints-warning", code="import sys\nprint('main.py:1: SyntaxWarning: x')\n"
                                           "def add(a, b):\n    return a - b\n", test_code=T_ADD),
    ])
    assert (got["warn-fail"].warnings, got["warn-fail"].reward) == (True, LADDER.compiled_with_warnings)
    assert (got["warn-pass"].status, got["warn-pass"].warnings, got["warn-pass"].reward) == ("passed", True, 1.0)
    assert "SyntaxWarning" in got["warn-pass"].output
    assert (got["warn-io"].status, got["warn-io"].warnings) == ("passed", True)
    assert (got["escape-fail"].warnings, got["escape-fail"].reward) == (False, LADDER.compiled)
    # print() of the solution goes to stdout (the judge's worker: stderr, after the compile step)
    assert got["prints-warning"].reward in (LADDER.compiled, LADDER.compiled_with_warnings)


def test_the_builtins_site_adds_are_there_without_site():
    # -S leaves out exit/quit/help/copyright; programs that end with exit() are honest.
    plain = ("import sys\nprint(callable(help), 'Python' in str(copyright), callable(quit))\n"
             "sys.stdout.flush()\nexit()\nprint('after exit')\n")
    guarded = "def f(x):\n    if x < 0:\n        exit(1)\n    return x\n"
    got, _ = _verify([_python(id="plain", code=plain, io_tests=[SampleIOTest(stdout="True True True")]),
                      _python(id="quit", code="print(2)\nquit(0)\n", io_tests=[SampleIOTest(stdout="2")]),
                      _python(id="guarded", code=guarded, test_code="assert f(1) == 1\nassert f(0) == 0\n"),
                      _python(id="leaves", code=guarded + "exit(0)\n", test_code="assert f(1) == 1\n")])
    for name in ("plain", "quit", "guarded"):
        assert (got[name].status, got[name].reward) in (("passed", 1.0),), got[name]
    assert got["leaves"].guard == pyjudge.EXITED  # leaving before the tests is still a failure


def test_a_program_runs_as_main_with_its_own_argv():
    code = "import sys\nprint(__name__, __file__, sys.argv)\nprint(sys.stdin.read().upper())\n"
    got, _ = _verify([_python(id="main", code=code,
                              io_tests=[SampleIOTest(stdin="abc", stdout="__main__ main.py ['main.py']\nABC")])])
    assert got["main"].status == "passed", got["main"]


# -- site-packages only when asked ---------------------------------------------------------------

def _site_package() -> str:
    """A package of the verifier's interpreter's site-packages (not of the standard library)."""
    tc = resolve_toolchain("python", CONFIG.compiler("python"))
    script = ("import importlib.util, site, sys\n"
              "for name in ('pip', 'setuptools', 'certifi', 'wheel'):\n"
              "    spec = importlib.util.find_spec(name)\n"
              "    if spec and spec.origin and any(spec.origin.startswith(p) for p in site.getsitepackages()):\n"
              "        print(name); break\n")
    found = subprocess.run([tc.path, "-I", "-c", script], capture_output=True, text=True, check=False).stdout.strip()
    assert found, f"{tc.path} has none of pip/setuptools/certifi/wheel in its site-packages: install pip there"
    return found


def test_standard_library_only_unless_the_problem_or_the_config_asks():
    package = _site_package()
    judged = ADD + f"import {package}\n"
    plain = f"import sys\nimport {package}\nprint(sys.flags.no_site)\n"
    samples = [_python(id="judged", code=judged, test_code=T_ADD),
               _python(id="plain", code=plain, io_tests=[SampleIOTest(stdout="1")]),
               _python(id="stdlib", code="import json, sys\nprint(json.dumps(sys.flags.no_site))\n",
                       io_tests=[SampleIOTest(stdout="1")])]
    default, _ = _verify(samples)
    assert default["judged"].status == "runtime_error" and "ModuleNotFoundError" in default["judged"].output
    assert default["plain"].status == "runtime_error" and "ModuleNotFoundError" in default["plain"].output
    assert default["stdlib"].status == "passed", default["stdlib"]  # the control: the stdlib is there

    asked, _ = _verify([msgspec.structs.replace(s, python_packages=True) for s in samples[:2]])
    assert asked["judged"].status == "passed", asked["judged"]
    assert asked["plain"].status == "passed", asked["plain"]

    configured, _ = _verify(samples[:1], msgspec.structs.replace(CONFIG, python_packages=True))
    assert configured["judged"].status == "passed", configured["judged"]


def test_the_problems_field_reaches_the_sample_and_the_cache_key():
    problem = Problem(id="p", language="python", prompt="add", test_code=T_ADD, python_packages=True)
    sample = verify_input(problem, Sample(id="s", problem_id="p", completion=f"```python\n{ADD}```"))
    assert sample.python_packages
    verifier = Verifier(CONFIG)
    with_site = verifier.prepare(sample)
    without = verifier.prepare(msgspec.structs.replace(sample, python_packages=False))
    assert verifier.key(with_site) != verifier.key(without)
    assert msgspec.json.decode(b'{"python_packages": true}', type=VerifierConfig).python_packages


def test_the_problems_field_survives_a_prompts_file(tmp_path):
    from halo_forge.data.prepare import prompt_row
    from halo_forge.prompts_file import read_prompts

    problems = [Problem(id=f"p{k}", language="python", prompt="add", test_code=T_ADD, python_packages=bool(k))
                for k in range(2)]
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(prompt_row(p)) + b"\n" for p in problems))
    assert [p.python_packages for p in read_prompts(path)] == [False, True]


# -- the judge's bytecode ahead of the secrets ---------------------------------------------------

# The tests as the host compiled them: the token's line, a NUL, then their marshalled code,
# whose instructions hold each assert's operands (add(a, b) == c).
FROM_BYTECODE = (
    "def _from_bytecode(text):\n"
    "    found = {}\n"
    "    for m in re.finditer(rb'[0-9a-f]{32}\\n\\x00', text):\n"
    "        try:\n"
    "            seq = [i.argval for i in __import__('dis').get_instructions(__import__('marshal').loads(text[m.end():]))\n"
    "                   if i.opname == 'LOAD_CONST' and type(i.argval) is int or i.argval == 'add']\n"
    "        except Exception:\n"
    "            continue\n"
    "        for k in range(len(seq) - 3):\n"
    "            if seq[k] == 'add' and 'add' not in seq[k + 1:k + 4]:\n"
    "                found[(seq[k + 1], seq[k + 2])] = seq[k + 3]\n"
    "    return found\n"
)
# The worker scans its own memory: whatever the judge held before the fork is there.
OWN_MEMORY = (
    "import re\n" + FROM_BYTECODE +
    "def _table(text):\n"
    "    found = _from_bytecode(text)\n"
    "    for a, b, c in re.findall(rb'add\\((-?\\d+), (-?\\d+)\\) == (-?\\d+)', text):\n"
    "        found[(int(a), int(b))] = int(c)\n"
    "    for c, a, b in re.findall(rb'(-?\\d+) == add\\((-?\\d+), (-?\\d+)\\)', text):\n"
    "        found[(int(a), int(b))] = int(c)\n"
    "    return found\n"
    "def _scan():\n"
    # In-process reads (/proc/self/mem is closed to a non-dumpable process), spelled past the
    # static guard: the design, not the regex, must stop it.
    "    ctypes = __import__('ct' + 'ypes')\n"
    "    found = {}\n"
    "    with open('/proc/self/maps') as f:\n"
    "        maps = f.read().splitlines()\n"
    "    for line in maps:\n"
    "        fields = line.split()\n"
    "        if not fields[1].startswith('rw') or (len(fields) > 5 and fields[5].startswith('[v')):\n"
    "            continue\n"
    "        lo, hi = (int(x, 16) for x in fields[0].split('-'))\n"
    "        found.update(_table(ctypes.string_at(lo, hi - lo)))\n"
    "    return found\n"
    "_FOUND = _scan()\n"
    "def add(a, b):\n"
    "    return _FOUND.get((a, b), 0)\n"
)
# The judge's stdin object, inherited by the worker: a read-ahead buffer would hold the tests.
STDIN_BUFFER = (
    "import re, sys\n" + FROM_BYTECODE +
    "def _found():\n"
    "    try:\n"
    "        text = sys.stdin.buffer.peek(1 << 20)\n"
    "    except Exception:\n"
    "        return {}\n"
    "    return {**_from_bytecode(text), **{(int(a), int(b)): int(c) for a, b, c in\n"
    "            re.findall(rb'add\\((-?\\d+), (-?\\d+)\\) == (-?\\d+)', text)}}\n"
    "_FOUND = _found()\n"
    "def add(a, b):\n"
    "    return _FOUND.get((a, b), 0)\n"
)
T_ADD_FWD = "assert add(1, 2) == 3\nassert add(-4, 10) == 6\n"
ATTACKS = {"own-memory": OWN_MEMORY, "stdin-buffer": STDIN_BUFFER}


def test_the_worker_finds_no_tests_in_what_it_inherits():
    got, _ = _verify([_python(id=name, code=code, test_code=T_ADD_FWD) for name, code in ATTACKS.items()]
                     + [_python(id="control", code=ADD, test_code=T_ADD_FWD)])
    for name in ATTACKS:
        assert got[name].status != "passed" and got[name].reward <= 0.5, got[name]
    assert (got["control"].status, got["control"].reward) == ("passed", 1.0)


# A read-ahead buffer as large as the run's stdin: whatever reads through it first takes the
# token and the tests too, whatever the frames' sizes.
READ_AHEAD = "sys.stdin = open(0, closefd=False, buffering=1 << 20); "


def test_with_a_buffered_boot_the_tests_leak(monkeypatch, python_path):  # noqa: F811 - the fixture
    """The boot reads exactly the judge's bytecode with os.read: through sys.stdin's buffer it
    would read ahead into the token and the tests before the worker is forked. On the warm path
    the template's fork skips the boot's copy of the bytecode the same way."""
    if python_path == "warm":
        source = pyjudge.warm_source()
        cut = '_skip(int.from_bytes(_take(8), "big"))'
        assert cut in source, "the template changed: update this test's cut"
        monkeypatch.setattr(pyjudge, "warm_source", lambda: source.replace(
            cut, READ_AHEAD + 'sys.stdin.buffer.read(int.from_bytes(sys.stdin.buffer.read(8), "big"))'))
    assert "os.read(0, n - len(b))" in pyjudge._BOOT, "the boot changed: update this test's cut"
    monkeypatch.setattr(pyjudge, "_BOOT", "import sys; " + READ_AHEAD + "\n" + pyjudge._BOOT.replace(
        "os.read(0, n - len(b))", "sys.stdin.buffer.read(n - len(b))"))
    _buffered_solution_read(monkeypatch, "")  # the judge's own reads follow the boot's buffer
    got, _ = _verify([_python(id=name, code=code, test_code=T_ADD_FWD) for name, code in ATTACKS.items()])
    assert all(v.status == "passed" for v in got.values()), got


def _buffered_solution_read(monkeypatch, read_ahead):
    source = pyjudge.judge_source()
    cuts = {"size = _read_exact(0, 8)": read_ahead + "size = sys.stdin.buffer.read(8)",
            '_read_exact(0, int.from_bytes(size, "big"))': 'sys.stdin.buffer.read(int.from_bytes(size, "big"))'}
    for cut, buffered in cuts.items():
        assert cut in source, "the judge changed: update this test's cut"
        source = source.replace(cut, buffered)
    monkeypatch.setattr(pyjudge, "judge_source", lambda: source)


def test_with_a_buffered_read_of_the_solutions_bytecode_the_tests_leak(monkeypatch):
    """The host's bytecode of the solution comes ahead of the token, and the judge reads it
    with os.read to its last byte: a buffered read would take the token and the tests with
    it, into the memory the worker is forked from next."""
    _buffered_solution_read(monkeypatch, READ_AHEAD)
    got, _ = _verify([_python(id=name, code=code, test_code=T_ADD_FWD) for name, code in ATTACKS.items()])
    assert all(v.status == "passed" for v in got.values()), got


# -- the judge's JSON without the json package ---------------------------------------------------

def test_the_wire_refuses_what_json_refuses():
    loads = judge_main._scanner(judge_main._decode_hook(lambda i, n: ("handle", i, n)))
    assert loads(b'[1,{"t":[2.5,NaN]},"\\u00e9",null,true]')[:3] == [1, (2.5, pytest.approx(float("nan"), nan_ok=True)), "é"]
    assert judge_main._dumps([1, "é\n", None, {"a": [True]}]) == '[1,"\\u00e9\\n",null,{"a":[true]}]'
    for bad in (b"[1,", b"[1] [2]", b"", b"\xff", b'{"a":1', b"[1,]", b"nul"):
        with pytest.raises(ValueError):
            loads(bad)
    with pytest.raises(TypeError):
        judge_main._dumps(object())


def test_another_interpreter_compiles_the_judge_itself(monkeypatch, python_path):  # noqa: F811 - the fixture
    """Bytecode is private to one Python version: an interpreter other than the verifier's own
    compiles the judge in a subprocess of its own, and the judge still works."""
    monkeypatch.setattr(pyjudge, "_same_interpreter", lambda python: False)
    calls: list[list[str]] = []
    real_run = subprocess.run

    def run(argv, *args, **kwargs):
        calls.append(list(argv))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(pyjudge.subprocess, "run", run)
    pyjudge._compiled.cache_clear()
    pyjudge._TESTS.clear()
    try:
        got, _ = _verify([_python(id="ok", code=ADD, test_code=T_ADD)])
    finally:
        pyjudge._compiled.cache_clear()
        pyjudge._TESTS.clear()
    assert (got["ok"].status, got["ok"].reward) == ("passed", 1.0), got["ok"]
    # The warm template has the plain runner's bytecode too.
    assert len(calls) == (2 if python_path == "warm" else 1) and all("marshal" in c[-1] for c in calls)


# -- the host's bytecode ---------------------------------------------------------------------------

def _frames(stdin: bytes, python: str) -> tuple[bytes, bytes]:
    """(the solution's bytecode, what follows the token's line) of a judge's stdin."""
    rest = stdin[len(pyjudge.judge_code(python)):]
    size = int.from_bytes(rest[:8], "big")
    return rest[8:8 + size], rest[8 + size:].partition(b"\n")[2]


def test_the_hosts_compiler_makes_bytecode_only_of_what_compiles_cleanly():
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    try:
        code, tests = _frames(pyjudge.judge_input(T_ADD, python, compiler=compiler, solution=ADD)[0], python)
        assert code and tests[:1] == b"\0"
        warned, _ = _frames(pyjudge.judge_input(T_ADD, python, compiler=compiler,
                                                solution="x = 1 is 1\n" + ADD)[0], python)
        assert warned == b""  # the run's own compile prints the warning, as before
        broken, _ = _frames(pyjudge.judge_input(T_ADD, python, compiler=compiler, solution="def add(:\n")[0], python)
        assert broken == b""
        # A compiler that is gone leaves that compile to the run, which still passes.
        os.kill(compiler.pid, signal.SIGKILL)
        assert compiler("main.py", ADD.encode()) == b""
    finally:
        compiler.close()
    got, _ = _verify([_python(id="ok", code=ADD, test_code=T_ADD)])
    assert (got["ok"].status, got["ok"].reward) == ("passed", 1.0), got["ok"]


def test_the_hosts_bytecode_reads_main_py_as_the_run_would():
    """A coding cookie means what it means to the run's own compile of main.py's bytes."""
    latin = "# -*- coding: latin-1 -*-\ndef f():\n    return 'é'\n"  # main.py holds its UTF-8 bytes
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    try:
        assert _frames(pyjudge.judge_input("", python, compiler=compiler, solution=latin)[0], python)[0]
    finally:
        compiler.close()
    got, _ = _verify([_python(id="latin", code=latin, test_code="assert f() == 'Ã©'\n")])
    assert (got["latin"].status, got["latin"].reward) == ("passed", 1.0), got["latin"]


def test_the_hosts_compiler_leaves_a_huge_answer_to_the_run():
    """Folded constants make bytecode far larger than its source (256 KiB of `'😀'*4096,` made
    341 MB, which the verifier held twice over and sent down the run's stdin): past a bound the
    run compiles, under its own memory limit."""
    huge = "X = (" + "".join(f"'{chr(0x10000 + i)}'*4096," for i in range(400)) + ")\n" + ADD  # 6.5 MB
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    try:
        assert compiler("main.py", huge.encode()) == b""
        assert compiler("main.py", ADD.encode())  # the honest control still gets its bytecode
    finally:
        compiler.close()
    got, _ = _verify([_python(id="huge", code=huge, test_code=T_ADD)])
    assert (got["huge"].status, got["huge"].reward) == ("passed", 1.0), got["huge"]


def test_a_compile_longer_than_the_runs_cpu_limit_is_the_runs():
    """The host's compile costs the run no CPU: one that takes longer than the run may have
    (a call with 20000 keywords: quadratic) is left to the run, whose limit ends it as before,
    and never holds the verifier longer than that."""
    slow = ADD + "def f(**k):\n    return k\nN = f(" + "".join(f"a{i}=1," for i in range(20000)) + ")\n"
    config = msgspec.structs.replace(CONFIG, run_limits=Limits(cpu_s=0.5, wall_s=5.0, memory_mb=1024))
    got, _ = _verify([_python(id="slow", code=slow, test_code=T_ADD), _python(id="ok", code=ADD, test_code=T_ADD)],
                     config)
    assert got["slow"].status == "timeout", got["slow"]
    assert (got["ok"].status, got["ok"].reward) == ("passed", 1.0), got["ok"]


def test_an_interrupted_answer_is_never_read_as_the_next_one(monkeypatch):
    """An exception while the verifier waits for an answer (Ctrl-C, a signal handler's) leaves
    the answer in the pipe: read as the next one, one sample would be judged on another's code."""
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    other = "def add(a, b):\n    return 3\n"

    def interrupted(self, n, deadline):
        select.select([self._proc.stdout.fileno()], [], [], 10)  # the answer has come
        raise KeyboardInterrupt

    try:
        with monkeypatch.context() as mp:
            mp.setattr(PythonCompiler, "_read", interrupted)
            with pytest.raises(KeyboardInterrupt):
                compiler("main.py", other.encode())
        answer = compiler("main.py", ADD.encode())
    finally:
        compiler.close()
    assert answer == b"" or marshal.loads(answer) == compile(ADD, "main.py", "exec", dont_inherit=True)


def test_verifiers_on_threads_of_their_own_share_the_tests_bytecode(monkeypatch):
    """Two BackgroundVerifiers are two threads of one process, and the tests' bytecode is kept
    once per process: past its bound, one thread's eviction ran into the other's."""
    monkeypatch.setattr(pyjudge, "_TESTS", {})
    errors: list[BaseException] = []

    class Compiler:
        python = "python"

        def __call__(self, filename: str, source: bytes) -> bytes:
            return b"code"

    def many(k: int) -> None:
        try:
            for i in range(3000):
                pyjudge._tests_compiled(Compiler(), f"assert {k} != {i}\n")
        except Exception as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows at once
    try:
        threads = [threading.Thread(target=many, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors and len(pyjudge._TESTS) == 256


def test_what_the_host_compiles_the_runs_own_compile_compiles(monkeypatch):
    """The compiler's nesting limit counts the frames below it: compiled at the top of the host's
    stack, `a+a+...+a` 2991 deep passed where the run's own compile, a few frames deeper, had
    refused it as a compile error."""
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)

    def deep(n: int) -> str:
        return ADD + "def g(a):\n    return a" + "+a" * n + "\n"

    try:
        lo, hi = 100, 20000  # the deepest the host compiles
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if compiler("main.py", deep(mid).encode()) else (lo, mid - 1)
    finally:
        compiler.close()
    monkeypatch.setattr(Verifier, "_py_compiler", lambda self, tc: None)  # the run compiles
    got, _ = _verify([_python(id="deep", code=deep(lo), test_code=T_ADD)])
    assert (got["deep"].status, got["deep"].reward) == ("passed", 1.0), (lo, got["deep"])


def test_a_failed_compiler_is_replaced_until_it_has_failed_too_often():
    """One slow or killed compile must not leave every later sample to the runs' own compile
    (a third of a warm run's CPU); a stream of them must stop costing the host."""
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    try:
        for _ in range(pycompile._MAX_FAILURES):
            assert compiler("main.py", ADD.encode())  # a compiler of its own again
            os.kill(compiler.pid, signal.SIGKILL)
            assert compiler("main.py", ADD.encode()) == b""  # this one's compile goes to the run
        assert compiler("main.py", ADD.encode()) == b"" and compiler.pid is None  # for good
    finally:
        compiler.close()


def test_the_compiler_process_has_a_bounded_address_space():
    """256 KiB of folded constants took the compiler process to a GB: bounded, its compile
    ends in a MemoryError it survives, and the run compiles the sample under its own limits."""
    python = resolve_toolchain("python", CONFIG.compiler("python")).path
    compiler = PythonCompiler(python)
    amp = "X = (" + "".join(f"'{chr(0x10000 + i)}'*4096," for i in range(21800)) + ")\n"  # 256 KiB
    try:
        assert compiler("main.py", ADD.encode())
        pid = compiler.pid
        assert compiler("main.py", amp.encode()) == b""
        status = open(f"/proc/{pid}/status").read()
        peak_kb = int(status.split("VmPeak:")[1].split()[0])
        assert peak_kb * 1024 <= pycompile._MAX_MEMORY, peak_kb
        assert compiler("main.py", ADD.encode()) and compiler.pid == pid  # the honest control
    finally:
        compiler.close()


def test_the_hosts_compile_leaves_the_event_loop_free(monkeypatch):
    """A hostile sample's compile may take up to the run's CPU limit: on the event loop, every
    other sample (and generation's stream) waited for it. Here the compile waits until a task
    on the loop has run while it was under way, which on the loop itself could never happen."""
    started, released, waited = threading.Event(), threading.Event(), []

    def held(self, filename, source):
        started.set()
        waited.append(released.wait(5))
        return b""

    monkeypatch.setattr(PythonCompiler, "__call__", held)

    async def main():
        async with Verifier(CONFIG) as verifier:
            async with anyio.create_task_group() as tg:
                async def release() -> None:
                    while not started.is_set():
                        await anyio.sleep(0.01)
                    released.set()

                tg.start_soon(release)
                verdict = await verifier.verify(_python(id="ok", code=ADD, test_code=T_ADD))
        return verdict

    verdict = anyio.run(main)
    assert waited and waited[0] is True, waited
    assert (verdict.status, verdict.reward) == ("passed", 1.0), verdict
