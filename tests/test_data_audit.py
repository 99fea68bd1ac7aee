"""The test-strength audit (`halo-forge data audit`, `data prepare --audit`): mutants of a
reference, judged by the real verifier, and a problem called weak only when an accepted mutant
was seen to behave differently from the reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from halo_forge.cli import main
from halo_forge.data import audit, registry
from halo_forge.data.mutants import mutants_for, native_mutants, python_mutants
from halo_forge.data.probes import call_probe, io_inputs
from halo_forge.records import IOTest, Problem

ABS_REF = "def absolute(x):\n    return -x if x < 0 else x\n"


def _fn_problem(test_code: str, reference: str = ABS_REF, pid: str = "t/abs") -> Problem:
    return Problem(id=pid, language="python", prompt="Write absolute(x), |x|.",
                   reference=reference, test_code=test_code)


WEAK_PY = _fn_problem("assert absolute(-3) == 3\nassert absolute(3) == 3\n", pid="t/abs-weak")
STRONG_PY = _fn_problem(
    "assert absolute(-3) == 3\nassert absolute(3) == 3\nassert absolute(0) == 0\n"
    "assert absolute(-1) == 1\nassert absolute(7) == 7\nassert absolute(-12) == 12\n",
    pid="t/abs-strong")
# CodeForces-like: one example as the only test, so printing it verbatim passes.
WEAK_C_IO = Problem(
    id="t/c-sum-weak", language="c", prompt="Read a and b, print a + b.",
    reference='#include <stdio.h>\nint main(void) {\n    long long a, b;\n'
              '    if (scanf("%lld %lld", &a, &b) != 2) return 1;\n'
              '    printf("%lld\\n", a + b);\n    return 0;\n}\n',
    io_tests=[IOTest(stdin="2 3\n", stdout="5\n")])


def _audit(*problems: Problem, **kwargs) -> list[audit.ProblemAudit]:
    return audit.audit(list(problems), dataset="test", use_cache=False, **kwargs)


# --- mutants ---------------------------------------------------------------------------------

def test_python_mutants_change_code_never_strings_and_ignore_layout() -> None:
    spaced = 'def f(x, y):\n    s = "x < y"  # x < y\n    if x < y:\n        return s\n    return ""\n'
    cramped = 'def f(x,y):\n  s="x < y"\n  if x<y :  return s\n  return ""\n'
    a = {m.code for m in python_mutants(spaced)}
    b = {m.code for m in python_mutants(cramped)}
    assert a == b  # from the syntax tree: the spelling of the reference does not matter
    flips = [m for m in python_mutants(spaced) if m.kind == "compare"]
    assert flips and all("'x < y'" in m.code and "x >= y:" in m.code for m in flips)
    assert all("'x < y'" in m.code for m in python_mutants(spaced) if m.kind != "drop")


def test_native_mutants_leave_strings_comments_and_directives_alone() -> None:
    ref = ('#include <stdio.h>\n#define LIMIT (1 < 2)\n'
           'int lower(int a, int b) {\n    // a < b means a\n'
           '    printf("a < b == %d\\n", a < b);\n    return a < b ? a : b;\n}\n')
    mutants = native_mutants(ref, "c")
    compares = [m for m in mutants if m.kind == "compare"]
    assert len(compares) == 2  # the two code `<`s, nothing in the string, comment or #define
    for m in mutants:
        assert '#define LIMIT (1 < 2)' in m.code and "// a < b means a" in m.code
        assert '"a < b == %d\\n"' in m.code or m.kind == "drop"
    assert any("a >= b ? a : b" in m.code for m in compares)
    assert all(m.diff.startswith("line ") for m in mutants)


def test_rust_mutants_skip_generics_and_change_ranges() -> None:
    ref = "pub fn total(xs: &Vec<i64>) -> i64 {\n    let mut t = 0;\n" \
          "    for i in 0..xs.len() { t += xs[i]; }\n    t\n}\n"
    mutants = native_mutants(ref, "rust")
    assert not any("Vec>=" in m.code or "Vec<=" in m.code for m in mutants)
    assert any("0..=xs.len()" in m.code for m in mutants if m.kind == "boundary")
    assert any("t -= xs[i]" in m.code for m in mutants)


def test_whole_program_mutants_print_the_first_expected_output() -> None:
    chosen = mutants_for(WEAK_C_IO, limit=50)
    sample = [m for m in chosen if m.kind == "sample_output"]
    assert len(sample) == 1 and '"5\\n"' in sample[0].code
    assert chosen[0].kind == "sample_output"  # cheapest evidence first, kept under any limit
    assert len(mutants_for(WEAK_C_IO, limit=3)) == 3
    assert len({m.code for m in chosen}) == len(chosen)


def test_made_up_inputs_stay_in_the_domain_the_tests_show() -> None:
    tests = [IOTest(stdin="3\n1 9 4\n", stdout="9\n"), IOTest(stdin="2\n5 6\n", stdout="6\n")]
    inputs = io_inputs(tests, count=30, seed="x")
    assert inputs and not {t.stdin for t in tests} & set(inputs)
    for text in inputs:
        first, *rest = text.split("\n")
        assert 1 <= int(first) <= 3  # a count only goes down: never asks for more than there is
        assert all(1 <= int(v) <= 9 for line in rest for v in line.split())


def test_made_up_inputs_keep_separators_and_vary_only_numbers_and_words() -> None:
    tests = [IOTest(stdin="29,-26,-10,16\n", stdout="3\n"), IOTest(stdin="a=5 name\n", stdout="x\n")]
    for text in io_inputs(tests, count=30, seed="y"):
        if "," in text:
            values = text.strip().split(",")
            assert len(values) == 4 and all(-26 <= int(v) <= 29 for v in values)
        else:  # words may change or be swapped, `=` and the space stay, the number stays one
            assert re.fullmatch(r"[^\W\d_]+=-?\d+ [^\W\d_]+\n", text), text


def test_humaneval_style_check_candidate_calls_are_probed() -> None:
    p = _fn_problem("def check(candidate):\n    assert candidate(-2) == 2\n    assert candidate(5) == 5\n\n"
                    "check(absolute)\n")
    probe = call_probe(p, count=6, seed="s")
    assert probe is not None and probe.calls[:2] == ["absolute(-2)", "absolute(5)"]
    assert len(probe.calls) > 2 and all(c.startswith("absolute(") for c in probe.calls)


# --- the audit, through the real verifier ------------------------------------------------------

def test_weak_tests_are_flagged_and_the_mutant_named() -> None:
    (weak,) = _audit(WEAK_PY)
    assert weak.status == "weak"
    names = [f.name for f in weak.weak_by]
    assert "`absolute` returns 3" in names
    finding = weak.weak_by[names.index("`absolute` returns 3")]
    assert finding.diff == "line 2: `return -x if x < 0 else x` -> `return 3`"
    assert finding.witness.startswith("absolute(") and finding.got.startswith("3 ")
    assert finding.expected != finding.got
    assert "WEAK" in weak.line() and "t/abs-weak" in weak.line()


def test_strong_tests_pass_and_an_equivalent_mutant_does_not_make_them_weak() -> None:
    (strong,) = _audit(STRONG_PY)
    assert strong.status == "strong" and not strong.weak_by
    assert strong.killed > 0 and strong.mutants == strong.killed + strong.invalid + len(strong.unproven)
    # `x < 0` -> `x <= 0` and -> `x < 1` are still correct on integers (-0 == 0): the tests
    # accept them, and only the differential check keeps them from calling the problem weak.
    assert sorted(f.name for f in strong.unproven) == ["`0` -> `1` (line 2)", "`<` -> `<=` (line 2)"]


def test_inputs_the_reference_rejects_prove_nothing() -> None:
    # Odd numbers are outside the problem: the reference raises on them. Dropping that check
    # changes nothing on valid input, so it must not count, though the made-up inputs hold odds.
    p = _fn_problem("assert half(2) == 1\nassert half(8) == 4\nassert half(0) == 0\n",
                    reference="def half(n):\n    if n % 2:\n        raise ValueError('odd')\n"
                              "    return n // 2\n", pid="t/half")
    (result,) = _audit(p)
    assert result.status == "strong"
    dropped = [f for f in result.unproven if f.kind == "drop"]
    assert dropped and all("raise ValueError('odd')" in f.diff for f in dropped)
    assert any(c in call_probe(p, count=24, seed=p.id).calls for c in ("half(1)", "half(3)", "half(7)"))


def test_sample_output_printed_verbatim_passes_a_single_example_and_is_caught() -> None:
    (result,) = _audit(WEAK_C_IO)
    assert result.status == "weak"
    kinds = {f.kind for f in result.weak_by}
    assert "sample_output" in kinds
    f = next(f for f in result.weak_by if f.kind == "sample_output")
    assert f.got == "5\n" and f.expected != "5\n" and f.witness != "2 3\n"


def test_a_failing_reference_is_reported_not_audited() -> None:
    broken = _fn_problem("assert absolute(-3) == 3\n", reference="def absolute(x):\n    return x\n",
                         pid="t/abs-broken")
    (result,) = _audit(broken)
    assert result.status == "reference_failed" and result.mutants == 0
    assert result.detail.startswith("wrong_answer") and "BROKEN" in result.line()


def test_a_sandbox_failure_on_the_reference_is_no_verdict_on_the_problem() -> None:
    import anyio

    from halo_forge.records import Verdict
    from halo_forge.verify.config import VerifierConfig

    class Failing:  # the verifier whose sandbox broke: infrastructure, not the reference
        config = VerifierConfig()

        async def verify(self, sample):
            return Verdict(id=sample.id, status="sandbox_error", reward=0.0, output="sandbox: gone")

    result = anyio.run(lambda: audit.audit_problem(Failing(), STRONG_PY))
    assert result.status == "not_audited" and result.sandbox_failed and result.mutants == 0
    assert "run the audit again" in result.detail


def test_native_function_problems_are_probed_through_a_generated_main() -> None:
    weak_c = Problem(
        id="t/c-prime-weak", language="c", prompt="int is_prime(int n): 1 if prime else 0",
        reference="int is_prime(int n) {\n    if (n < 2) return 0;\n"
                  "    for (int d = 2; d * d <= n; d++)\n        if (n % d == 0) return 0;\n    return 1;\n}\n",
        test_code="int main(void) {\n    if (!is_prime(2) || !is_prime(13)) return 1;\n"
                  "    if (is_prime(1) || is_prime(15)) return 1;\n    return 0;\n}\n")
    (result,) = _audit(weak_c)
    assert result.status == "weak"
    assert any(f.diff.endswith("`for (int d = 2; d * d < n; d++)`") for f in result.weak_by)


def test_rust_function_problems_are_probed_through_a_generated_main() -> None:
    weak_rs = Problem(
        id="t/rs-add-weak", language="rust", prompt="pub fn add(a: i32, b: i32) -> i32",
        reference="pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        test_code="#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds() {\n"
                  "        assert_eq!(add(2, 2), 4);\n        assert_eq!(add(0, 4), 4);\n    }\n}\n")
    (result,) = _audit(weak_rs)
    assert result.status == "weak"
    f = next(f for f in result.weak_by if f.kind == "constant")
    assert f.name == "`add` returns 4" and f.got == "4" and f.expected != "4"


def test_problems_with_a_checker_are_not_called_strong() -> None:
    # Several outputs are right: a mutant printing something else proves nothing.
    from halo_forge.records import JudgeProgram

    p = Problem(id="t/perm", language="python", prompt="any permutation", reference="print(1)\n",
                io_tests=[IOTest(stdin="", stdout="1\n")],
                checker=JudgeProgram(language="python", source="import sys\n"))
    (result,) = _audit(p)
    assert result.status == "not_audited" and "checker" in result.detail


# --- command line, cache, prepare --------------------------------------------------------------

@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _local(tmp_path: Path, *problems: Problem) -> Path:
    import msgspec

    path = tmp_path / "problems.jsonl"
    path.write_text("".join(msgspec.json.encode(p).decode() + "\n" for p in problems))
    return path


def test_cli_reports_weak_problems_writes_results_and_caches(tmp_path: Path, cache_home: Path, capsys) -> None:
    src = _local(tmp_path, WEAK_PY, STRONG_PY)
    out = tmp_path / "audit.jsonl"
    assert main(["data", "audit", str(src), "--out", str(out), "--concurrency", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("WEAK    t/abs-weak: accepts ")
    assert "1/2 weak" in captured.err
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["t/abs-weak"]["status"] == "weak" and rows["t/abs-strong"]["status"] == "strong"
    cached = list((cache_home / "halo-forge" / "audit").glob("local-problems-*.json"))
    assert len(cached) == 1
    # A rerun takes the cached results: same answer, and nothing is verified again.
    before = cached[0].stat().st_mtime_ns
    assert main(["data", "audit", str(src)]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert cached[0].stat().st_mtime_ns == before


def test_prepare_audit_drops_weak_problems_with_a_count(tmp_path: Path, cache_home: Path, capsys) -> None:
    src = _local(tmp_path, WEAK_PY, STRONG_PY)
    prompts = tmp_path / "prompts.jsonl"
    assert main(["data", "prepare", "--dataset", "local", "--from", str(src), "--split", "all",
                 "--audit", "--prompts", str(prompts)]) == 0
    kept = [json.loads(line)["id"] for line in prompts.read_text().splitlines()]
    assert kept == ["t/abs-strong"]
    assert "weak tests (accept a wrong program), dropped: 1 (t/abs-weak" in capsys.readouterr().err


def test_list_shows_the_weak_share_from_the_cache(cache_home: Path, capsys) -> None:
    main(["data", "prepare", "--list"])
    assert "builtin" in capsys.readouterr().out  # never audited here: no share
    audit.write_cache(audit.AuditFile(dataset="humaneval", problems={
        "a": audit.ProblemAudit(id="a", status="weak"), "b": audit.ProblemAudit(id="b", status="strong"),
        "c": audit.ProblemAudit(id="c", status="strong"),
        "d": audit.ProblemAudit(id="d", status="reference_failed")}))
    assert audit.cached_summary("humaneval").text() == "1/3 weak (33%); 1 references failing"
    assert audit.cached_summary("mbpp") is None
    main(["data", "prepare", "--list"])
    out = capsys.readouterr().out
    assert "1/3" in out and str(cache_home / "halo-forge" / "audit") in out.replace("\n", " ")


@pytest.mark.parametrize("argv, message", [
    (["data", "audit", "no-such-set"], "unknown dataset 'no-such-set'"),
    (["data", "audit", "missing/problems.jsonl"], "missing/problems.jsonl: no such file"),
    (["data", "audit", "builtin", "--mutants", "0"], "--mutants: must be at least 1"),
    (["data", "audit", "builtin", "--limit", "-1"], "--limit must be >= 0"),
])
def test_bad_input_is_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_builtin_dataset_has_no_weak_problem_and_no_failing_reference() -> None:
    problems = registry.load_problems("builtin")
    results = audit.audit(problems, dataset="builtin", use_cache=False)
    assert {r.id: r.line() for r in results if r.status != "strong"} == {}
