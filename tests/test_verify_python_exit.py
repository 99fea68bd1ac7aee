"""A Python program ends the same way on both paths: the warm path ends a run's process without
the interpreter's teardown of every module (pywarm_main.py, _run), and must keep what a
program's exit does (threads waited for, atexit, files the program left open flushed, the
exit status and message of SystemExit, a traceback for an uncaught exception)."""

from __future__ import annotations

import anyio

from halo_forge.sandbox import Limits
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier
from halo_forge.verify.types import SampleIOTest, VerifySample
from tests.util import python_path  # noqa: F401 - autouse: each test cold and warm

CONFIG = VerifierConfig(verifier="python", pch=False, cache=False,
                        run_limits=Limits(cpu_s=5.0, wall_s=10.0, memory_mb=1024))

# id: (program, expected stdout); each passes only if its exit did what the interpreter's does.
PASSING = {
    "atexit": ("import atexit\natexit.register(print, 'bye')\nprint('hi')\n", "hi\nbye\n"),
    "open_file": ("f = open(1, 'w', closefd=False)\nf.write('3\\n')\n", "3\n"),
    "thread": ("import threading, time\n"
               "threading.Thread(target=lambda: (time.sleep(0.2), print('late'))).start()\n", "late\n"),
    "del": ("class Loud:\n    def __del__(self):\n        print('gone')\nx = Loud()\n", "gone\n"),
    "exit0": ("import sys\nprint(1)\nsys.exit(0)\n", "1\n"),
    "exit_none": ("print(2)\nraise SystemExit\n", "2\n"),
    "builtin_exit": ("print(4)\nexit()\n", "4\n"),
}
# id: (program, text its stderr must hold); each must fail with the right output printed.
FAILING = {
    "exit3": ("import sys\nprint(5)\nsys.exit(3)\n", ""),
    "exit_message": ("print(5)\nraise SystemExit('no luck')\n", "no luck"),
    "uncaught": ("print(5)\nraise ValueError('boom')\n", "ValueError: boom"),
}


def _verify(samples: list[VerifySample]) -> dict:
    async def main() -> dict:
        async with Verifier(CONFIG) as verifier:
            return {s.id: await verifier.verify(s) for s in samples}

    return anyio.run(main)


def test_a_program_ends_as_the_interpreter_ends_it():
    samples = [VerifySample(id=k, language="python", code=code, io_tests=[SampleIOTest(stdin="", stdout=out)])
               for k, (code, out) in PASSING.items()]
    samples += [VerifySample(id=k, language="python", code=code, io_tests=[SampleIOTest(stdin="", stdout="5\n")])
                for k, (code, _) in FAILING.items()]
    got = _verify(samples)
    for k in PASSING:
        assert (got[k].status, got[k].reward) == ("passed", 1.0), got[k]
    for k, (_, message) in FAILING.items():
        assert got[k].status == "runtime_error", got[k]
        assert message in got[k].output, got[k]
