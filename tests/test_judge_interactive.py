"""Interactive problems (halo_forge/verify/interactive.py, Sandbox.run_pair): guess the number
in 1..100 within 7 guesses, the interactor in C++ and in Python, solutions in Python and C++,
with the hostile solutions beside honest controls."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from halo_forge.sandbox import Limits, Sandbox
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier, verify_many
from halo_forge.verify.types import VerifySample

FAST = VerifierConfig(run_limits=Limits(cpu_s=1.0, wall_s=3.0, memory_mb=256, output_bytes=1 << 16),
                      pch=False, cache=False, concurrency=2)
# The test's stdin is the interactor's input file: the secret. Nothing is expected as stdout.
SECRETS = [{"stdin": "37\n", "stdout": ""}, {"stdin": "100\n", "stdout": ""}]

# testlib's convention: `interactor input output answer`, the solution on stdin/stdout;
# ">" means the secret is greater than the guess.
CPP_INTERACTOR = r"""
#include <cstdio>
int main(int argc, char **argv) {
    FILE *in = argc > 1 ? std::fopen(argv[1], "r") : nullptr;
    int secret;
    if (!in || std::fscanf(in, "%d", &secret) != 1) return 3;
    for (int q = 0; q < 7; q++) {
        long g;
        if (std::scanf("%ld", &g) != 1) { std::fprintf(stderr, "no guess\n"); return 2; }
        if (g == secret) { std::printf("=\n"); std::fflush(stdout); return 0; }
        std::printf(g < secret ? ">\n" : "<\n");
        std::fflush(stdout);
    }
    std::fprintf(stderr, "too many guesses\n");
    return 1;
}
"""
PY_INTERACTOR = """
import sys
secret = int(open(sys.argv[1]).read())
for _ in range(7):
    line = sys.stdin.readline()
    if not line.strip():
        print("no guess", file=sys.stderr)
        sys.exit(2)
    g = int(line)
    if g == secret:
        print("=", flush=True)
        sys.exit(0)
    print(">" if g < secret else "<", flush=True)
print("too many guesses", file=sys.stderr)
sys.exit(1)
"""

BSEARCH_PY = """
lo, hi = 1, 100
while True:
    mid = (lo + hi) // 2
    print(mid, flush=True)
    reply = input().strip()
    if reply == "=":
        break
    if reply == ">":
        lo = mid + 1
    else:
        hi = mid - 1
"""
BSEARCH_CPP = r"""
#include <iostream>
#include <string>
int main() {
    int lo = 1, hi = 100;
    std::string r;
    while (true) {
        int mid = (lo + hi) / 2;
        std::cout << mid << std::endl;
        if (!(std::cin >> r) || r == "=") break;
        if (r == ">") lo = mid + 1; else hi = mid - 1;
    }
}
"""
# Off by one: never moves past a "<" correctly, so it runs out of guesses.
LINEAR_PY = """
for g in range(1, 101):
    print(g, flush=True)
    if input().strip() == "=":
        break
"""
SILENT_PY = "import sys\nsys.stdin.readline()\n"
# Looks for the interactor's input file everywhere it could be: its folder, its parents, the
# other processes' folders and open files, /tmp; guesses that number, or 1.
THIEF_PY = r"""
import glob, os, re
found = None
candidates = ["input.txt", "../input.txt"]
for pattern in ("../*/input.txt", "/proc/*/cwd/input.txt", "/proc/*/root/*/input.txt", "/tmp/**/input.txt",
                "/proc/*/fd/*"):
    candidates += glob.glob(pattern, recursive=True)
for path in candidates:
    try:
        text = open(path).read(64)
    except OSError:
        continue
    m = re.fullmatch(r"\s*(\d+)\s*", text)
    if m:
        found = m.group(1)
        break
print(found or 1, flush=True)
print(input().strip() == "=" and "" or "", end="")
"""


def sample(id, code, language, interactor, tests=SECRETS):
    return msgspec.convert({"id": id, "code": code, "language": language, "io_tests": tests,
                            "interactor": interactor}, VerifySample)


def cpp(source=CPP_INTERACTOR):
    return {"source": source, "language": "cpp"}


def py(source=PY_INTERACTOR):
    return {"source": source, "language": "python"}


def verify(samples, *, disabled=frozenset()):
    async def go():
        async with Verifier(FAST) as v:
            v.judge_disabled = frozenset(disabled)
            return {s.id: await v.verify(s) for s in samples}

    return anyio.run(go)


def test_a_binary_search_passes_and_a_wrong_search_fails():
    got = {v.id: v for v in verify_many([
        sample("py-cpp", BSEARCH_PY, "python", cpp()),
        sample("cpp-cpp", BSEARCH_CPP, "cpp", cpp()),
        sample("py-py", BSEARCH_PY, "python", py()),
        sample("cpp-py", BSEARCH_CPP, "cpp", py()),
        sample("linear", LINEAR_PY, "python", cpp()),
        # Leaves after one guess: the interactor reads its end of file, or dies writing to it.
        sample("quitter", "print(50, flush=True)\n", "python", cpp()),
        sample("quitter-py", "print(50, flush=True)\n", "python", py()),
        sample("syntax", "def (:\n", "python", cpp()),
    ], config=FAST)}
    for key in ("py-cpp", "cpp-cpp", "py-py", "cpp-py"):
        assert (got[key].status, got[key].reward, got[key].tests_passed) == ("passed", 1.0, 2), got[key]
    assert got["linear"].status == "wrong_answer" and got["linear"].reward < 1.0
    assert "too many guesses" in got["linear"].output
    assert (got["syntax"].status, got["syntax"].reward, got["syntax"].compiled) == ("compile_error", 0.0, False)
    for key in ("quitter", "quitter-py"):
        assert got[key].status == "wrong_answer" and got[key].reward < 1.0, got[key]


def test_a_solution_that_never_answers_ends_as_timeout():
    # Both wait on a read: the idle wait ends at the solution's wall clock.
    got = {v.id: v for v in verify_many([
        sample("silent", SILENT_PY, "python", cpp(), tests=SECRETS[:1]),
        sample("honest", BSEARCH_PY, "python", cpp(), tests=SECRETS[:1]),
    ], config=FAST)}
    assert got["silent"].status == "timeout" and got["silent"].reward < 1.0, got["silent"]
    assert got["honest"].status == "passed"


def test_the_solution_cannot_reach_the_interactors_secret():
    got = verify([sample("thief", THIEF_PY, "python", cpp()), sample("honest", BSEARCH_PY, "python", cpp())])
    assert got["thief"].status == "wrong_answer", got["thief"]
    assert got["honest"].status == "passed" and got["honest"].reward == 1.0
    # With the secret beside it (one folder per test), the same thief wins at once.
    naive = verify([sample("thief", THIEF_PY, "python", cpp())], disabled={"own_workdir"})
    assert naive["thief"].status == "passed" and naive["thief"].reward == 1.0


@pytest.mark.parametrize("interactor, why", [
    (py("import sys\nsys.exit(3)"), "exit 3"),
    (cpp("int main( {"), "does not compile"),
    (py("import os\nos.kill(os.getpid(), 11)"), "signal"),
])
def test_a_failing_interactor_is_an_infrastructure_verdict(interactor, why):
    got = verify([sample("honest", BSEARCH_PY, "python", interactor, tests=SECRETS[:1]),
                  sample("control", BSEARCH_PY, "python", cpp(), tests=SECRETS[:1])])
    assert (got["honest"].status, got["honest"].reward) == ("sandbox_error", 0.0), got["honest"]
    assert why in got["honest"].output
    assert got["control"].status == "passed"


def test_a_pair_keeps_each_runs_protections():
    """Each side of a pair is a run of its own: different pid namespaces (neither sees the
    other's process), different mount views, its own wall clock; nothing but the pipes joins
    them. The control pair shows the pipes do."""
    probe = ("import os, sys\n"
             "pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
             "print(len(pids), os.getuid(), sorted(os.listdir('.')), file=sys.stderr)\n")

    async def go():
        with Sandbox(max_concurrency=1) as sb:
            with sb.workdir({"a.py": probe + "print('ping', flush=True)\nprint(input(), file=sys.stderr)\n"}) as a, \
                    sb.workdir({"b.py": probe + "print(input() + ' pong', flush=True)\n", "secret": "42"}) as b:
                from tests.sandbox_util import PYTHON

                return await sb.run_pair([PYTHON, "a.py"], [PYTHON, "b.py"], cwd=(a, b),
                                         limits=(Limits(wall_s=5), Limits(wall_s=5)))

    first, second = anyio.run(go)
    assert first.status == second.status == "ok", (first, second)
    a_pids, _, a_files = first.stderr.decode().splitlines()[0].split(" ", 2)
    b_pids, _, b_files = second.stderr.decode().splitlines()[0].split(" ", 2)
    assert "secret" not in a_files and "b.py" not in a_files and "secret" in b_files
    assert int(a_pids) <= 2 and int(b_pids) <= 2  # its init and itself: the other is invisible
    assert first.stderr.decode().splitlines()[-1] == "ping pong"
    assert first.stdout == second.stdout == b""  # each stdout went to the other, not to us
