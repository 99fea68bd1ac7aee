"""The unbiased pass@k estimator against brute force, its edge cases, and its stability."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from halo_forge.benchmark_eval import difficulty_bucket, rates
from halo_forge.benchmark_records import ProblemResult
from halo_forge.errors import HaloError
from halo_forge.pass_at_k import check_ks, pass_at_k, pass_at_k_array


def brute_force(n: int, c: int, k: int) -> Fraction:
    """The fraction of k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(i < c for i in s) for s in subsets)
    return Fraction(hits, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_of_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = brute_force(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_array_form_matches_scalar_form():
    rng = np.random.default_rng(0)
    n = rng.integers(5, 200, size=300)
    c = rng.integers(0, n + 1)
    for k in (1, 2, 5):
        got = pass_at_k_array(n, c, k)
        want = [pass_at_k(int(a), int(b), k) for a, b in zip(n, c)]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 0, 10) == 0.0  # nothing passed
    assert pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 10, 10) == 1.0  # everything passed
    assert pass_at_k(10, 1, 10) == 1.0  # k = n: the whole set holds the correct one
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the pass rate
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    np.testing.assert_array_equal(pass_at_k_array([4, 4, 4], [0, 4, 2], 4), [0.0, 1.0, 1.0])


@pytest.mark.parametrize("n,c,k", [(5, 1, 6), (5, 0, 0), (5, 6, 1), (0, 0, 1), (5, -1, 1)])
def test_impossible_arguments_are_clear_errors(n, c, k):
    with pytest.raises(HaloError):
        pass_at_k(n, c, k)
    with pytest.raises(HaloError):
        pass_at_k_array([n], [c], k)


def test_k_larger_than_n_names_the_fix():
    with pytest.raises(HaloError, match=r"pass@10 .*--samples is 5"):
        check_ks([1, 10], 5)
    assert check_ks([5, 1, 1], 5) == [1, 5]


def test_large_n_stays_finite_and_exact():
    # C(10000, 500) overflows a float by far; the product form never forms it.
    n, c, k = 10_000, 3, 500
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k_array([n], [c], k)[0] == pytest.approx(float(exact), rel=1e-10)
    # Tiny probabilities keep their relative precision (1 - x computed without cancellation).
    tiny = pass_at_k_array([10_000], [1], 1)[0]
    assert tiny == pytest.approx(1e-4, rel=1e-10)


def test_rates_average_over_problems_with_enough_samples():
    results = [
        ProblemResult(id="a", language="c", n=4, passed=4, compiled=4),
        ProblemResult(id="b", language="c", n=4, passed=0, compiled=2),
        # sandbox errors left this one with 1 scored sample: in pass@1, not in pass@2
        ProblemResult(id="c", language="c", n=1, passed=1, compiled=1),
    ]
    r = rates(results, [1, 2])
    assert r.scored_problems == {1: 3, 2: 2}
    assert r.pass_at_k[1] == pytest.approx((1 + 0 + 1) / 3)
    assert r.pass_at_k[2] == pytest.approx((1 + 0) / 2)
    assert r.compile_at_k[1] == pytest.approx((1 + 0.5 + 1) / 3)
    assert r.compile_at_k[2] == pytest.approx((1 + pass_at_k(4, 2, 2)) / 2)


def test_difficulty_buckets():
    assert difficulty_bucket(None) == "unknown"
    assert difficulty_bucket(800) == "800-1199" and difficulty_bucket(1199) == "800-1199"
    assert difficulty_bucket(1600) == "1600-1999"
    assert difficulty_bucket(2.0) == "2"


def _loads(code: str) -> list[str]:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "; import json, sys; print(json.dumps("
                          "sorted(m for m, v in sys.modules.items() if v is not None and "
                          "m.split('.')[0] in ('anyio', 'halo_forge'))))"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_estimator_needs_no_event_loop():
    # anyio made unimportable: the estimator still imports and computes.
    loaded = _loads("import sys; sys.modules['anyio'] = None; "
                    "from halo_forge.pass_at_k import pass_at_k; assert abs(pass_at_k(4, 2, 2) - 5/6) < 1e-12")
    assert "halo_forge.pass_at_k" in loaded
    assert [m for m in loaded if m.startswith("anyio")] == []


def test_the_benchmark_modules_import_in_one_direction():
    # records <- report <- eval: reading or comparing runs never loads the evaluation.
    assert not [m for m in _loads("import halo_forge.benchmark_records")
                if m.startswith(("halo_forge.benchmark_report", "halo_forge.benchmark_eval"))]
    assert "halo_forge.benchmark_eval" not in _loads("import halo_forge.benchmark_report")
