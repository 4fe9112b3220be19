"""Tests of the data transforms: the chest X-ray high-pass against OpenCV / SciPy, channels and resizing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from robustxai import DataError, UnknownNameError
from robustxai.data import FolderDataset, Truth
from robustxai.data._transforms import (
    create_transform,
    gaussian_blur,
    gaussian_kernel,
    highpass,
    list_transforms,
    resize,
    to_channels,
)

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._transforms"


def _paper_highpass_float(a: np.ndarray) -> np.ndarray:
    """METHODS.md with OpenCV on float data: min-max to 0..255, 121-tap σ=20 blur, 4x − 4B + 128, clip."""
    x = (a - a.min()) / (a.max() - a.min()) * 255.0
    blur = cv2.GaussianBlur(x, (121, 121), 20, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(4 * x - 4 * blur + 128, 0, 255) / 255.0


@pytest.mark.parametrize("hw", [(64, 48), (17, 130), (1, 9)])
def test_blur_matches_opencv_and_scipy(hw: tuple[int, int]) -> None:
    a = np.random.default_rng(0).random(hw) * 255
    mine = gaussian_blur(torch.from_numpy(a)[None], 20.0)[0].numpy()
    ref = cv2.GaussianBlur(a, (121, 121), 20, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(mine, ref, atol=1e-9)
    np.testing.assert_allclose(mine, ndimage.gaussian_filter(a, 20, mode="mirror", truncate=3.0), atol=1e-9)
    four = gaussian_blur(torch.from_numpy(a)[None], 20.0, truncate=4.0)[0].numpy()
    np.testing.assert_allclose(four, cv2.GaussianBlur(a, (0, 0), 20), atol=1e-9)  # OpenCV's float kernel


def test_kernel_is_opencvs() -> None:
    k = gaussian_kernel(20.0)
    assert k.numel() == 121
    np.testing.assert_allclose(k.numpy(), cv2.getGaussianKernel(121, 20, cv2.CV_64F).ravel(), atol=1e-12)


def test_highpass_matches_paper_pipeline() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    a = 0.2 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + 0.05 * rng.random((64, 64))
    img = torch.from_numpy(a.astype(np.float32))[None].expand(3, -1, -1)
    out = highpass(img)
    assert out.shape == img.shape and out.dtype == torch.float32
    ref = _paper_highpass_float(a.astype(np.float32).astype(np.float64))
    for c in range(3):
        np.testing.assert_allclose(out[c].numpy(), ref, atol=2e-6)
    # The paper ran OpenCV on 8-bit images (blur rounded in fixed point): a few grey levels at most.
    u8 = np.rint((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)
    paper = cv2.addWeighted(u8, 4, cv2.GaussianBlur(u8, (0, 0), 20), -4, 128).astype(np.float64)
    ours = highpass(torch.from_numpy(u8 / 255.0)[None])[0].numpy() * 255
    assert np.abs(ours - paper).max() <= 8.0 and np.abs(ours - paper).mean() <= 1.5


def test_highpass_flat_and_edge_cases() -> None:
    flat = torch.full((1, 8, 8), 0.3)
    torch.testing.assert_close(highpass(flat), torch.full((1, 8, 8), 128 / 255))
    step = torch.zeros(1, 16, 16)
    step[:, :, 8:] = 1.0
    out = highpass(step, sigma=2.0)
    assert float(out[0, 0, 7]) == 0.0 and float(out[0, 0, 8]) == 1.0  # the edge saturates both ways
    with pytest.raises(DataError, match="sigma"):
        highpass(flat, sigma=0.0)
    with pytest.raises(DataError, match="float image"):
        highpass(torch.zeros(8, 8))


def test_to_channels() -> None:
    gray = torch.rand(1, 5, 4)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (3, 5, 4) and bool((rgb == gray).all())
    c = torch.rand(3, 5, 4)
    pil = np.asarray(
        Image.fromarray((c.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).convert("L")
    )
    np.testing.assert_allclose(to_channels(c, 1)[0].numpy() * 255, pil, atol=1.0)  # PIL's BT.601 luma
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        to_channels(gray, 2)
    with pytest.raises(DataError, match="shape"):
        to_channels(torch.rand(2, 4, 4), 1)


def test_resize_moves_truth() -> None:
    img = torch.rand(1, 8, 10)
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:6, 4:8] = True
    out, truth = resize(img, Truth(mask=mask, points=np.array([[5.0, 3.0]])), (16, 20))
    assert out.shape == (1, 16, 20) and truth.mask is not None and truth.mask.shape == (16, 20)
    assert truth.points is not None
    np.testing.assert_allclose(truth.points, [[(5.0 + 0.5) * 2 - 0.5, (3.0 + 0.5) * 2 - 0.5]])
    assert int(truth.mask.sum()) == 4 * int(mask.sum())
    same, t2 = resize(img, Truth(), (8, 10))
    assert same is img and t2.empty


def test_registry_and_folder_option(tmp_path: Path) -> None:
    assert "highpass" in list_transforms()
    with pytest.raises(UnknownNameError, match="Did you mean 'highpass'"):
        create_transform("highpas")
    with pytest.raises(UnknownNameError, match="accepts: sigma"):
        create_transform("highpass", radius=3)
    a = (np.random.default_rng(2).random((24, 24)) * 255).astype(np.uint8)
    (tmp_path / "c").mkdir()
    Image.fromarray(a).save(tmp_path / "c" / "x.png")
    plain = FolderDataset(tmp_path, size=32)[0].image
    hp = FolderDataset(tmp_path, size=32, transforms="highpass")[0].image
    torch.testing.assert_close(hp, highpass(plain))  # applied after the resize, on the model-size image
    both = FolderDataset(tmp_path, transforms=[create_transform("highpass", sigma=3.0), lambda x: 1 - x])
    torch.testing.assert_close(both[0].image, 1 - highpass(FolderDataset(tmp_path)[0].image, sigma=3.0))
    with pytest.raises(DataError, match="outside"):
        FolderDataset(tmp_path, transforms=lambda x: x * 2 + 0.5)[0]
    with pytest.raises(DataError, match="changed image"):
        FolderDataset(tmp_path, transforms=lambda x: x[:, :4])[0]
    with pytest.raises(DataError, match="name or a callable"):
        FolderDataset(tmp_path, transforms=[3])  # type: ignore[list-item]
