"""Spearman permutation test against scipy (rho, exact and Monte-Carlo permutation p-values) and ranks; the
percentile bootstrap against an exact replay of its documented scheme and against scipy.stats.bootstrap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import robustxai.metrics as M
from robustxai import RobustXAIError

stats = pytest.importorskip("scipy.stats")


def _scipy_perm_p(x: np.ndarray, y: np.ndarray, n_resamples: int) -> float:
    """Two-sided p-value as P(|rho*| ≥ |rho|) over pairings, by scipy.stats.permutation_test."""
    ry = stats.rankdata(y)

    def stat(a: np.ndarray, axis: int = -1) -> np.ndarray:
        ra = stats.rankdata(a, axis=axis)
        ca, cy = ra - ra.mean(axis=axis, keepdims=True), ry - ry.mean()
        return np.abs((ca * cy).sum(axis=axis) / np.sqrt((ca * ca).sum(axis=axis) * (cy * cy).sum()))

    assert stat(x) == pytest.approx(abs(stats.spearmanr(x, y).statistic), abs=1e-12)
    res = stats.permutation_test(
        (x,),
        stat,
        permutation_type="pairings",
        n_resamples=n_resamples,
        alternative="greater",
        vectorized=True,
    )
    return float(res.pvalue)


def test_rankdata_equals_scipy_average() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 6, size=25).astype(float)
        np.testing.assert_array_equal(M.rankdata(a), stats.rankdata(a, method="average"))


@pytest.mark.parametrize("n", [3, 5, 7])
def test_exact_p_equals_scipy_permutation_test(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    rho, p, used = M.spearman_permutation(x, y)
    assert used == n
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert p == pytest.approx(_scipy_perm_p(x, y, 10000), abs=1e-12)


def test_exact_p_with_ties_equals_enumeration() -> None:
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 5.0])
    y = np.array([0.3, 0.1, 0.4, 0.4, 0.9, 0.7])
    rho, p, n = M.spearman_permutation(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # Independent enumeration through scipy's own spearmanr on every pairing.
    null = [abs(stats.spearmanr(x, y[list(perm)]).statistic) for perm in itertools.permutations(range(6))]
    expected = np.mean(np.array(null) >= abs(rho) - 1e-12)
    assert p == pytest.approx(expected, abs=1e-12) and n == 6


def test_perfect_ranking_of_four_models() -> None:
    # 4 points in the same order: rho = 1; only the identity and the reversal reach |rho| = 1 → p = 2/24.
    rho, p, n = M.spearman_permutation([0.1, 0.2, 0.5, 0.9], [3, 4, 8, 10])
    assert (rho, n) == (1.0, 4) and p == pytest.approx(2 / 24)


def test_monte_carlo_p_is_close_to_exact_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=9)
    y = 0.5 * x + rng.normal(size=9)
    _, p_exact, _ = M.spearman_permutation(x, y, n_permutations=math.factorial(9))
    rho, p_mc, n = M.spearman_permutation(x, y, n_permutations=4000, seed=1)
    assert n == 9 and rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    se = math.sqrt(p_exact * (1 - p_exact) / 4000)
    assert abs(p_mc - p_exact) < 4 * se + 1 / 4001
    assert M.spearman_permutation(x, y, n_permutations=4000, seed=1) == (rho, p_mc, n)
    # The +1 correction: p is never below 1 / (n_permutations + 1).
    big = np.arange(30.0)
    assert M.spearman_permutation(big, big, n_permutations=200)[1] == pytest.approx(1 / 201)


def test_nan_pairs_dropped_and_constant_is_nan() -> None:
    rho, p, n = M.spearman_permutation([1.0, np.nan, 2.0, 3.0, 4.0], [1.0, 5.0, 3.0, np.nan, 2.0])
    assert n == 3 and rho == pytest.approx(stats.spearmanr([1, 2, 4], [1, 3, 2]).statistic)
    rho_c, p_c, n_c = M.spearman_permutation([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(rho_c) and math.isnan(p_c) and n_c == 4


def test_bad_input() -> None:
    with pytest.raises(RobustXAIError, match="at least 3"):
        M.spearman_permutation([1, 2], [2, 1])
    with pytest.raises(RobustXAIError, match="at least 3"):
        M.spearman_permutation([1, 2, np.nan], [2, 1, 3])
    with pytest.raises(RobustXAIError, match="same length"):
        M.spearman_permutation([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(RobustXAIError, match="numeric"):
        M.spearman_permutation(["a", "b", "c"], [1, 2, 3])
    with pytest.raises(RobustXAIError, match="infinite"):
        M.spearman_permutation([1, 2, np.inf], [1, 2, 3])
    with pytest.raises(RobustXAIError, match="n_permutations"):
        M.spearman_permutation([1, 2, 3], [1, 2, 3], n_permutations=0)
    with pytest.raises(RobustXAIError, match="n_permutations"):
        M.spearman_permutation([1, 2, 3], [1, 2, 3], n_permutations=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- percentile bootstrap


def _replay_bootstrap(values: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float, float]:
    """The scheme ``bootstrap_ci`` documents, written out independently.

    NaN dropped; ``n_boot`` resamples with replacement, each one row of ``default_rng(seed).integers(0, n,
    (n_boot, n))``; the interval is numpy's default (linear, Hyndman-Fan type 7) percentile rule at
    ``(1 ± level) / 2``, here by hand rather than through ``np.percentile``.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[~np.isnan(arr)]
    n = arr.size
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    means = np.sort([math.fsum(arr[row]) / n for row in idx])

    def linear(q: float) -> float:
        h = (n_boot - 1) * q
        lo = math.floor(h)
        hi = min(lo + 1, n_boot - 1)
        return float(means[lo] + (h - lo) * (means[hi] - means[lo]))

    alpha = (1.0 - level) / 2.0
    return math.fsum(arr) / n, linear(alpha), linear(1.0 - alpha)


@pytest.mark.parametrize(
    ("n", "n_boot", "level", "seed", "n_nan"),
    [
        (2, 7, 0.5, 0, 0),
        (31, 1000, 0.95, 3, 4),  # NaN are dropped before the resampling is sized
        (200, 999, 0.9, 12345, 0),
        (1000, 2500, 0.99, 7, 1),  # 2.5 M index entries: drawn by the library in several blocks
    ],
)
def test_bootstrap_ci_equals_an_independent_replay(
    n: int, n_boot: int, level: float, seed: int, n_nan: int
) -> None:
    rng = np.random.default_rng(n)
    values = rng.gamma(2.0, 0.3, size=n)
    values = np.insert(values, rng.integers(0, n, size=n_nan), np.nan)
    got = M.bootstrap_ci(values, n_boot=n_boot, level=level, seed=seed)
    expected = _replay_bootstrap(values, n_boot, level, seed)
    assert got == pytest.approx(expected, abs=1e-12, rel=0)
    assert got[1] < got[2]  # a real interval (n ≥ 2 values that differ)


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap() -> None:
    # Skewed data, so that the percentile interval is visibly asymmetric about the mean: a normal-theory
    # interval (mean ± 1.96 se) or another scheme would miss scipy's by more than the tolerance below.
    values = np.random.default_rng(5).lognormal(0.0, 1.5, size=200)
    mean, low, high = M.bootstrap_ci(values, n_boot=20000, level=0.95, seed=1)
    ref = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=20000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(2),  # another stream: only the scheme is shared
    ).confidence_interval
    spread = ref.high - ref.low
    tol = 0.03 * spread  # Monte-Carlo error of either end is about 0.6 % of the spread at 20 000 resamples
    assert mean == pytest.approx(values.mean(), abs=1e-12)
    assert low == pytest.approx(ref.low, abs=tol) and high == pytest.approx(ref.high, abs=tol)
    # The check discriminates: the symmetric normal-theory interval is outside the tolerance.
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert max(abs(mean - 1.96 * se - ref.low), abs(mean + 1.96 * se - ref.high)) > tol
