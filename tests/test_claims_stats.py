"""The claims' statistics against SciPy: permutation p-values exactly, bootstrap intervals within Monte-Carlo
error, TOST as two one-sided ``ttest_1samp``, Clopper–Pearson as ``binomtest``'s exact interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robustxai import RobustXAIError
from robustxai.claims._stats import (
    clopper_pearson,
    paired_difference,
    percentile_interval,
    resample,
    spearman_bootstrap,
    spearman_test,
    tost,
)

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.claims._stats, robustxai.claims._trust_auc"


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def test_sign_flip_p_is_scipys_exact_paired_permutation_test() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.3, 1.0, 11)
    b = rng.normal(0.0, 1.0, 11)
    ours = paired_difference(a, b)
    ref = sps.permutation_test(
        (a, b), _mean_diff, permutation_type="samples", n_resamples=np.inf, vectorized=True
    )
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert ours.mean == pytest.approx(float(np.mean(a - b)))
    assert ours.n == 11


def test_sign_flip_p_of_binary_differences_counts_ties_like_scipy() -> None:
    """0/1 correctness gives many equal permuted statistics: the tolerance must count them as SciPy does."""
    a = np.array([1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=float)
    b = np.array([0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1], dtype=float)
    ref = sps.permutation_test(
        (a, b), _mean_diff, permutation_type="samples", n_resamples=np.inf, vectorized=True
    )
    assert paired_difference(a, b).p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_p_of_many_binary_differences_is_the_exact_mcnemar_test() -> None:
    """200 images of 0/1 correctness: the sign-flip test is the exact binomial test of discordant pairs."""
    rng = np.random.default_rng(7)
    a = (rng.random(200) < 0.6).astype(float)
    b = (rng.random(200) < 0.5).astype(float)
    gains, losses = int(np.sum(a > b)), int(np.sum(a < b))
    ref = sps.binomtest(gains, gains + losses, 0.5).pvalue
    assert paired_difference(a, b).p_value == pytest.approx(ref, rel=1e-9)


def test_monte_carlo_sign_flip_p_is_close_to_the_exact_one() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.5, 1.0, 15), rng.normal(0.0, 1.0, 15)  # 2**15 > 10 000: Monte-Carlo
    ref = sps.permutation_test(
        (a, b), _mean_diff, permutation_type="samples", n_resamples=np.inf, vectorized=True
    )
    assert paired_difference(a, b).p_value == pytest.approx(ref.pvalue, abs=0.015)


def test_paired_bootstrap_interval_matches_scipys_percentile_bootstrap() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0.2, 1.0, 60)
    b = a + rng.normal(-0.1, 0.3, 60)  # strongly paired: resampling must keep the pairs together
    ours = paired_difference(a, b, n_boot=20_000)
    ref = sps.bootstrap(
        (a, b), _mean_diff, paired=True, vectorized=True, n_resamples=20_000, method="percentile",
        random_state=np.random.default_rng(0),
    )  # fmt: skip
    sd = float(np.std(a - b, ddof=1))
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.03 * sd)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.03 * sd)
    unpaired_width = 2 * 1.96 * math.sqrt(np.var(a, ddof=1) / 60 + np.var(b, ddof=1) / 60)
    assert ours.ci_high - ours.ci_low < 0.5 * unpaired_width


def test_statistics_are_deterministic() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert paired_difference(a, b) == paired_difference(a, b)
    assert (resample(9) == resample(9)).all()
    x, y = rng.normal(size=(6, 20)), rng.normal(size=(6, 25))
    assert spearman_bootstrap(x, y) == spearman_bootstrap(x, y)


def test_paired_difference_drops_incomplete_pairs_and_handles_tiny_inputs() -> None:
    d = paired_difference(np.array([1.0, np.nan, 3.0]), np.array([0.0, 2.0, np.nan]))
    assert d.n == 1 and d.mean == 1.0 and math.isnan(d.ci_low) and math.isnan(d.p_value)
    assert paired_difference(np.array([]), np.array([])).n == 0
    with pytest.raises(RobustXAIError, match="same shape"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_spearman_matches_scipy_rho_and_exact_permutation_p() -> None:
    x = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2])
    y = np.array([0.2, 0.4, 0.5, 0.8, 0.6, 0.1])
    rho, p = spearman_test(x, y)
    assert rho == pytest.approx(sps.spearmanr(x, y).statistic)
    ref = sps.permutation_test(
        (x,), lambda v: sps.spearmanr(v, y).statistic, permutation_type="pairings", n_resamples=np.inf
    )
    assert p == pytest.approx(ref.pvalue, abs=1e-12)
    assert spearman_test(x[:2], y[:2]) == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_spearman_bootstrap_is_the_percentile_interval_of_rho_over_resampled_images() -> None:
    """A naive loop over the same resamples gives the same interval as the vectorised code."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 12)) + np.arange(5)[:, None] * 0.3
    y = rng.normal(size=(5, 9)) + np.arange(5)[:, None] * 0.3
    y[1, 3] = np.nan  # an undefined value (image without points) is skipped in that model's mean
    ix, iy = resample(12, 500, 0), resample(9, 500, 1)
    rhos = []
    for i, j in zip(ix, iy, strict=True):
        mx, my = x[:, i].mean(axis=1), np.nanmean(y[:, j], axis=1)
        rhos.append(sps.spearmanr(mx, my).statistic if np.isfinite(my).all() else np.nan)
    assert spearman_bootstrap(x, y, n_boot=500) == pytest.approx(percentile_interval(np.array(rhos)))


def test_tost_is_two_one_sided_t_tests() -> None:
    rng = np.random.default_rng(6)
    d = rng.normal(0.01, 0.05, 40)
    result = tost(d, 0.05)
    low = sps.ttest_1samp(d, -0.05, alternative="greater").pvalue
    high = sps.ttest_1samp(d, 0.05, alternative="less").pvalue
    assert result.p_lower == pytest.approx(low)
    assert result.p_upper == pytest.approx(high)
    assert result.p_value == pytest.approx(max(low, high))
    assert tost(d + 0.2, 0.05).p_value > 0.5  # shifted well outside the margin: not equivalent


def test_tost_of_constant_differences_and_bad_margin() -> None:
    assert tost(np.full(5, 0.01), 0.05).p_value == 0.0
    assert tost(np.full(5, 0.09), 0.05).p_value == 1.0
    with pytest.raises(RobustXAIError, match="positive"):
        tost(np.zeros(3), 0.0)


@pytest.mark.parametrize(("k", "n"), [(0, 4), (4, 4), (3, 10), (17, 40), (0, 32)])
def test_clopper_pearson_matches_scipy_binomtest(k: int, n: int) -> None:
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(ref.low, abs=1e-9)
    assert high == pytest.approx(ref.high, abs=1e-9)


def test_mean_auc_is_mann_whitney_u_over_n_pos_n_neg_like_metrics_auc() -> None:
    import torch

    from robustxai.claims._trust_auc import mean_auc
    from robustxai.metrics import auc

    rng = np.random.default_rng(8)
    labels = (rng.random((3, 30)) < 0.4).astype(float)
    scores = np.round(rng.random((3, 30)) + 0.3 * labels, 1)  # rounded: ties, counted half
    per_label = [
        sps.mannwhitneyu(s[y > 0.5], s[y < 0.5]).statistic / ((y > 0.5).sum() * (y < 0.5).sum())
        for s, y in zip(scores, labels, strict=True)
    ]
    ours = mean_auc(scores[None], labels[None])[0]
    assert ours == pytest.approx(np.mean(per_label))
    ref = auc(torch.tensor(scores.T), torch.tensor(labels.T)).numpy()
    assert ours == pytest.approx(ref.mean())
    labels[1] = 1.0  # one class only: that label is left out of the mean
    assert mean_auc(scores[None], labels[None])[0] == pytest.approx(np.mean([per_label[0], per_label[2]]))
