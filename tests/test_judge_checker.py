"""Checkers (halo_forge/verify/checker.py): "print any permutation of 1..n" judged by the
problem's own checker, in C++ (testlib's calling convention) and in Python (open-r1's), with
the hostile samples and failing checkers beside honest controls."""

from __future__ import annotations

import msgspec
import pytest

from halo_forge.records import IOTest, JudgeProgram, Problem, Sample
from halo_forge.sandbox import Limits
from halo_forge.shards import read_shards, write_shard
from halo_forge.verify import judge_build
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier, verify_many
from halo_forge.verify.types import VerifySample, verify_input

FAST = VerifierConfig(run_limits=Limits(cpu_s=1.0, wall_s=3.0, memory_mb=256, output_bytes=1 << 16),
                      pch=False, cache=False, concurrency=2)
TESTS = [{"stdin": "3\n", "stdout": "1 2 3\n"}, {"stdin": "5\n", "stdout": "1 2 3 4 5\n"}]

# testlib's convention without testlib.h: `checker input output answer`, exit 0 / 1 / 2 / 3.
CPP_CHECKER = r"""
#include <cstdio>
#include <vector>
int main(int argc, char **argv) {
    if (argc < 4) return 3;
    FILE *in = std::fopen(argv[1], "r"), *out = std::fopen(argv[2], "r");
    if (!in || !out) return 3;
    int n;
    if (std::fscanf(in, "%d", &n) != 1) return 3;
    std::vector<int> seen(n + 1, 0);
    for (int i = 0; i < n; i++) {
        long x;
        if (std::fscanf(out, "%ld", &x) != 1) { std::fprintf(stderr, "too few numbers\n"); return 1; }
        if (x < 1 || x > n || seen[x]) { std::fprintf(stderr, "not a permutation: %ld\n", x); return 1; }
        seen[x] = 1;
    }
    long extra;
    if (std::fscanf(out, "%ld", &extra) == 1) { std::fprintf(stderr, "extra output\n"); return 2; }
    return 0;
}
"""
# open-r1's generated_checker convention: `checker input answer output`, prints its score.
PY_CHECKER = """
import sys
inp, ans, out = sys.argv[1:4]
n = int(open(inp).read())
got = open(out).read().split()
print(1 if sorted(got, key=lambda t: int(t) if t.lstrip('-').isdigit() else -1) == [str(i) for i in range(1, n + 1)] else 0)
"""
# Echoes the participant's output on stdout (as many checkers do in their messages).
ECHO_CHECKER = """
import sys
out = open(sys.argv[2]).read()
print("participant said: " + out)
n = int(open(sys.argv[1]).read())
sys.exit(0 if sorted(out.split()) == sorted(str(i) for i in range(1, n + 1)) else 1)
"""

ASCENDING_PY = "n = int(input())\nprint(*range(1, n + 1))\n"
DESCENDING_C = '#include <stdio.h>\nint main(void){int n;scanf("%d",&n);for(int i=n;i>=1;i--)printf("%d ",i);puts("");}\n'
ROTATED_CPP = ("#include <iostream>\nint main(){int n;std::cin>>n;for(int i=2;i<=n;i++)std::cout<<i<<' ';"
               "std::cout<<1<<'\\n';}\n")
DUPLICATE_PY = "n = int(input())\nprint(*([1] * n))\n"


def sample(id, code, language, *, checker=None, interactor=None, tests=TESTS):
    return msgspec.convert({"id": id, "code": code, "language": language, "io_tests": tests,
                            "checker": checker, "interactor": interactor}, VerifySample)


def cpp_checker(source=CPP_CHECKER):
    return {"source": source, "language": "cpp"}


def py_checker(source=PY_CHECKER, style="open-r1"):
    return {"source": source, "language": "python", "style": style}


def verify(samples, *, disabled=frozenset(), config=FAST):
    async def go():
        out = {}
        async with Verifier(config) as v:
            v.judge_disabled = frozenset(disabled)
            for s in samples:
                out[s.id] = await v.verify(s)
        return out

    import anyio

    return anyio.run(go)


def test_several_correct_outputs_pass_and_a_wrong_one_fails():
    got = {v.id: v for v in verify_many([
        sample("asc-py", ASCENDING_PY, "python", checker=cpp_checker()),
        sample("desc-c", DESCENDING_C, "c", checker=cpp_checker()),
        sample("rot-cpp", ROTATED_CPP, "cpp", checker=cpp_checker()),
        sample("dup-py", DUPLICATE_PY, "python", checker=cpp_checker()),
        sample("asc-openr1", ASCENDING_PY, "python", checker=py_checker()),
        sample("desc-openr1", DESCENDING_C, "c", checker=py_checker()),
        sample("dup-openr1", DUPLICATE_PY, "python", checker=py_checker()),
        # Without the checker, the exact compare rejects the right answers the tests did not list.
        sample("desc-exact", DESCENDING_C, "c"),
        sample("syntax", "def (:\n", "python", checker=cpp_checker()),
    ], config=FAST)}
    for key in ("asc-py", "desc-c", "rot-cpp", "asc-openr1", "desc-openr1"):
        assert (got[key].status, got[key].reward, got[key].tests_passed) == ("passed", 1.0, 2), got[key]
    for key in ("dup-py", "dup-openr1"):
        assert got[key].status == "wrong_answer" and got[key].reward < 1.0, got[key]
    assert "not a permutation" in got["dup-py"].output
    assert got["desc-exact"].status == "wrong_answer"
    assert (got["syntax"].status, got["syntax"].reward) == ("compile_error", 0.0)


@pytest.mark.parametrize("checker, why", [
    (cpp_checker("int main( { this is not C++"), "does not compile"),
    (cpp_checker("int main(){ volatile int *p = 0; return *p; }"), "signal"),
    (cpp_checker("int main(){ return 3; }"), "exit 3"),
    (py_checker("print('looks fine to me')"), "no score"),
    (py_checker("import sys\nsys.exit(1)"), "exit"),
])
def test_a_failing_checker_is_an_infrastructure_verdict_with_no_reward(checker, why):
    got = {v.id: v for v in verify_many([
        sample("honest", ASCENDING_PY, "python", checker=checker),
        sample("control", ASCENDING_PY, "python", checker=cpp_checker()),
    ], config=FAST)}
    assert (got["honest"].status, got["honest"].reward) == ("sandbox_error", 0.0), got["honest"]
    assert why in got["honest"].output
    assert got["control"].status == "passed" and got["control"].reward == 1.0


def test_a_checker_that_never_ends_is_the_judges_failure(monkeypatch):
    monkeypatch.setattr(judge_build, "JUDGE_CPU_S", 1.0)
    monkeypatch.setattr(judge_build, "JUDGE_WALL_S", 2.0)
    got = {v.id: v for v in verify_many([
        sample("honest", ASCENDING_PY, "python", checker=cpp_checker("int main(){ for(;;); }")),
    ], config=FAST)}
    assert (got["honest"].status, got["honest"].reward) == ("sandbox_error", 0.0)
    assert "timeout" in got["honest"].output


# Reads the answer file the checker is given, and prints it; when it finds none, a guess.
ANSWER_THIEF = """
import os
n = int(input())
for path in ("answer.txt", "../answer.txt", "/tmp/answer.txt"):
    if os.path.exists(path):
        print(open(path).read())
        break
else:
    print(*([1] * n))
"""
# Leaves files beside itself that a checker sharing its folder would read instead.
FILE_PLANTER = """
n = int(input())
for name in ("output.txt", "answer.txt", "input.txt"):
    open(name, "w").write("1\\n")
print(*([1] * n))
"""


def test_the_answer_file_is_never_beside_the_sample():
    got = verify([sample("thief", ANSWER_THIEF, "python", checker=cpp_checker()),
                  sample("honest", ASCENDING_PY, "python", checker=cpp_checker())])
    assert got["thief"].status == "wrong_answer"
    assert got["honest"].status == "passed" and got["honest"].reward == 1.0
    # The same thief against a judge that keeps one folder per test earns full reward.
    naive = verify([sample("thief", ANSWER_THIEF, "python", checker=cpp_checker())],
                   disabled={"own_workdir"})
    assert naive["thief"].status == "passed" and naive["thief"].reward == 1.0


def test_files_the_sample_writes_never_reach_the_checker():
    got = verify([sample("planter", FILE_PLANTER, "python", checker=cpp_checker()),
                  sample("honest", ASCENDING_PY, "python", checker=cpp_checker())])
    assert got["planter"].status == "wrong_answer"
    assert got["honest"].status == "passed"


def test_the_verdict_is_the_checkers_exit_status_not_text_the_sample_prints():
    # A testlib-style checker that echoes the participant's output: printed verdict words
    # ("ok", a score of 1) reach the checker's stdout, never its exit status.
    forged = "print('ok 1 accepted')\nprint(1)\n"
    got = verify([sample("forger", forged, "python", checker=py_checker(ECHO_CHECKER, style="testlib")),
                  sample("honest", ASCENDING_PY, "python", checker=py_checker(ECHO_CHECKER, style="testlib"))])
    assert got["forger"].status == "wrong_answer" and got["forger"].reward < 1.0
    assert got["honest"].status == "passed" and got["honest"].reward == 1.0


def test_problems_with_a_judge_round_trip_in_shards(tmp_path):
    problem = Problem(id="perm", language="cpp", prompt="print any permutation", io_tests=[],
                      checker=JudgeProgram(source=CPP_CHECKER, headers={"testlib.h": "// ours"}))
    guess = Problem(id="guess", language="python", prompt="guess", io_tests=[IOTest(stdin="37")],
                    interactor=JudgeProgram(source="print(1)", language="python"))
    write_shard(tmp_path / "p.shard", [problem, guess], Problem)
    back = list(read_shards(tmp_path / "p.shard", Problem))
    assert back == [problem, guess]
    vs = verify_input(back[1], Sample(id="s", problem_id="guess", completion="```python\nprint(1)\n```"))
    assert vs.interactor == guess.interactor and vs.checker is None


def test_judge_records_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="not both"):
        Problem(id="x", language="cpp", prompt="p", io_tests=[IOTest(stdin="1", stdout="1")],
                checker=JudgeProgram(source="x"), interactor=JudgeProgram(source="x"))
    with pytest.raises(ValueError, match="needs io_tests"):
        Problem(id="x", language="cpp", prompt="p", interactor=JudgeProgram(source="x"))
    with pytest.raises(ValueError, match="C, C\\+\\+ or Python"):
        JudgeProgram(source="fn main(){}", language="rust")
    with pytest.raises(msgspec.ValidationError, match="needs io_tests"):
        msgspec.convert({"id": "s", "code": "x", "checker": {"source": "x"}}, VerifySample)


def test_a_checker_is_compiled_once_for_all_the_samples_of_its_problem():
    async def go():
        async with Verifier(FAST) as v:
            samples = [sample(f"s{i}", ASCENDING_PY + f"# {i}\n", "python", checker=cpp_checker()) for i in range(4)]
            import anyio

            out = {}

            async def one(s):
                out[s.id] = await v.verify(s)

            async with anyio.create_task_group() as tg:
                for s in samples:
                    tg.start_soon(one, s)
            return out, v.judges.compiles

    import anyio

    got, compiles = anyio.run(go)
    assert all(v.status == "passed" for v in got.values()) and len(got) == 4
    assert compiles == 1
