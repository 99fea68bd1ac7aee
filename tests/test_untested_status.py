"""#14: a sample of a problem without tests that runs and exits 0 is `ran`, never `passed`; it
keeps its 0.7 reward but is never counted in pass@k, and a benchmark with no tests at all shows
run@k and compile@k instead."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from halo_forge.benchmark_eval import evaluate
from halo_forge.benchmark_records import read_summary
from halo_forge.data.registry import load_problems
from halo_forge.raft import CycleStats
from halo_forge.records import STATUSES, Problem, untested_warning
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier
from halo_forge.verify.types import VerifySample
from tests.test_benchmark_evaluate import ScriptedBackend


@pytest.fixture(scope="module")
def pair() -> tuple[Problem, Problem]:
    """py-max with its tests, and the same problem stripped of them."""
    tested = next(p for p in load_problems("builtin") if p.id == "builtin/py-max")
    untested = msgspec.structs.replace(tested, id="untested/py-max", io_tests=[], test_code="")
    assert untested.tests_kind == "none" and tested.tests_kind != "none"
    return tested, untested


def _verify(problem: Problem, code: str):
    async def main():
        async with Verifier(VerifierConfig(concurrency=1)) as verifier:
            return await verifier.verify(VerifySample(
                id="s", language=problem.language, code=code, io_tests=problem.io_tests,
                test_code=problem.test_code))
    return anyio.run(main)


def test_ran_is_a_status_of_its_own():
    assert "ran" in STATUSES and "passed" in STATUSES


def test_untested_run_is_ran_with_the_ladders_reward_and_tested_control_passes(pair):
    tested, untested = pair
    ran = _verify(untested, untested.reference)
    assert (ran.status, ran.reward, ran.tests_total) == ("ran", 0.7, 0)
    honest = _verify(tested, tested.reference)
    assert (honest.status, honest.reward) == ("passed", 1.0)


def test_raft_stats_do_not_count_ran_as_passed():
    stats = CycleStats()
    from halo_forge.records import Verdict
    stats.add(Verdict(id="a", status="ran", reward=0.7, compiled=True))
    stats.add(Verdict(id="b", status="passed", reward=1.0, compiled=True, tests_passed=1,
                      tests_total=1))
    assert stats.passed == 1 and stats.compiled == 2 and stats.ran == 1
    assert stats.rates()["pass_rate"] == 0.5 and stats.rates()["run_rate"] == 0.5


def test_benchmark_without_tests_reports_run_at_k_never_pass_at_k(pair, tmp_path):
    _, untested = pair
    backend = ScriptedBackend({untested.id: ["ref", "ref", "broken", "none"]})
    out = tmp_path / "run"
    summary = anyio.run(lambda: evaluate(problems=[untested], backend=backend, samples=4, ks=[1, 2],
                                         verifier_config=VerifierConfig(concurrency=1),
                                         output_dir=out))
    assert summary.pass_at_k == {} and summary.solved == 0
    assert summary.run_at_k[1] == pytest.approx(0.5)
    assert summary.compile_at_k[1] == pytest.approx(0.5)
    assert summary.untested_problems == 1
    assert summary.status_counts.get("ran") == 2 and "passed" not in summary.status_counts
    assert read_summary(out) == summary
    report = (out / "report.md").read_text()
    assert "pass@k (all tests passed)" not in report
    assert "No problem has tests" in report and "## run@k" in report and "## compile@k" in report


def test_mixed_benchmark_counts_untested_runs_as_unsolved(pair, tmp_path):
    tested, untested = pair
    backend = ScriptedBackend({tested.id: ["ref", "broken"], untested.id: ["ref", "ref"]})
    summary = anyio.run(lambda: evaluate(problems=[tested, untested], backend=backend, samples=2,
                                         ks=[1], verifier_config=VerifierConfig(concurrency=1)))
    assert summary.pass_at_k[1] == pytest.approx((0.5 + 0.0) / 2)
    assert summary.run_at_k[1] == 1.0 and summary.solved == 1


def test_untested_warning_names_the_source_and_the_rates(pair):
    tested, untested = pair
    assert untested_warning([tested], "p.jsonl") is None
    alone = untested_warning([untested, untested], "p.jsonl")
    assert alone is not None and "\n" not in alone
    assert "p.jsonl" in alone and "run@k" in alone and "no pass@k" in alone
    mixed = untested_warning([tested, untested], "p.jsonl")
    assert mixed is not None and "1 of 2" in mixed and "unsolved in pass@k" in mixed


def test_benchmark_summary_line_says_run_at_k_when_nothing_has_tests():
    from halo_forge.benchmark_records import BenchmarkSummary
    from halo_forge.cli.benchmark import format_summary

    shown = format_summary(BenchmarkSummary(model="m", ks=[1], run_at_k={1: 0.5},
                                            compile_at_k={1: 0.75}, untested_problems=2,
                                            problems=2))
    assert "run@k" in shown and "pass@k" not in shown and "50.0%" in shown
