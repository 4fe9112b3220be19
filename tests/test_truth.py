"""Ground truth moves with the image: resized masks stay registered and never vanish."""

from __future__ import annotations

import numpy as np

from robustxai.data._truth import Truth, resize_mask

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._truth"


def test_thin_mask_survives_downsampling() -> None:
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:102, 40:200] = True  # a 2-px line
    small = resize_mask(mask, (64, 64))
    assert small.any()
    rows = np.nonzero(small.any(axis=1))[0]
    assert rows.min() >= 100 // 4 - 1 and rows.max() <= 102 // 4 + 1


def test_block_mask_downsamples_by_area_in_register() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 4:8] = True
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 2:4] = True
    np.testing.assert_array_equal(resize_mask(mask, (4, 4)), expected)


def test_upsampling_keeps_the_region_centred() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    big = resize_mask(mask, (16, 16))
    ys, xs = np.nonzero(big)
    assert abs(ys.mean() - 7.5) < 0.5 and abs(xs.mean() - 7.5) < 0.5


def test_points_move_with_pixel_centres() -> None:
    truth = Truth(mask=np.zeros((10, 20), dtype=bool), points=np.array([[0.0, 0.0], [19.0, 9.0]]))
    out = truth.resized((10, 20), (20, 40))
    np.testing.assert_allclose(out.points, [[0.5, 0.5], [38.5, 18.5]])
    assert out.mask is not None and out.mask.shape == (20, 40)
