"""Dataset-level statistics over per-sample metric values.

Metrics return one value per sample; the audit and the report aggregate them. The bootstrap here gives the
confidence interval that tables print next to each mean; the Spearman permutation test backs claims such as
Secure Diagnostics' "robustness correlates with alignment across models", where only a handful of models
(points) exist and an asymptotic p-value would not be trustworthy.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from robustxai._errors import RobustXAIError

# Resampled index matrices are drawn in blocks of about this many entries to bound memory.
_BLOCK_ENTRIES = 2_000_000


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap confidence interval.

    NaN values (undefined per-sample metrics, e.g. images without ground truth) are dropped first. The
    interval is the ``(1 − level)/2`` and ``(1 + level)/2`` percentiles (numpy's default, linear) of the
    means of ``n_boot`` resamples with replacement. The resamples come from
    ``numpy.random.default_rng(seed)``, so the same values and seed always give the same interval.

    Args:
        values: Per-sample values, any shape (flattened).
        n_boot: Number of bootstrap resamples, ≥ 1.
        level: Confidence level in (0, 1).
        seed: Seed of the resampling generator.

    Returns:
        ``(mean, low, high)``; with fewer than two non-NaN values the interval is ``(nan, nan)`` (and the
        mean is NaN when there is none).

    Raises:
        RobustXAIError: If the values are not numeric or the arguments are out of range.
    """
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise RobustXAIError("values must be numeric") from None
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise RobustXAIError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (0.0 < float(level) < 1.0):
        raise RobustXAIError(f"level must be in (0, 1), got {level!r}")
    arr = arr[~np.isnan(arr)]
    if np.isinf(arr).any():
        raise RobustXAIError("values contain infinite entries")
    n = arr.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return (mean, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ENTRIES // n)
    means = np.empty(int(n_boot), dtype=np.float64)
    for start in range(0, int(n_boot), block):
        stop = min(start + block, int(n_boot))
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - float(level)) / 2.0
    low, high = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return (mean, float(low), float(high))


# Relative tolerance under which a permuted statistic counts as equal to the observed one (as in
# ``scipy.stats.permutation_test``): float sums of the same ranks in another order differ in the last bits.
_REL_TOL = 100 * np.finfo(np.float64).eps


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, tied values sharing the average of their ranks (``scipy`` "average").

    Args:
        values: 1-D numeric array without NaN.

    Returns:
        Float64 array of the same length.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start of each run of equal values, in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        a = np.asarray(x, dtype=np.float64).ravel()
        b = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise RobustXAIError("x and y must be numeric") from None
    if a.size != b.size:
        raise RobustXAIError(f"x and y must have the same length, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if np.isinf(a).any() or np.isinf(b).any():
        raise RobustXAIError("x and y contain infinite entries")
    return a, b


def spearman_permutation(
    x: np.ndarray, y: np.ndarray, n_permutations: int = 10000, seed: int = 0
) -> tuple[float, float, int]:
    """Spearman rank correlation with a two-sided permutation p-value.

    ``rho`` is Pearson's r between the average ranks of ``x`` and of ``y`` (equal to
    ``scipy.stats.spearmanr``, ties included). The p-value is the share of pairings of the ``y`` ranks with
    the ``x`` ranks whose ``|rho|`` is at least the observed ``|rho|`` (within a relative tolerance of
    100 float64 epsilons, like ``scipy.stats.permutation_test``):

    - **exact** when ``n! ≤ n_permutations``: every permutation is enumerated once (n ≤ 7 at the default);
    - otherwise **Monte-Carlo**: ``n_permutations`` random permutations from
      ``numpy.random.default_rng(seed)``, and ``p = (count + 1) / (n_permutations + 1)`` (Phipson & Smyth
      2010), so p is never 0 and the test keeps its level.

    Pairs where either value is NaN are dropped first.

    Args:
        x: Values of the first variable, e.g. robust accuracy per model.
        y: Paired values of the second variable, e.g. mean alignment per model.
        n_permutations: Monte-Carlo permutations, and the bound under which the test is exact; ≥ 1.
        seed: Seed of the permutation generator (unused by the exact test).

    Returns:
        ``(rho, p_value, n)`` with ``n`` the number of pairs used; ``rho`` and ``p_value`` are NaN when
        ``x`` or ``y`` is constant (the correlation is undefined).

    Raises:
        RobustXAIError: With fewer than 3 complete pairs (two points are always perfectly ranked), on
            lengths that differ, non-numeric or infinite values, or a bad ``n_permutations``.
    """
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer):
        raise RobustXAIError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    if n_permutations < 1:
        raise RobustXAIError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    a, b = _paired(x, y)
    n = int(a.size)
    if n < 3:
        raise RobustXAIError(
            f"spearman_permutation needs at least 3 complete (x, y) pairs, got {n}; "
            "with fewer, any ranking is perfect and no p-value is meaningful"
        )
    rx = rankdata(a)
    ry = rankdata(b)
    cx = rx - rx.mean()
    cy = ry - ry.mean()
    denom = math.sqrt(float(cx @ cx) * float(cy @ cy))
    if denom == 0.0:
        return (math.nan, math.nan, n)
    rho = float(np.clip(cx @ cy / denom, -1.0, 1.0))
    threshold = abs(rho) * (1.0 - _REL_TOL)
    count = 0
    block = max(1, _BLOCK_ENTRIES // n)
    total = math.factorial(n)
    if total <= n_permutations:
        perms = itertools.permutations(range(n))
        while chunk := list(itertools.islice(perms, block)):
            idx = np.array(chunk, dtype=np.intp)
            count += int(np.sum(np.abs(cy[idx] @ cx) / denom >= threshold))
        return (rho, count / total, n)
    rng = np.random.default_rng(seed)
    for start in range(0, int(n_permutations), block):
        m = min(block, int(n_permutations) - start)
        shuffled = rng.permuted(np.broadcast_to(cy, (m, n)), axis=1)
        count += int(np.sum(np.abs(shuffled @ cx) / denom >= threshold))
    p = (count + 1) / (int(n_permutations) + 1)
    return (rho, float(p), n)
