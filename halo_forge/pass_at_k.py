"""The unbiased pass@k estimator (Chen et al., 2021): numbers in, numbers out.

pass@k = E_problems[1 - C(n-c, k) / C(n, k)], where n is the number of samples of a problem
and c how many passed all its tests. compile@k is the same estimator with c = how many
compiled. Nothing here knows about models, verifiers or event loops (numpy only), so the
estimator can be checked, and reused, alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from halo_forge.errors import HaloError


def _check(n: int, c: int, k: int) -> None:
    if n < 1:
        raise HaloError(f"pass@k needs at least one sample, got n={n}")
    if not 0 <= c <= n:
        raise HaloError(f"pass@k: c={c} correct samples out of n={n} is impossible")
    if not 1 <= k <= n:
        raise HaloError(f"pass@{k} needs k in 1..n={n} samples per problem; sample more "
                        f"(--samples >= {k}) or drop k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k), k <= n.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials telescopes into c
    factors, each in [0, 1), so nothing overflows however large n is."""
    n, c, k = int(n), int(c), int(k)
    _check(n, c, k)
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_array(n: Any, c: Any, k: int) -> np.ndarray:
    """pass@k per problem for arrays of n and c (a scalar broadcasts), as float64.

    The product of pass_at_k in log space: log C(n-c,k)/C(n,k) = S(n) - S(n-c) with
    S(m) = sum_{i=k+1}^{m} log1p(-k/i), one cumulative sum shared by every problem."""
    n_arr, c_arr = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64))
    k = int(k)
    if n_arr.size == 0:
        return np.zeros(n_arr.shape, dtype=np.float64)
    for n_i, c_i in zip(n_arr.ravel().tolist(), c_arr.ravel().tolist()):
        _check(n_i, c_i, k)  # the first bad problem names its numbers
    top = int(n_arr.max())
    i = np.arange(1, top + 1, dtype=np.float64)
    terms = np.where(i > k, np.log1p(-k / np.maximum(i, k + 1)), 0.0)
    cumulative = np.concatenate(([0.0], np.cumsum(terms)))  # cumulative[m] = S(m)
    all_hit = (n_arr - c_arr) < k
    lower = np.where(all_hit, n_arr, n_arr - c_arr)  # any index: masked below
    log_miss = cumulative[n_arr] - cumulative[lower]
    return np.where(all_hit, 1.0, -np.expm1(log_miss))


def check_ks(ks: Sequence[int], samples: int) -> list[int]:
    """Sorted, distinct ks, each within 1..samples (a HaloError names the first that is not)."""
    if samples < 1:
        raise HaloError(f"--samples must be at least 1, got {samples}")
    out = sorted({int(k) for k in ks})
    if not out:
        raise HaloError("no k given: pass --k 1,5,10 (each k <= --samples)")
    for k in out:
        if k < 1:
            raise HaloError(f"k must be at least 1, got {k}")
        if k > samples:
            raise HaloError(f"pass@{k} needs at least {k} samples per problem but --samples is "
                            f"{samples}: raise --samples or drop k={k}")
    return out


__all__ = ["check_ks", "pass_at_k", "pass_at_k_array"]
