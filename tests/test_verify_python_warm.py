"""The warm Python path (issue #15): a Python run's program is a fork of one template that has
the judge loaded (verify/pywarm_main.py), joined to a sandbox run of its own. Each defence of
that path has a hostile sample here that wins without it, beside an honest control that keeps
its full reward. The Python path's other protections are the parametrised
test_integrity_python.py and test_verify_python_run.py, run on both paths."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from halo_forge.sandbox import Limits
from halo_forge.verify import pyjudge
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier
from halo_forge.verify.types import SampleIOTest, VerifySample

WARM = VerifierConfig(verifier="python", pch=False, cache=False, python_warm=True,
                      run_limits=Limits(cpu_s=5.0, wall_s=10.0, memory_mb=1024))
COLD = msgspec.structs.replace(WARM, python_warm=False)

ADD = "def add(a, b):\n    return a + b\n"
T_ADD = "assert add(1, 2) == 3\nassert add(-4, 10) == 6\n"
# The program's own command line: a fork of the template shows the template's.
WHO = ("print('warm' if b'The warm Python template' in open('/proc/self/cmdline', 'rb').read() "
       "else 'cold')\n")


def _python(id: str, code: str, **kw) -> VerifySample:
    return VerifySample(id=id, language="python", code=code, **kw)


def _io(stdout: str, stdin: str = "") -> list[SampleIOTest]:
    return [SampleIOTest(stdin=stdin, stdout=stdout)]


def _in_order(samples: list[VerifySample], config: VerifierConfig = WARM) -> dict:
    """Verdicts by id, one sample after the other through one verifier (one template)."""

    async def main() -> dict:
        async with Verifier(config) as verifier:
            return {s.id: await verifier.verify(s) for s in samples}

    return anyio.run(main)


def _template_with(monkeypatch, old: str, new: str) -> None:
    """The template's source with one defence cut out."""
    source = pyjudge.warm_source()
    assert old in source, "the template changed: update this test's cut"
    monkeypatch.setattr(pyjudge, "warm_source", lambda: source.replace(old, new))


def test_the_switch_picks_the_path():
    for config, path in ((WARM, "warm"), (COLD, "cold")):
        got = _in_order([_python("who", WHO, io_tests=_io(f"{path}\n"))], config)
        assert (got["who"].status, got["who"].reward) == ("passed", 1.0), (path, got["who"])


def test_site_packages_runs_start_cold():
    got = _in_order([_python("who", WHO, io_tests=_io("cold\n"), python_packages=True)])
    assert got["who"].status == "passed", got["who"]


# -- nothing of one sample reaches the next ----------------------------------------------------

# A secret in one sample's tests, found by the next sample only if the memory it is forked
# from held it. The pattern's own text ("L[E]AK...") never matches itself.
SECRET = "LEAKPFX" + "0123456789abcdef" * 2
# (A constant, not a comment: the host may send the tests compiled.)
HOLDER = _python("holder", ADD, test_code=f"assert add(1, 2) == 3, {SECRET!r}\n")
SCAN = ("import re\n"
        "def scan():\n"
        "    pattern = re.compile(rb'L[E]AKPFX[0-9a-f]{32}')\n"
        "    found = False\n"
        "    with open('/proc/self/maps') as f:\n"
        "        maps = f.read().splitlines()\n"
        "    with open('/proc/self/mem', 'rb', 0) as mem:\n"
        "        for line in maps:\n"
        "            span, perms = line.split()[:2]\n"
        "            if not perms.startswith('r'):\n"
        "                continue\n"
        "            lo, hi = (int(x, 16) for x in span.split('-'))\n"
        "            try:\n"
        "                mem.seek(lo)\n"
        "                found = found or pattern.search(mem.read(hi - lo)) is not None\n"
        "            except (OSError, ValueError, OverflowError):\n"
        "                pass\n"
        "    return found\n"
        "print('found' if scan() else 'clean')\n")


def test_the_template_holds_no_other_samples_data(monkeypatch):
    got = _in_order([HOLDER, _python("scan", SCAN, io_tests=_io("found\n")),
                     _python("control", SCAN, io_tests=_io("clean\n"))])
    assert (got["holder"].status, got["holder"].reward) == ("passed", 1.0), got["holder"]
    assert got["scan"].status == "wrong_answer", got["scan"]
    assert (got["control"].status, got["control"].reward) == ("passed", 1.0), got["control"]


def test_a_template_that_reads_the_runs_stdin_leaks_it(monkeypatch):
    # The defence cut: the template keeps each run's stdin (token and tests) in its memory.
    _template_with(monkeypatch, "        try:\n            pid = _fork_into(",
                   "        _kept.append(os.pread(fds[1], 1 << 20, 0))\n"
                   "        try:\n            pid = _fork_into(")
    source = pyjudge.warm_source()
    monkeypatch.setattr(pyjudge, "warm_source", lambda: source.replace("def _serve():\n", "_kept = []\n\n\ndef _serve():\n"))
    got = _in_order([HOLDER, _python("scan", SCAN, io_tests=_io("found\n"))])
    assert got["scan"].status == "passed", got["scan"]


POISON = ("import builtins, sys, json, collections, os\n"
          "builtins.sorted = lambda xs, **k: [42]\n"
          "builtins.POISON = 1\n"
          "json.dumps = lambda *a, **k: 'poisoned'\n"
          "collections.POISON = 1\n"
          "sys.modules['poison'] = sys\n"
          "sys.path.insert(0, '/tmp')\n"
          "os.environ['POISON'] = '1'\n"
          "open('/tmp/poison.py', 'w').write('POISON = 1\\n')\n"
          "open('poison.py', 'w').write('POISON = 1\\n')\n"
          "print('done')\n")
CLEAN = ("import builtins, sys, json, collections, os\n"
         "checks = [sorted([3, 1, 2]) == [1, 2, 3], not hasattr(builtins, 'POISON'),\n"
         "          json.dumps([1]) == '[1]', not hasattr(collections, 'POISON'),\n"
         "          'poison' not in sys.modules, '/tmp' not in sys.path, 'POISON' not in os.environ,\n"
         "          not os.path.exists('/tmp/poison.py'), not os.path.exists('poison.py')]\n"
         "print(checks)\n")


def test_a_sample_leaves_no_state_for_the_next():
    """Module globals, builtins, sys.modules, sys.path, the environment and files: every run is
    a fresh fork of the template, in a fresh tmpfs."""
    got = _in_order([_python("poison", POISON, io_tests=_io("done\n")),
                     _python("clean", CLEAN, io_tests=_io(str([True] * 9) + "\n"))])
    assert got["poison"].status == "passed", got["poison"]
    assert (got["clean"].status, got["clean"].reward) == ("passed", 1.0), got["clean"]


# -- no channel to the template, a sibling or the verdict --------------------------------------

# Prints the right answer, then forges the template side's wait-status record (an exit 0) on
# any descriptor it was left, then fails. Only a descriptor the template leaked would let it
# pass.
FORGE = ("import os, sys\n"
         "print(3)\n"
         "sys.stdout.flush()\n"
         "record = b'S' + (0).to_bytes(4, 'little') + bytes(16)\n"
         "for fd in range(3, 64):\n"
         "    try:\n"
         "        os.write(fd, record)\n"
         "    except OSError:\n"
         "        pass\n"
         "raise SystemExit(3)\n")


def test_a_sample_cannot_forge_its_wait_status():
    got = _in_order([_python("forge", FORGE, io_tests=_io("3\n")),
                     _python("control", "print(3)\n", io_tests=_io("3\n"))])
    assert got["forge"].status == "runtime_error", got["forge"]
    assert (got["control"].status, got["control"].reward) == ("passed", 1.0), got["control"]


def test_a_template_that_leaks_the_status_pipe_is_forged(monkeypatch):
    # The defence cut: the program keeps the pipe to its init open.
    _template_with(monkeypatch, "    os.write(wpid, b\"R\")  # set up: what fails from here on is the run's own\n"
                                "    os.close(wpid)\n",
                   "    os.write(wpid, b\"R\")\n")
    got = _in_order([_python("forge", FORGE, io_tests=_io("3\n"))])
    assert got["forge"].status == "passed", got["forge"]


# Forges an exit-0 record on every descriptor it may hold, again and again for a while.
FORGE_OTHERS = ("import os, time\n"
                "record = b'S' + (0).to_bytes(4, 'little') + bytes(16)\n"
                "end = time.monotonic() + 0.8\n"
                "while time.monotonic() < end:\n"
                "    for fd in range(3, 256):\n"
                "        try:\n"
                "            os.write(fd, record)\n"
                "        except OSError:\n"
                "            pass\n"
                "print(3)\n")
# The right output, then a failing exit: wrong unless its init is told otherwise.
LATE_FAIL = "import time\nprint(3, flush=True)\ntime.sleep(1.5)\nraise SystemExit(3)\n"


def test_a_sample_cannot_forge_a_concurrent_runs_wait_status():
    """The template holds the pipe to each running run's init, and a run started later is
    forked with them: its program closes them all before any of its code runs, so a sample
    cannot end the run beside it early."""

    async def main() -> dict:
        async with Verifier(msgspec.structs.replace(WARM, concurrency=2)) as verifier:
            got = {}

            async def one(sample: VerifySample) -> None:
                got[sample.id] = await verifier.verify(sample)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, _python("victim", LATE_FAIL, io_tests=_io("3\n")))
                await anyio.sleep(0.4)  # the victim is running when the forger is forked
                tg.start_soon(one, _python("forger", FORGE_OTHERS, io_tests=_io("3\n")))
            return got

    got = anyio.run(main)
    assert got["victim"].status == "runtime_error", got["victim"]
    assert (got["forger"].status, got["forger"].reward) == ("passed", 1.0), got["forger"]


def test_only_stdio_is_inherited():
    code = "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))\n"
    got = _in_order([_python("fds", code, io_tests=_io("[0, 1, 2, 3]\n"))])  # 3: the listdir's own
    assert (got["fds"].status, got["fds"].reward) == ("passed", 1.0), got["fds"]


KILLER = ("import os, signal\n"
          "for sig in (signal.SIGKILL, signal.SIGSTOP):\n"
          "    for pid in range(1, 5000):\n"
          "        if pid != os.getpid():\n"
          "            try:\n"
          "                os.kill(pid, sig)\n"
          "            except OSError:\n"
          "                pass\n"
          "print(os.getppid())\n")


def test_a_sample_cannot_reach_the_template_or_a_sibling():
    """Every pid the sample can name is in its own run: the template (and its side of the run)
    is outside its pid namespace, so after a run that signalled every pid it could, the next
    run is still a warm fork that passes."""
    got = _in_order([_python("killer", KILLER, io_tests=_io("0\n")),
                     _python("after", WHO, io_tests=_io("warm\n")),
                     _python("judged", ADD, test_code=T_ADD)])
    assert got["killer"].status == "passed", got["killer"]  # its parent is outside its run: pid 0
    assert (got["after"].status, got["after"].reward) == ("passed", 1.0), got["after"]
    assert (got["judged"].status, got["judged"].reward) == ("passed", 1.0), got["judged"]


def test_ptrace_of_anything_is_denied():
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print([libc.ptrace(16, pid, 0, 0) for pid in (0, 1)])\n")  # PTRACE_ATTACH
    got = _in_order([_python("ptrace", code, io_tests=_io("[-1, -1]\n"))])
    assert got["ptrace"].status == "passed", got["ptrace"]


@pytest.mark.parametrize("code", [
    "while True:\n    pass\n",
    "x = bytearray(4 << 30)\n",
    "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "import os\nwhile True:\n    os.fork()\n",
], ids=["cpu", "memory", "output", "fork-bomb"])
def test_limits_hold_as_on_the_cold_path(code):
    warm = _in_order([_python("limit", code, io_tests=_io("1\n"))])["limit"]
    cold = _in_order([_python("limit", code, io_tests=_io("1\n"))], COLD)["limit"]
    assert warm.status == cold.status != "passed", (warm, cold)


def test_when_the_template_dies_runs_start_cold():
    """A template killed from outside costs the warm path, never a verdict."""
    import os
    import signal

    async def main() -> list:
        async with Verifier(WARM) as verifier:
            first = await verifier.verify(_python("first", WHO, io_tests=_io("warm\n")))
            zygote = verifier.sandbox._client.zygote_pid
            killed = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        template = b"The warm Python template" in f.read()
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == zygote and template:
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
            await anyio.sleep(0.2)  # the zygote notices the exit
            after = await verifier.verify(_python("after", WHO, io_tests=_io("cold\n")))
            judged = await verifier.verify(_python("judged", ADD, test_code=T_ADD))
            return [killed, first, after, judged]

    killed, *verdicts = anyio.run(main)
    assert killed == 1
    for v in verdicts:
        assert (v.status, v.reward) == ("passed", 1.0), v
