"""The run summary's benchmark lines and report.md: each number beside what it is compared
with, no bare 0%, and never a run rate called pass@k."""

from __future__ import annotations

from halo_forge.metrics import CycleMetrics
from halo_forge.run_report import markdown, summary_lines


def _part(adapter: str, problems: int, pass1: float, pass4: float, compile1: float = 1.0,
          **extra) -> dict:
    return {"adapter": adapter, "problems": problems, "samples": 4,
            "pass_at_k": {"1": pass1, "4": pass4}, "compile_at_k": {"1": compile1, "4": 1.0},
            "run_at_k": {}, "untested_problems": 0, **extra}


def _benchmark(final1=0.25, final4=0.5, base1=0.0, sft1=0.1) -> dict:
    return {**_part("/run/cycle_3_final", 12, final1, final4),
            "train_split": _part("/run/cycle_3_final", 36, 0.6, 0.8),
            "base": _part("", 12, base1, 0.0), "sft": _part("/run/sft/final_model", 12, sft1, 0.2)}


def test_the_gain_is_shown_from_base_through_sft_to_final_with_the_training_split():
    lines = summary_lines(_benchmark())
    assert lines[0] == ("benchmark (final adapter): held-out (12 problems x 4 samples) "
                        "pass@1 25.0%, pass@4 50.0%; training split (36 problems) "
                        "pass@1 60.0%, pass@4 80.0%")
    assert lines[1] == "held-out pass@1: base 0.0% -> SFT 10.0% -> final 25.0% (+25.0 points " \
                       "over the base)"


def test_a_loss_against_the_base_is_shown_as_a_loss():
    lines = summary_lines(_benchmark(final1=0.05, base1=0.2, sft1=0.1))
    assert lines[1].endswith("(-15.0 points over the base)")


def test_no_held_out_problem_solved_is_one_sentence_not_a_bare_zero():
    lines = summary_lines(_benchmark(final1=0.0, final4=0.0))
    assert len([x for x in lines if "benchmark" in x]) == 1
    assert "solved none of the 12 held-out problems" in lines[0]
    assert "pass@1 60.0% on its training split" in lines[0]
    assert "has not generalised" in lines[0]
    assert "0.0%, pass@4 0.0%" not in lines[0]
    # SFT solved some and the final adapter none: that loss is shown.
    assert lines[1].startswith("held-out pass@1: base 0.0% -> SFT 10.0% -> final 0.0%")
    # Zero everywhere: the one sentence, no chain of zeros after it.
    assert len(summary_lines(_benchmark(final1=0.0, final4=0.0, sft1=0.0))) == 1


def test_untested_held_out_problems_report_run_and_compile_at_k_never_pass():
    untested = {"adapter": "a", "problems": 5, "samples": 4, "pass_at_k": {},
                "compile_at_k": {"1": 0.9}, "run_at_k": {"1": 0.7}, "untested_problems": 5}
    lines = summary_lines(untested)
    assert lines == ["benchmark (final adapter): held-out (5 problems x 4 samples) run@1 70.0%, "
                     "compile@1 90.0% (no tests: pass@k needs tests)"]
    assert "pass@1" not in markdown(untested, [])


def test_a_skipped_benchmark_says_nothing_and_raft_train_names_its_start_adapter():
    assert summary_lines({"skipped": True, "adapter": ""}) == []
    lines = summary_lines(_benchmark(), sft_enabled=False)
    assert "start adapter 10.0%" in lines[1]


def test_report_has_every_part_and_the_cycles():
    rows = [CycleMetrics(cycle=1, pass_rate=0.3, compile_rate=0.9, kept=10, train_loss=0.5,
                         eval_pass_at_1=0.1),
            CycleMetrics(cycle=2, pass_rate=0.45, compile_rate=0.95, kept=14)]
    text = markdown(_benchmark(), rows)
    assert "| base model | held-out | 12 | 0.0% | 0.0% |" in text
    assert "| SFT adapter | held-out | 12 | 10.0% | 20.0% |" in text
    assert "| final adapter | held-out | 12 | 25.0% | 50.0% |" in text
    assert "| final adapter | training split | 36 | 60.0% | 80.0% |" in text
    assert "| 1 | 30.0% | 0.0% | 90.0% | 0.000 | 10 | 0.5000 | 10.0% |" in text
    assert "| 2 | 45.0% |" in text and "| - |" in text
