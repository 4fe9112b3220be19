"""The statistics claims are decided with: seeded, deterministic, paired on the same images where possible.

- :func:`resample` and :func:`percentile_interval`: the percentile bootstrap (Efron), images resampled with
  replacement from ``numpy.random.default_rng(seed)``; every model is resampled with the *same* indices, so
  differences and rank correlations between models stay paired on the same images.
- :func:`paired_difference`: mean of per-image differences with its bootstrap interval and a two-sided
  sign-flip permutation p-value (exact when ``2**n`` is small, else Monte-Carlo), the paired test that needs
  no normality (equal to ``scipy.stats.permutation_test(..., permutation_type="samples")``).
- :func:`spearman_test`: Spearman's ρ with a permutation p-value over few points (models), from
  :func:`robustxai.metrics.spearman_permutation`; :func:`spearman_bootstrap` its interval over
  images (per-model means recomputed on each resample of the images).
- :func:`tost`: Schuirmann's two one-sided t-tests for equivalence within ``±margin``.
- :func:`clopper_pearson`: the exact binomial interval of a proportion (a bootstrap interval of a share of
  0 of 4 would be the point ``[0, 0]``, which claims certainty four images cannot give).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from robustxai._errors import RobustXAIError
from robustxai.metrics._statistics import spearman_permutation

__all__ = [
    "ALPHA",
    "LEVEL",
    "N_BOOT",
    "N_PERMUTATIONS",
    "SEED",
    "PairedDifference",
    "Tost",
    "clopper_pearson",
    "paired_difference",
    "percentile_interval",
    "resample",
    "spearman_bootstrap",
    "spearman_test",
    "tost",
]

#: Significance level of every test (two-sided unless said otherwise), and the interval's confidence level.
ALPHA = 0.05
LEVEL = 1.0 - ALPHA
#: Bootstrap resamples: enough that the 2.5 % and 97.5 % percentiles move by < 0.01 between seeds here.
N_BOOT = 2000
#: Permutations of a Monte-Carlo permutation test (and the bound under which it is exact).
N_PERMUTATIONS = 10_000
#: The one seed of every resampling, so the same run always gives the same claims table.
SEED = 0
#: Relative tolerance under which a permuted statistic counts as equal to the observed one (as SciPy's).
_REL_TOL = 100 * np.finfo(np.float64).eps


def resample(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """Bootstrap indices ``[n_boot, n]`` into ``n`` images, drawn with replacement from ``seed``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap draws (NaN draws dropped; ``(nan, nan)`` when none is left)."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(finite, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return (float(low), float(high))


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-image differences ``a − b`` with its percentile-bootstrap interval and sign-flip p."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def _sign_flip_p(d: np.ndarray, n_permutations: int, seed: int) -> float:
    """Two-sided p of the sum of ``d`` under random sign flips.

    Zero differences flip to themselves, so only the ``m`` non-zero ones count. The test is exact when
    ``2**m ≤ n_permutations`` (every sign pattern) or when all non-zero differences have one magnitude
    (0/1 outcomes: the sum is ``±|d|(2K − m)`` with K binomial(m, ½), the exact McNemar test); otherwise
    Monte-Carlo with ``(count + 1) / (n_permutations + 1)``.
    """
    d = d[d != 0.0]
    m = d.size
    observed = abs(float(d.sum()))
    if observed == 0.0:
        return 1.0
    threshold = observed * (1.0 - _REL_TOL)
    magnitude = np.abs(d)
    if np.allclose(magnitude, magnitude[0], rtol=1e-12, atol=0.0):
        k = np.arange(m + 1)
        extreme = np.abs(2 * k - m) * magnitude[0] >= threshold
        return float(min(1.0, sps.binom.pmf(k[extreme], m, 0.5).sum()))
    if 2**m <= n_permutations:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
        return float(np.mean(np.abs(signs @ d) >= threshold))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([1.0, -1.0]), size=(n_permutations, m))
    count = int(np.sum(np.abs(signs @ d) >= threshold))
    return (count + 1) / (n_permutations + 1)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    n_permutations: int = N_PERMUTATIONS,
) -> PairedDifference:
    """Mean of ``a − b`` over the images where both are defined, its 95 % interval and its p-value.

    Args:
        a: Per-image values of the first condition (e.g. 0/1 correct of the attention model).
        b: The same images' values of the second condition, in the same order.
        n_boot: Bootstrap resamples of the images.
        seed: Seed of the resampling and of a Monte-Carlo permutation test.
        n_permutations: Sign flips drawn when ``2**n`` exceeds it; below, all ``2**n`` are enumerated.

    Returns:
        The mean difference, its percentile-bootstrap interval, the two-sided sign-flip p-value, and ``n``.
        With no complete pair everything is NaN and ``n`` is 0; with one, the interval is NaN.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise RobustXAIError(f"paired values need the same shape, got {x.shape} and {y.shape}")
    d = (x - y)[np.isfinite(x) & np.isfinite(y)]
    n = int(d.size)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, n)
    low, high = percentile_interval(d[resample(n, n_boot, seed)].mean(axis=1))
    return PairedDifference(mean, low, high, _sign_flip_p(d, n_permutations, seed), n)


def spearman_test(x: np.ndarray, y: np.ndarray, n_permutations: int = N_PERMUTATIONS) -> tuple[float, float]:
    """Spearman's ρ of paired points and its two-sided permutation p (exact for ≤ 7 points).

    Returns ``(nan, nan)`` for fewer than 3 complete points or a constant variable.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if int(np.sum(np.isfinite(a) & np.isfinite(b))) < 3:
        return (math.nan, math.nan)
    rho, p, _ = spearman_permutation(a, b, n_permutations=n_permutations, seed=SEED)
    return (rho, p)


def _row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of ``x`` and ``y`` ``[B, k]`` (NaN for a constant row)."""
    rx = sps.rankdata(x, axis=1)  # average ranks for ties, as spearman_permutation's rankdata
    ry = sps.rankdata(y, axis=1)
    cx = rx - rx.mean(axis=1, keepdims=True)
    cy = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((cx * cx).sum(axis=1) * (cy * cy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (cx * cy).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def spearman_bootstrap(
    x: np.ndarray, y: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[float, float]:
    """Percentile interval of Spearman's ρ over models when the images are resampled.

    Args:
        x: Per-model, per-image values ``[k, n_x]`` of the first variable (e.g. 0/1 correct under attack).
        y: Per-model, per-image values ``[k, n_y]`` of the second (e.g. point coverage; NaN = undefined).

    Every model's images are resampled with the same indices (one draw for ``x``'s images, one for
    ``y``'s), the per-model means recomputed, and ρ taken over the ``k`` models. Resamples where a variable
    is constant over the models (ρ undefined) or a model has no defined value are dropped.
    """
    xm, ym = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ix = resample(xm.shape[1], n_boot, seed)
    iy = resample(ym.shape[1], n_boot, seed + 1)
    with warnings.catch_warnings():  # an all-NaN resample of a model is dropped below, not an error
        warnings.simplefilter("ignore", category=RuntimeWarning)
        bx = np.nanmean(xm[:, ix], axis=2).T
        by = np.nanmean(ym[:, iy], axis=2).T
    keep = np.isfinite(bx).all(axis=1) & np.isfinite(by).all(axis=1)
    return percentile_interval(_row_spearman(bx[keep], by[keep]))


@dataclass(frozen=True)
class Tost:
    """Two one-sided t-tests for ``|mean| < margin`` (Schuirmann 1987)."""

    mean: float
    margin: float
    p_lower: float
    p_upper: float
    n: int

    @property
    def p_value(self) -> float:
        """The TOST p-value: the larger of the two one-sided ones (equivalence when it is below α)."""
        return max(self.p_lower, self.p_upper)


def tost(differences: np.ndarray, margin: float) -> Tost:
    """Equivalence of the mean of ``differences`` to 0 within ``±margin`` by two one-sided t-tests.

    ``p_lower`` tests H0: mean ≤ −margin against mean > −margin, ``p_upper`` H0: mean ≥ margin against
    mean < margin (each ``scipy.stats.ttest_1samp`` one-sided). When every difference is the same the
    t statistic is undefined; the p-values are then 0 (the mean lies inside the margin) or 1 (it does not).

    Raises:
        RobustXAIError: If ``margin`` is not positive.
    """
    if not margin > 0:
        raise RobustXAIError(f"the equivalence margin must be positive, got {margin!r}")
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n < 2:
        return Tost(float(d.mean()) if n else math.nan, margin, math.nan, math.nan, n)
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        p_low = 0.0 if mean > -margin else 1.0
        p_up = 0.0 if mean < margin else 1.0
        return Tost(mean, margin, p_low, p_up, n)
    df = n - 1
    p_low = float(sps.t.sf((mean + margin) / se, df))
    p_up = float(sps.t.cdf((mean - margin) / se, df))
    return Tost(mean, margin, p_low, p_up, n)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a proportion ``k / n``; ``(nan, nan)`` when ``n`` is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return (low, high)
