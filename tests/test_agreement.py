"""Statistics of rating studies against hand-computed cases and the ``krippendorff`` package."""

from __future__ import annotations

import numpy as np
import pytest

from robustxai import RobustXAIError
from robustxai.metrics._agreement import bradley_terry, krippendorff_alpha, spearman_ci

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.metrics._agreement"


def test_bradley_terry_two_players_by_hand() -> None:
    # A beat B twice, B beat A once: the likelihood 2·log p − 3·log(p + q) peaks at p/q = 2.
    p = bradley_terry(np.array([[0, 2], [1, 0]]))
    assert p[0] / p[1] == pytest.approx(2.0, rel=1e-6) and p.sum() == pytest.approx(1.0)


def test_bradley_terry_three_players_satisfy_the_likelihood_equations() -> None:
    wins = np.array([[0, 3, 2], [1, 0, 2], [1, 1, 0]], dtype=float)
    p = bradley_terry(wins)
    n = wins + wins.T
    for i in range(3):  # at the MLE, each player's wins equal its expected wins
        expected = sum(n[i, j] * p[i] / (p[i] + p[j]) for j in range(3) if j != i)
        assert wins[i].sum() == pytest.approx(expected, rel=1e-6)
    assert p[0] > p[1] > p[2]


def test_bradley_terry_rejects_bad_input_and_marks_unseen() -> None:
    with pytest.raises(RobustXAIError):
        bradley_terry(np.array([[0, -1], [1, 0]]))
    p = bradley_terry(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]))
    assert np.isnan(p[2]) and p[0] == pytest.approx(0.5)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_the_reference_package(level: str) -> None:
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, size=30).astype(float)
    data = np.clip(truth + rng.integers(-1, 2, size=(4, 30)), 1, 5)
    data[rng.random(data.shape) < 0.15] = np.nan
    ours = krippendorff_alpha(data, level)
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert ours == pytest.approx(ref, abs=1e-9)


def test_krippendorff_textbook_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: α = 0.743.
    nan = np.nan
    data = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(np.ones((2, 3)), "interval") != krippendorff_alpha(np.ones((2, 3)), "interval")
    with pytest.raises(RobustXAIError):
        krippendorff_alpha(data, "ratio")


def test_spearman_ci_brackets_rho() -> None:
    x = np.arange(20.0)
    rho, lo, hi, n = spearman_ci(x, x + np.sin(x) * 3, n_boot=300)
    assert n == 20 and lo <= rho <= hi and rho > 0.8
    assert np.isnan(spearman_ci(np.array([1.0, 2.0]), np.array([2.0, 1.0]))[0])
