"""The RAFT filter: pure functions, each rule and its count."""

from __future__ import annotations

import pytest

from halo_forge.filter import FilterConfig, join, normalize_code, select, tie_key
from halo_forge.records import Sample, Verdict


def pair(pid: str, i: int, reward: float, *, status: str = "passed", code: str | None = None,
         guard: str = ""):
    sid = f"{pid}/c1/s{i}"
    return (Sample(id=sid, problem_id=pid, cycle=1, index=i, code=code or f"code {pid} {i}"),
            Verdict(id=sid, status=status, reward=reward, guard=guard))


def test_threshold_and_sandbox_error_never_used():
    pairs = [pair("a", 0, 1.0), pair("a", 1, 0.3, status="compile_error"),
             pair("a", 2, 0.0, status="sandbox_error"), pair("b", 0, 0.5, status="wrong_answer")]
    kept, report = select(pairs, FilterConfig(reward_threshold=0.5))
    assert [p[0].id for p in kept] == ["a/c1/s0", "b/c1/s0"]
    assert report.removed["sandbox_error"] == 1
    assert report.removed["below_threshold"] == 1
    assert report.kept == 2 and report.total == 4 and report.prompts_kept == 2


def test_sandbox_error_not_kept_even_with_zero_threshold():
    kept, report = select([pair("a", 0, 0.0, status="sandbox_error")],
                          FilterConfig(reward_threshold=0.0))
    assert kept == [] and report.removed["sandbox_error"] == 1


@pytest.mark.parametrize("status,reward", [("passed", 1.0), ("wrong_answer", 0.5),
                                           ("runtime_error", 0.7), ("compile_error", 0.0)])
def test_guarded_sample_never_kept_whatever_its_reward_or_status(status, reward):
    # A verdict whose guard fired is dropped even where the ladder or a stale cache still
    # scored it at the top and the threshold lets everything through; the honest sample
    # beside it keeps its place.
    pairs = [pair("a", 0, reward, status=status, guard="stub: empty main"),
             pair("a", 1, 0.7, status="wrong_answer")]
    kept, report = select(pairs, FilterConfig(reward_threshold=0.0))
    assert [p[0].id for p in kept] == ["a/c1/s1"]
    assert kept[0][1].reward == 0.7
    assert report.removed["guarded"] == 1 and report.removed["below_threshold"] == 0


def test_guarded_copy_does_not_shadow_an_honest_duplicate():
    # Same code, but the runtime guard fired on one run only: the best-rewarded copy must
    # not be the guarded one, or dedupe would throw the honest copy away.
    pairs = [pair("a", 0, 1.0, code="x = 1\n", guard="exited before its tests finished"),
             pair("a", 1, 0.8, code="x = 1\n")]
    kept, report = select(pairs, FilterConfig(reward_threshold=0.5))
    assert [p[0].id for p in kept] == ["a/c1/s1"]
    assert report.removed == {"sandbox_error": 0, "guarded": 1, "below_threshold": 0,
                              "duplicate": 0, "per_prompt_cap": 0, "top_percent": 0}


def test_keep_top_percent_keeps_the_best():
    pairs = [pair("p", i, r) for i, r in enumerate([0.6, 1.0, 0.7, 0.9])]
    kept, report = select(pairs, FilterConfig(reward_threshold=0.5, keep_top_percent=0.5,
                                              max_per_prompt=0))
    assert sorted(v.reward for _, v in kept) == [0.9, 1.0]
    assert report.removed["top_percent"] == 2


def test_dedupe_identical_code_keeps_best_copy():
    pairs = [pair("a", 0, 0.7, code="x = 1\n"), pair("a", 1, 1.0, code="x = 1   \n\n"),
             pair("b", 0, 1.0, code="x = 1\n")]  # same code, other prompt: kept
    kept, report = select(pairs, FilterConfig(reward_threshold=0.0))
    assert {p[0].id for p in kept} == {"a/c1/s1", "b/c1/s0"}
    assert report.removed["duplicate"] == 1
    kept, report = select(pairs, FilterConfig(reward_threshold=0.0, dedupe=False))
    assert len(kept) == 3 and report.removed["duplicate"] == 0


def test_per_prompt_cap_spreads_over_prompts():
    pairs = [pair("easy", i, 1.0) for i in range(8)] + [pair("hard", 0, 0.8)]
    kept, report = select(pairs, FilterConfig(reward_threshold=0.5, max_per_prompt=2))
    by = [p[0].problem_id for p in kept]
    assert by.count("easy") == 2 and by.count("hard") == 1
    assert report.removed["per_prompt_cap"] == 6


def test_ties_do_not_depend_on_prompt_order():
    pairs = [pair(f"p{k}", 0, 1.0) for k in range(20)]
    cfg = FilterConfig(reward_threshold=0.5, keep_top_percent=0.25, seed=3)
    a, _ = select(pairs, cfg)
    b, _ = select(list(reversed(pairs)), cfg)
    assert {p[0].id for p in a} == {p[0].id for p in b}
    # Not simply the first prompts, and another seed draws differently.
    assert {p[0].id for p in a} != {f"p{k}/c1/s0" for k in range(5)}
    c, _ = select(pairs, FilterConfig(reward_threshold=0.5, keep_top_percent=0.25, seed=4))
    assert {p[0].id for p in c} != {p[0].id for p in a}


def test_tie_key_is_deterministic_and_seeded():
    assert tie_key("x", 1) == tie_key("x", 1) != tie_key("x", 2)


def test_normalize_and_join():
    assert normalize_code("  a  \n\n b\n") == normalize_code("a\n b")
    s, v = pair("a", 0, 1.0)
    s2, _ = pair("a", 1, 1.0)
    assert join([s, s2], [v]) == [(s, v)]


def test_bad_fraction_rejected():
    with pytest.raises(ValueError, match="keep_top_percent"):
        FilterConfig(keep_top_percent=1.5)
