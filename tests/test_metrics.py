from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from robustxai import RobustXAIError, UnknownNameError, metrics as M

skimage_metrics = pytest.importorskip("skimage.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


def arange_map() -> torch.Tensor:
    """4×4 map with values 0..15 row by row; top 25 % = the last row (values 12..15)."""
    return torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)


# --------------------------------------------------------------------------- top-k mask and coverage


def test_topk_mask_hand_example() -> None:
    mask = M.topk_mask(arange_map(), 0.25)
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 3, :] = True  # percentile 75 of 0..15 is 11.25 → values 12..15
    assert torch.equal(mask, expected)
    assert M.mask_area(arange_map(), 0.25).tolist() == [0.25]
    assert M.topk_mask(arange_map(), 1.0).all()


def test_point_coverage_hand_example() -> None:
    points = [
        np.array(
            [
                [0.0, 3.0],  # row 3 → covered
                [3.0, 0.0],  # row 0 → missed
                [1.4, 2.6],  # rounds to (x=1, y=3) → covered
                [10.0, 10.0],  # outside → ignored
                [-1.0, 2.0],  # outside → ignored
            ]
        )
    ]
    cov = M.point_coverage(arange_map(), points, top=0.25)
    assert cov.dtype == torch.float64
    assert cov.tolist() == pytest.approx([2 / 3])


def test_point_coverage_rounding_and_batches() -> None:
    maps = torch.cat([arange_map(), arange_map().flip(1)])  # second image: top row is the top 25 %
    pts = torch.tensor([[2.0, 2.5]])  # y = 2.5 rounds up to row 3
    cov = M.point_coverage(maps, [pts, pts], top=0.25)
    assert cov.tolist() == [1.0, 0.0]
    # (x, y) order: x is the column. Point at column 3, row 0 is in the top row of image 2 only.
    cov = M.point_coverage(maps, [np.array([[3, 0]]), np.array([[3, 0]])], top=0.25)
    assert cov.tolist() == [0.0, 1.0]


def test_point_coverage_nan_without_valid_points() -> None:
    maps = torch.cat([arange_map()] * 3)
    cov = M.point_coverage(
        maps, [np.zeros((0, 2)), np.array([[99.0, 0.0]]), np.array([[0.0, 3.0]])], top=0.25
    )
    assert math.isnan(cov[0]) and math.isnan(cov[1]) and cov[2] == 1.0


def test_ties_enlarge_the_mask() -> None:
    s = torch.zeros(1, 4, 4, dtype=torch.float64)
    s[0, 0, :] = 1.0
    s[0, 1, :2] = 1.0  # six pixels tie at the maximum
    mask = M.topk_mask(s, 0.25)
    assert int(mask.sum()) == 6
    assert M.mask_area(s, 0.25).tolist() == [0.375]
    cov = M.point_coverage(s, [np.array([[3.0, 0.0], [1.0, 1.0], [3.0, 3.0]])], top=0.25)
    assert cov.tolist() == pytest.approx([2 / 3])
    # A constant map selects every pixel.
    assert M.mask_area(torch.ones(2, 5, 5), 0.05).tolist() == [1.0, 1.0]


@settings(max_examples=200, deadline=None)
@given(
    arr=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
        elements=st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-3, 3).map(float)),
    ),
    top=st.floats(0.0, 1.0, exclude_min=True),
)
def test_topk_mask_matches_numpy_percentile(arr: np.ndarray, top: float) -> None:
    got = M.topk_mask(torch.from_numpy(arr), top).numpy()
    expected = np.stack([s >= np.percentile(s, 100 * (1 - top)) for s in arr])
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=100, deadline=None)
@given(
    arr=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
        elements=st.floats(-1e3, 1e3, allow_nan=False, width=32),
    ),
    top=st.sampled_from([0.05, 0.15, 0.25, 0.85, 1.0, 0.3333]),
)
def test_topk_mask_matches_numpy_percentile_float32(arr: np.ndarray, top: float) -> None:
    got = M.topk_mask(torch.from_numpy(arr), top).numpy()
    expected = np.stack([s >= np.percentile(s, 100 * (1 - top)) for s in arr])
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- IoU and RMSE


def test_topk_iou_hand_example() -> None:
    gt = torch.zeros(2, 4, 4, dtype=torch.bool)
    gt[0, :, 3] = True  # column 3: overlaps the top row in one pixel
    maps = torch.cat([arange_map(), arange_map()])
    iou = M.topk_iou(maps, gt, top=0.25)
    assert iou[0].item() == pytest.approx(1 / 7)
    assert math.isnan(iou[1])  # empty ground truth
    row = np.zeros((4, 4), dtype=bool)
    row[3] = True
    assert M.topk_iou(arange_map(), row, top=0.25).tolist() == [1.0]  # [H, W] numpy mask broadcasts
    assert M.topk_iou(arange_map(), torch.from_numpy(row).int(), top=0.25).tolist() == [1.0]


def test_rmse_hand_example() -> None:
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :, 3] = True
    # Binary map = row 3; it differs from column 3 in 3 + 3 pixels.
    assert M.rmse(arange_map(), gt, top=0.25).item() == pytest.approx(math.sqrt(6 / 16))
    # Normalised map = values / 15.
    norm = np.arange(16).reshape(4, 4) / 15
    expected = np.sqrt(np.mean((gt[0].numpy().astype(float) - norm) ** 2))
    assert M.rmse(arange_map(), gt, top=None).item() == pytest.approx(expected, abs=1e-12)
    assert math.isnan(M.rmse(arange_map(), torch.zeros(1, 4, 4, dtype=torch.bool)).item())


# --------------------------------------------------------------------------- similarity


def _structured(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.2 * max(h, w)) ** 2))
    ramp = (xx + 2 * yy) / (w + 2 * h)
    checker = ((yy // 3 + xx // 3) % 2) * 0.3
    a = blob
    b = np.clip(0.6 * blob + 0.3 * ramp + 0.1 * checker + 0.05 * rng.standard_normal((h, w)), 0, 1)
    return a, b


def _np_minmax(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


SIZES = [(7, 7), (16, 16), (64, 64), (9, 23), (40, 17)]


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_ssim_matches_skimage(shape: tuple[int, int], kind: str) -> None:
    h, w = shape
    rng = np.random.default_rng(h * 100 + w)
    if kind == "random":
        a = rng.uniform(0, 1, (3, h, w))
        b = np.clip(a + rng.normal(0, 0.3, (3, h, w)), 0, 1)
        b[2] = rng.uniform(0, 1, (h, w))
    else:
        pairs = [_structured(h, w, s) for s in range(3)]
        a = np.stack([p[0] for p in pairs])
        b = np.stack([p[1] for p in pairs])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    raw = M.ssim(ta, tb, normalize=False).numpy()
    norm = M.ssim(ta * 3.0 - 1.0, tb * 0.5 + 2.0, normalize=True).numpy()  # affine changes vanish
    for i in range(a.shape[0]):
        ref = skimage_metrics.structural_similarity(a[i], b[i], data_range=1.0)
        ref_n = skimage_metrics.structural_similarity(_np_minmax(a[i]), _np_minmax(b[i]), data_range=1.0)
        assert raw[i] == pytest.approx(ref, abs=1e-6)
        assert norm[i] == pytest.approx(ref_n, abs=1e-6)


def test_ssim_float32_identical_and_small() -> None:
    a = torch.rand(2, 12, 10)
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    assert M.ssim(a, a).dtype == torch.float64
    with pytest.raises(RobustXAIError, match="at least 7"):
        M.ssim(torch.rand(1, 6, 10), torch.rand(1, 6, 10))


def test_minmax() -> None:
    maps = torch.stack([torch.arange(12.0).reshape(3, 4) - 5, torch.full((3, 4), 2.0)])
    out = M.minmax(maps)
    assert out.dtype == maps.dtype
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.equal(out[1], torch.zeros(3, 4))


def test_mse_and_pearson_match_numpy_scipy() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 8, 9))
    b = 0.5 * a + rng.normal(size=(4, 8, 9))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(M.mse(ta, tb, normalize=False).numpy(), ((a - b) ** 2).mean(axis=(1, 2)))
    expected_n = [np.mean((_np_minmax(x) - _np_minmax(y)) ** 2) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(M.mse(ta, tb).numpy(), expected_n, rtol=1e-12)
    expected_r = [scipy_stats.pearsonr(x.ravel(), y.ravel())[0] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(M.pearson(ta.float(), tb.float()).numpy(), expected_r, atol=1e-6)
    np.testing.assert_allclose(M.pearson(ta, tb).numpy(), expected_r, rtol=1e-10)


def test_pearson_constant_is_nan() -> None:
    a = torch.full((2, 7, 7), 0.1, dtype=torch.float64)
    b = torch.rand(2, 7, 7, dtype=torch.float64)
    assert torch.isnan(M.pearson(a, b)).all()
    assert torch.isnan(M.pearson(b, a)).all()


# --------------------------------------------------------------------------- classification


def test_accuracy_logits_and_predictions() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    labels = torch.tensor([0, 1, 1])
    assert M.accuracy(logits, labels).tolist() == [1.0, 1.0, 0.0]
    assert M.accuracy(torch.tensor([0, 0, 1]), labels).tolist() == [1.0, 0.0, 1.0]
    assert M.accuracy(torch.tensor([[-1.0], [2.0]]), torch.tensor([0, 0])).tolist() == [1.0, 0.0]
    assert M.delta_accuracy(0.9, 0.25) == pytest.approx(0.65)
    with pytest.raises(RobustXAIError):
        M.accuracy(logits, torch.tensor([0, 1]))
    with pytest.raises(RobustXAIError):
        M.accuracy(torch.tensor([0.0, 1.0, 1.0]), labels)
    with pytest.raises(RobustXAIError):
        M.delta_accuracy(float("nan"), 0.1)


# --------------------------------------------------------------------------- statistics


def test_bootstrap_ci() -> None:
    values = np.random.default_rng(0).normal(0.7, 0.1, size=200)
    first = M.bootstrap_ci(values, n_boot=500, seed=3)
    assert first == M.bootstrap_ci(values, n_boot=500, seed=3)
    assert first != M.bootstrap_ci(values, n_boot=500, seed=4)
    mean, low, high = first
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert high - low < 0.1
    with_nan = np.concatenate([values, [np.nan, np.nan]])
    assert M.bootstrap_ci(with_nan, n_boot=500, seed=3) == first
    one = M.bootstrap_ci(np.array([0.5, np.nan]))
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in M.bootstrap_ci(np.array([])))
    with pytest.raises(RobustXAIError):
        M.bootstrap_ci(values, level=1.5)


# --------------------------------------------------------------------------- registry and validation


def test_registry() -> None:
    names = M.list_metrics()
    for name in ["accuracy", "point_coverage", "topk_iou", "rmse", "ssim", "mse", "pearson"]:
        assert name in names
    info = M.get_metric("rmse")
    assert info.fn is M.rmse and info.higher_is_better is False and info.needs == "mask"
    assert M.get_metric("ssim").higher_is_better and M.get_metric("ssim").needs == "maps_pair"
    with pytest.raises(UnknownNameError) as err:
        M.get_metric("sism")
    assert "ssim" in str(err.value) and "point_coverage" in str(err.value)


#: Which way is better for every registered metric, written out by hand (not read back from the registry).
#: Errors and distances are lower-is-better; agreement, overlap, hit rates and correlations higher. A metric
#: added to the registry must be added here with its direction, or the test below fails. (``mask_area``
#: describes the top-k region's true size, ties included: it is registered so the audit computes it, with no
#: better direction.)
EXPECTED_DIRECTION = {
    "accuracy": "higher",
    "auc": "higher",
    "label_accuracy": "higher",
    "point_coverage": "higher",
    "pointing_game": "higher",
    "relevance_mass": "higher",
    "topk_iou": "higher",
    "ssim": "higher",
    "pearson": "higher",
    "spearman": "higher",
    "rmse": "lower",
    "mse": "lower",
    "mask_area": "none",
}


@pytest.mark.parametrize("name", M.list_metrics())
def test_registered_metric_declares_the_expected_direction(name: str) -> None:
    assert name in EXPECTED_DIRECTION, f"new metric {name!r}: add its direction to EXPECTED_DIRECTION"
    info = M.get_metric(name)
    assert info.name == name
    if EXPECTED_DIRECTION[name] == "none":
        assert info.higher_is_better is None
        return
    assert type(info.higher_is_better) is bool  # a declared direction, not a truthy stand-in
    assert ("higher" if info.higher_is_better else "lower") == EXPECTED_DIRECTION[name]


def test_direction_table_covers_exactly_the_registry() -> None:
    assert sorted(EXPECTED_DIRECTION) == M.list_metrics()


def test_wrong_inputs_raise() -> None:
    maps = torch.rand(2, 8, 8)
    bad = [
        lambda: M.topk_mask(torch.rand(8, 8), 0.1),
        lambda: M.topk_mask(maps, 0.0),
        lambda: M.topk_mask(maps, 1.5),
        lambda: M.topk_mask(torch.ones(2, 8, 8, dtype=torch.int64), 0.1),
        lambda: M.point_coverage(maps, [np.zeros((1, 2))]),
        lambda: M.point_coverage(maps, [np.zeros((1, 3)), np.zeros((1, 2))]),
        lambda: M.point_coverage(maps, [np.array([[np.nan, 1.0]]), np.zeros((1, 2))]),
        lambda: M.topk_iou(maps, torch.zeros(2, 8, 7, dtype=torch.bool)),
        lambda: M.topk_iou(maps, torch.full((2, 8, 8), 0.5)),
        lambda: M.rmse(maps, torch.zeros(3, 8, 8, dtype=torch.bool)),
        lambda: M.ssim(maps, torch.rand(2, 8, 9)),
        lambda: M.mse(maps, torch.rand(1, 8, 8)),
        lambda: M.pearson(maps, torch.rand(2, 8)),
        lambda: M.ssim(maps, torch.full((2, 8, 8), float("nan"))),
    ]
    for i, call in enumerate(bad):
        with pytest.raises(RobustXAIError) as err:
            call()
        assert "\n" not in str(err.value), i
