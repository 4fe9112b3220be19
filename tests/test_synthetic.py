"""Tests of the built-in synthetic-fracture benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustxai import DataError
from robustxai.data import SyntheticFracture, stack_images


def _inside(mask: np.ndarray, points: np.ndarray) -> bool:
    rc = np.rint(points).astype(int)
    h, w = mask.shape
    ok = (rc[:, 0] >= 0) & (rc[:, 0] < w) & (rc[:, 1] >= 0) & (rc[:, 1] < h)
    return bool(ok.all() and mask[rc[:, 1], rc[:, 0]].all())


def test_shape_range_dtype_and_id() -> None:
    ds = SyntheticFracture(6, size=48, seed=3)
    assert len(ds) == 6 and ds.class_names == ["normal", "fracture"]
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (1, 48, 48) and s.image.dtype == torch.float32
        assert float(s.image.min()) >= 0.0 and float(s.image.max()) <= 1.0
        assert s.id == f"synth-3-{i:06d}"
        assert s.label in (0, 1)
    x, y = stack_images(ds[0:4])
    assert x.shape == (4, 1, 48, 48) and y.shape == (4,)


def test_deterministic_random_access_independent_of_n_and_order() -> None:
    a = SyntheticFracture(10, size=32, seed=7)
    b = SyntheticFracture(50, size=32, seed=7)
    forward = [a[i].image for i in range(10)]
    backward = [b[i].image for i in reversed(range(10))][::-1]
    for fa, fb in zip(forward, backward, strict=True):
        assert torch.equal(fa, fb)
    assert torch.equal(a[-1].image, a[9].image)
    s1, s2 = a[4], b[4]
    assert s1.label == s2.label and s1.meta == s2.meta
    assert s1.truth.mask is not None and s2.truth.mask is not None
    assert s1.truth.points is not None and s2.truth.points is not None
    assert np.array_equal(s1.truth.mask, s2.truth.mask)
    assert np.array_equal(s1.truth.points, s2.truth.points)


def test_different_seeds_differ() -> None:
    a, b = SyntheticFracture(3, size=32, seed=0), SyntheticFracture(3, size=32, seed=1)
    assert not torch.equal(a[0].image, b[0].image)


def test_labels_fast_path_matches_rendering_and_rate() -> None:
    ds = SyntheticFracture(200, size=32, seed=0)
    labels = ds.labels()
    assert labels[:20] == [ds[i].label for i in range(20)]
    assert 0.4 <= np.mean(labels) <= 0.6
    assert sum(SyntheticFracture(200, size=32, fracture_rate=0.0).labels()) == 0
    assert sum(SyntheticFracture(200, size=32, fracture_rate=1.0).labels()) == 200


@pytest.mark.parametrize("size", [16, 32, 64])
def test_truth_of_fractured_and_normal_images(size: int) -> None:
    ds = SyntheticFracture(40, size=size, seed=11)
    n_pos = 0
    for i in range(len(ds)):
        t = ds[i].truth
        assert t.mask is not None and t.mask.shape == (size, size) and t.points is not None
        if ds[i].label == 1:
            n_pos += 1
            assert t.mask.any() and not t.empty
            assert 1 <= len(t.points) <= 8
            assert _inside(t.mask, t.points)
        else:
            assert t.empty and not t.mask.any() and t.points.shape == (0, 2)
    assert n_pos > 5


def test_points_count_at_64() -> None:
    ds = SyntheticFracture(30, size=64, seed=2, fracture_rate=1.0)
    counts = [len(ds[i].truth.points) for i in range(len(ds))]  # type: ignore[arg-type]
    assert min(counts) >= 3 and max(counts) <= 8


def test_mask_lies_on_the_rendered_fracture() -> None:
    ds = SyntheticFracture(20, size=64, seed=5, fracture_rate=1.0)
    for i in range(len(ds)):
        with_f, _, truth, meta = ds._render(i)
        without_f, _, _, _ = ds._render(i, draw_fracture=False)
        diff = with_f - without_f
        mask = truth.mask
        assert mask is not None
        # The gap darkens the image inside the mask by several grey levels on average ...
        assert diff[mask].mean() < -4 / 255
        # ... far more than the same mask moved 6 px along the shaft, off the line (the displaced fragment
        # shifts the cortex edges all along, so a global arg-min would not be a fair test).
        theta = np.radians(float(meta["bone_angle_deg"]))
        for sign in (1, -1):
            shift = (round(sign * 6 * np.sin(theta)), round(sign * 6 * np.cos(theta)))
            moved = np.roll(mask, shift, axis=(0, 1))
            assert diff[mask].mean() < diff[moved].mean() - 2 / 255
        # The gap is darker than the intact cortex it replaces by many grey levels at its deepest.
        assert diff[mask].min() < -20 / 255


def test_fracture_not_given_away_by_global_intensity() -> None:
    ds = SyntheticFracture(200, size=32, seed=0)
    means = np.array([float(ds[i].image.mean()) for i in range(len(ds))])
    labels = np.array(ds.labels())
    gap = abs(means[labels == 1].mean() - means[labels == 0].mean())
    assert gap < 0.5 * means.std()


def _marker_corner(image: torch.Tensor) -> int:
    a = image[0].numpy()
    s = a.shape[0] // 4
    quads = [a[:s, :s], a[:s, -s:], a[-s:, :s], a[-s:, -s:]]
    return int(np.argmax([(q >= 0.85).sum() for q in quads]))


def test_shortcut_one_ties_marker_corner_to_label() -> None:
    ds = SyntheticFracture(40, size=64, seed=9, shortcut=1.0)
    for i in range(len(ds)):
        s = ds[i]
        expected = "top-left" if s.label == 1 else "bottom-right"
        assert s.meta["marker_corner"] == expected and s.meta["shortcut_applied"] is True
        assert _marker_corner(s.image) == (0 if s.label == 1 else 3)


def test_no_shortcut_marker_corner_uninformative() -> None:
    ds = SyntheticFracture(200, size=16, seed=9, shortcut=0.0)
    corners = [ds._render(i)[3]["marker_corner"] for i in range(len(ds))]
    labels = ds.labels()
    tl_pos = np.mean([c == "top-left" for c, y in zip(corners, labels, strict=True) if y == 1])
    assert 0.1 < tl_pos < 0.45
    assert {"top-left", "top-right", "bottom-left", "bottom-right"} == set(corners)


def test_lookalikes_present_among_negatives() -> None:
    ds = SyntheticFracture(200, size=16, seed=4, fracture_rate=0.0)
    kinds = [ds._render(i)[3]["lookalike"] for i in range(len(ds))]
    rate = np.mean([k is not None for k in kinds])
    assert 0.3 < rate < 0.5
    assert {"medullary_line", "soft_tissue_line", "soft_tissue_edge"} <= set(kinds)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": 4, "size": 15},
        {"n": 4, "size": 225},
        {"n": 4, "seed": -1},
        {"n": 4, "shortcut": 1.5},
        {"n": 4, "fracture_rate": -0.1},
    ],
)
def test_argument_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(DataError):
        SyntheticFracture(**kwargs)  # type: ignore[arg-type]


def test_index_out_of_range() -> None:
    ds = SyntheticFracture(3, size=16)
    with pytest.raises(IndexError):
        ds[3]
    assert len(list(ds)) == 3
