"""Pointing game and relevance mass against Quantus 0.6; per-label AUC and accuracy against scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import robustxai.metrics as M
from robustxai import RobustXAIError

quantus = pytest.importorskip("quantus")
sk_metrics = pytest.importorskip("sklearn.metrics")


def _quantus(metric_cls: type, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Run a Quantus localisation metric on given maps and masks (no model is called)."""
    b = maps.shape[0]
    metric = metric_cls(normalise=False, abs=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=None,
            x_batch=np.zeros((b, 1) + maps.shape[1:]),
            y_batch=np.zeros(b, dtype=int),
            a_batch=maps[:, None].astype(np.float64),
            s_batch=masks[:, None].astype(np.float64),
        )
    return np.asarray(scores, dtype=np.float64)


def _random_case(seed: int, b: int = 6, h: int = 12, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = rng.random((b, h, w))
    masks = rng.random((b, h, w)) > 0.75
    masks[:, 0, 0] = True  # never empty
    return maps, masks


# --------------------------------------------------------------------------- pointing game


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pointing_game_equals_quantus(seed: int) -> None:
    maps, masks = _random_case(seed)
    ours = M.pointing_game(torch.from_numpy(maps), torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(ours, _quantus(quantus.PointingGame, maps, masks))
    assert set(np.unique(ours)) <= {0.0, 1.0}


def test_pointing_game_ties_match_quantus_any_rule() -> None:
    # Quantised maps with several maxima per image: Quantus counts a hit if any maximum is on the mask.
    rng = np.random.default_rng(5)
    maps = rng.integers(0, 3, size=(8, 6, 6)).astype(np.float64)
    masks = rng.random((8, 6, 6)) > 0.6
    masks[:, 5, 5] = True
    ours = M.pointing_game(torch.from_numpy(maps), torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(ours, _quantus(quantus.PointingGame, maps, masks))
    # The strict rule differs on at least one of these images and is never more lenient.
    strict = M.pointing_game(torch.from_numpy(maps), torch.from_numpy(masks), ties="all").numpy()
    assert (strict <= ours).all() and (strict < ours).any()


def test_pointing_game_hand_examples() -> None:
    maps = torch.zeros(3, 5, 5)
    maps[0, 1, 3] = 1.0  # peak at row 1, col 3 → (x, y) = (3, 1)
    maps[1, 4, 0] = 1.0
    # Image 2 is constant: every pixel is a maximum.
    masks = torch.zeros(3, 5, 5, dtype=torch.bool)
    masks[0, 1, 3] = True
    masks[1, 0, 0] = True
    masks[2, 2, 2] = True
    np.testing.assert_array_equal(M.pointing_game(maps, masks).numpy(), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(M.pointing_game(maps, masks, ties="all").numpy(), [1.0, 0.0, 0.0])
    # Points: a hit within the radius (Euclidean distance ≤ r), a miss just beyond it.
    pts = [np.array([[3.0, 3.0]]), np.array([[0.0, 1.0]]), np.zeros((0, 2))]
    got = M.pointing_game(maps, points=pts, radius=2.0).numpy()
    assert got[0] == 1.0 and got[1] == 0.0 and math.isnan(got[2])
    assert M.pointing_game(maps, points=pts, radius=1.99).numpy()[0] == 0.0
    assert M.pointing_game(maps, points=[np.array([[3.0, 1.0]])] * 3, radius=0.0).numpy()[0] == 1.0
    # Mask and points together: the union is the target; NaN only with neither.
    empty = torch.zeros(3, 5, 5, dtype=torch.bool)
    both = M.pointing_game(maps, empty, points=pts, radius=2.0).numpy()
    assert both[0] == 1.0 and both[1] == 0.0 and math.isnan(both[2])
    union = M.pointing_game(maps, masks, points=pts, radius=2.0).numpy()
    np.testing.assert_array_equal(union, [1.0, 0.0, 1.0])


def test_pointing_game_empty_mask_is_nan() -> None:
    maps = torch.rand(2, 4, 4)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[1] = True
    out = M.pointing_game(maps, masks)
    assert math.isnan(float(out[0])) and float(out[1]) == 1.0 and out.dtype == torch.float64


def test_pointing_game_bad_input() -> None:
    maps = torch.rand(2, 4, 4)
    with pytest.raises(RobustXAIError, match="needs ground truth"):
        M.pointing_game(maps)
    with pytest.raises(RobustXAIError, match="ties"):
        M.pointing_game(maps, torch.ones(2, 4, 4, dtype=torch.bool), ties="first")  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="radius"):
        M.pointing_game(maps, points=[np.zeros((1, 2))] * 2, radius=-1)
    with pytest.raises(RobustXAIError, match="radius"):
        M.pointing_game(maps, points=[np.zeros((1, 2))] * 2, radius="far")  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="2 images"):
        M.pointing_game(maps, points=[np.zeros((1, 2))])
    with pytest.raises(RobustXAIError, match=r"\[N, 2\]"):
        M.pointing_game(maps, points=[np.zeros((1, 3))] * 2)
    with pytest.raises(RobustXAIError, match="does not match"):
        M.pointing_game(maps, torch.ones(2, 5, 4, dtype=torch.bool))
    with pytest.raises(RobustXAIError, match="boolean"):
        M.pointing_game(maps, torch.full((2, 4, 4), 0.5))
    with pytest.raises(RobustXAIError, match="NaN"):
        M.pointing_game(torch.full((1, 4, 4), math.nan), torch.ones(1, 4, 4, dtype=torch.bool))


# --------------------------------------------------------------------------- relevance mass


@pytest.mark.parametrize("seed", [0, 3])
def test_relevance_mass_equals_quantus(seed: int) -> None:
    maps, masks = _random_case(seed)
    ours = M.relevance_mass(torch.from_numpy(maps), torch.from_numpy(masks)).numpy()
    np.testing.assert_allclose(ours, _quantus(quantus.RelevanceMassAccuracy, maps, masks), rtol=1e-12)


def test_relevance_mass_counts_positive_attribution_only() -> None:
    rng = np.random.default_rng(4)
    signed = rng.normal(size=(4, 8, 8))
    masks = rng.random((4, 8, 8)) > 0.5
    ours = M.relevance_mass(torch.from_numpy(signed), torch.from_numpy(masks)).numpy()
    ref = _quantus(quantus.RelevanceMassAccuracy, np.clip(signed, 0.0, None), masks)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert ((ours >= 0) & (ours <= 1)).all()


def test_relevance_mass_hand_examples_and_nan() -> None:
    maps = torch.tensor([[[1.0, 3.0], [0.0, -5.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    masks = torch.tensor(
        [[[False, True], [False, True]], [[True, False], [False, False]]] + [[[False] * 2] * 2]
    )
    out = M.relevance_mass(maps, masks).numpy()
    assert out[0] == pytest.approx(0.75)  # 3 of the positive mass 1 + 3; the −5 does not count
    assert math.isnan(out[1]) and math.isnan(out[2])  # no positive mass; empty mask
    # One [H, W] mask broadcasts to every image and float32 maps work.
    one = M.relevance_mass(maps[:1].float(), masks[0])
    assert one.dtype == torch.float64 and float(one[0]) == pytest.approx(0.75)


def test_relevance_mass_bad_input() -> None:
    with pytest.raises(RobustXAIError, match=r"\[B, H, W\]"):
        M.relevance_mass(torch.rand(4, 4), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(RobustXAIError, match="does not match"):
        M.relevance_mass(torch.rand(1, 4, 4), torch.ones(1, 3, 4, dtype=torch.bool))
    with pytest.raises(RobustXAIError, match="masks must be"):
        M.relevance_mass(torch.rand(1, 4, 4), [[True]])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- AUC and label accuracy


def test_auc_multilabel_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(40, 4)), 1)  # coarse values: many ties
    labels = (rng.random((40, 4)) < 0.4).astype(np.float32)
    ours = M.auc(torch.from_numpy(logits), torch.from_numpy(labels)).numpy()
    ref = [sk_metrics.roc_auc_score(labels[:, k], logits[:, k]) for k in range(4)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # Sigmoid probabilities give the same AUC (order is all that matters).
    probs = M.auc(torch.sigmoid(torch.from_numpy(logits)), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(probs, ours, atol=1e-12)


def test_auc_binary_and_multiclass() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(size=30)
    y = (rng.random(30) < 0.5).astype(np.int64)
    ref = sk_metrics.roc_auc_score(y, score)
    for s in (torch.from_numpy(score), torch.from_numpy(score)[:, None]):
        out = M.auc(s, torch.from_numpy(y))
        assert out.shape == (1,) and float(out[0]) == pytest.approx(ref, abs=1e-12)
    # Two logits: softmax P(class 1) is monotone in l1 − l0; both one-vs-rest entries equal that AUC.
    two = np.stack([np.zeros(30), score], axis=1) + rng.normal(size=(30, 1))
    out2 = M.auc(torch.from_numpy(two), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(out2, [ref, ref], atol=1e-12)
    # Three classes: one-vs-rest on softmax probabilities, as sklearn computes per class.
    logits3 = rng.normal(size=(45, 3)) * 3
    y3 = rng.integers(0, 3, size=45)
    p3 = torch.softmax(torch.from_numpy(logits3), dim=1).numpy()
    ref3 = [sk_metrics.roc_auc_score(y3 == k, p3[:, k]) for k in range(3)]
    np.testing.assert_allclose(
        M.auc(torch.from_numpy(logits3), torch.from_numpy(y3)).numpy(), ref3, atol=1e-12
    )


def test_auc_hand_values_and_single_class_nan() -> None:
    scores = torch.tensor([[0.1, 0.5], [0.4, 0.5], [0.35, 0.5], [0.8, 0.5]])
    labels = torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1]])
    out = M.auc(scores, labels)
    assert float(out[0]) == pytest.approx(0.75)  # textbook example: 3 of 4 pairs ordered
    assert math.isnan(float(out[1]))  # only positives: undefined
    ties = M.auc(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 1, 0]))
    assert float(ties[0]) == 0.5


def test_label_accuracy() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [-0.5, 3.0, 0.1], [1.0, 1.0, -2.0], [-1.0, -1.0, 5.0]])
    labels = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    out = M.label_accuracy(logits, labels)
    expected = ((logits > 0).long() == labels).double().mean(dim=0)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, torch.tensor([0.75, 0.75, 1.0], dtype=torch.float64))


def test_auc_and_label_accuracy_bad_input() -> None:
    with pytest.raises(RobustXAIError, match="torch.Tensor"):
        M.auc(np.zeros((3, 2)), torch.zeros(3, 2))  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="floating point"):
        M.auc(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(RobustXAIError, match="NaN"):
        M.auc(torch.tensor([0.0, math.nan]), torch.tensor([0, 1]))
    with pytest.raises(RobustXAIError, match="only 0 and 1"):
        M.auc(torch.zeros(3, 2), torch.full((3, 2), 2.0))
    with pytest.raises(RobustXAIError, match="2 columns"):
        M.auc(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(RobustXAIError, match="need scores"):
        M.auc(torch.zeros(3), torch.zeros(3, 2))
    with pytest.raises(RobustXAIError, match="0 or 1"):
        M.auc(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(RobustXAIError, match="< 3"):
        M.auc(torch.zeros(3, 3), torch.tensor([0, 1, 3]))
    with pytest.raises(RobustXAIError, match=r"\[B, K\]"):
        M.label_accuracy(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(RobustXAIError, match="only 0 and 1"):
        M.label_accuracy(torch.zeros(3, 1), torch.full((3, 1), 0.5))


# --------------------------------------------------------------------------- registry


def test_new_metrics_are_registered_with_direction() -> None:
    expected = {
        "pointing_game": (M.pointing_game, True, "truth", "sample"),
        "relevance_mass": (M.relevance_mass, True, "mask", "sample"),
        "auc": (M.auc, True, "labels", "label"),
        "label_accuracy": (M.label_accuracy, True, "labels", "label"),
        "spearman": (M.spearman_permutation, True, "values_pair", "set"),
    }
    for name, (fn, higher, needs, per) in expected.items():
        info = M.get_metric(name)
        assert (info.fn, info.higher_is_better, info.needs, info.per) == (fn, higher, needs, per)
    assert M.get_metric("rmse").per == "sample" and not M.get_metric("rmse").higher_is_better


def test_pointing_game_points_equal_brute_force() -> None:
    rng = np.random.default_rng(7)
    maps = rng.integers(0, 4, size=(10, 9, 11)).astype(np.float32)  # ties on purpose
    masks = rng.random((10, 9, 11)) > 0.85
    points = [rng.uniform(-2, 12, size=(int(rng.integers(0, 4)), 2)) for _ in range(10)]
    radius = 1.5
    rows, cols = np.mgrid[0:9, 0:11]
    for ties in ("any", "all"):
        got = M.pointing_game(torch.from_numpy(maps), torch.from_numpy(masks), points, radius, ties).numpy()
        for i in range(10):
            target = masks[i].copy()
            for x, y in points[i]:
                target |= np.hypot(cols - x, rows - y) <= radius
            peak = maps[i] == maps[i].max()
            if not masks[i].any() and len(points[i]) == 0:
                assert math.isnan(got[i])
            else:
                assert got[i] == float(target[peak].any() if ties == "any" else target[peak].all())
