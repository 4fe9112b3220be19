"""Similarity of two explanation maps (METHODS.md, "Similarity of maps").

The trustworthiness paper min-max normalises each map and then compares them with SSIM (scikit-image
defaults, ``data_range=1``), MSE and Pearson's r. These are re-implemented in torch so they run on whole
batches and on any device without scikit-image at run time; the tests pin them to scikit-image, numpy and
scipy. Every function returns one float64 value per image, a tensor ``[B]`` on the maps' device.
"""

from __future__ import annotations

import math

import torch

from robustxai._arrays import minmax as _minmax
from robustxai._errors import RobustXAIError
from robustxai._validate import check_maps
from robustxai.metrics._box import box_mean

#: scikit-image's default SSIM window (uniform filter, 7×7) and constants.
SSIM_WIN_SIZE = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] independently (:func:`robustxai._arrays.minmax`, checked).

    Constant maps (no spread to rescale) become all zeros rather than NaN.

    Args:
        maps: Maps ``[B, H, W]``, any float dtype.

    Returns:
        Tensor of the same shape, dtype and device, each image spanning exactly [0, 1] unless constant.
    """
    return _minmax(check_maps(maps))


def _check_pair(maps_a: torch.Tensor, maps_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = check_maps(maps_a, "maps_a")
    b = check_maps(maps_b, "maps_b")
    if a.shape != b.shape:
        raise RobustXAIError(f"maps_a shape {tuple(a.shape)} does not match maps_b shape {tuple(b.shape)}")
    if a.device != b.device:
        raise RobustXAIError(f"maps_a is on {a.device} but maps_b is on {b.device}")
    return a, b


def _prepare(
    maps_a: torch.Tensor, maps_b: torch.Tensor, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _check_pair(maps_a, maps_b)
    a, b = a.to(torch.float64), b.to(torch.float64)
    if normalize:
        a, b = minmax(a), minmax(b)
    return a, b


def ssim(maps_a: torch.Tensor, maps_b: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean structural similarity of each pair of maps, equal to scikit-image's with its defaults.

    Matches ``skimage.metrics.structural_similarity(a, b, data_range=1.0)`` per image: a 7×7 uniform
    window, sample covariance (``NP / (NP − 1)``), ``K1 = 0.01``, ``K2 = 0.03``, and the mean of the SSIM
    image after cropping ``(7 − 1) // 2 = 3`` pixels from every border. scikit-image filters with 'reflect'
    padding and then crops exactly the pixels whose window touched the padding, so an unpadded 7×7 box mean
    (``avg_pool2d``) gives the same numbers. Computed in float64.

    Args:
        maps_a: Maps ``[B, H, W]`` with ``H, W ≥ 7``.
        maps_b: Maps of the same shape, on the same device.
        normalize: Min-max normalise each map first (the paper's protocol). With ``False`` the maps are
            compared as they are, with ``data_range = 1`` — they should then already lie in [0, 1].

    Returns:
        Float64 tensor ``[B]`` in [−1, 1]; 1 means identical maps.

    Raises:
        RobustXAIError: On shape mismatch, or images smaller than the 7×7 window.
    """
    a, b = _prepare(maps_a, maps_b, normalize)
    return ssim_per_image(a, b)


class SsimReference:
    """One side of SSIM held fixed (clean images, a target map), with its 7×7 window means computed once.

    ``ssim_per_image(a, SsimReference(b))`` equals ``ssim_per_image(a, b)`` bit for bit — a window mean is
    computed per plane, so it does not matter which call computed it — and every later call skips two of
    the five box means. The manipulation attack compares against the same clean images and target maps
    about fifteen times per descent step.

    Args:
        b: Images or maps ``[B, H, W]`` with ``H, W ≥ 7`` (not differentiated through: detached).

    Raises:
        RobustXAIError: For a shape that is not ``[B, H, W]`` or images smaller than the window.
    """

    def __init__(self, b: torch.Tensor) -> None:
        _check_ssim_shape(b, b)
        self.values = b.detach()
        y = self.values[:, None]
        self.mean, self.mean_sq = torch.split(box_mean(torch.cat([y, y * y]), SSIM_WIN_SIZE), len(b), dim=0)


def _check_ssim_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 3:
        raise RobustXAIError(f"ssim needs two [B, H, W] tensors, got {tuple(a.shape)}, {tuple(b.shape)}")
    h, w = a.shape[1:]
    win = SSIM_WIN_SIZE
    if h < win or w < win:
        raise RobustXAIError(f"ssim needs maps of at least {win}×{win} pixels, got {h}×{w}")


def _values(side: torch.Tensor | SsimReference) -> torch.Tensor:
    return side.values if isinstance(side, SsimReference) else side


def _window_means(
    a: torch.Tensor | SsimReference, b: torch.Tensor | SsimReference
) -> tuple[torch.Tensor, ...]:
    """μa, μb, μa², μb², μab over every 7×7 window, taking a reference's own means from it."""
    x, y = _values(a)[:, None], _values(b)[:, None]
    raw: list[torch.Tensor] = []  # the planes of a side that is not a reference: t, t²
    for side, t in ((a, x), (b, y)):
        if not isinstance(side, SsimReference):
            raw += [t, t * t]
    # Unpadded 7×7 box mean: avg_pool2d's numbers (box_mean), an order of magnitude faster than conv2d.
    stats = list(torch.split(box_mean(torch.cat([*raw, x * y]), SSIM_WIN_SIZE), len(x), dim=0))
    ux, uxx = (a.mean, a.mean_sq) if isinstance(a, SsimReference) else (stats.pop(0), stats.pop(0))
    uy, uyy = (b.mean, b.mean_sq) if isinstance(b, SsimReference) else (stats.pop(0), stats.pop(0))
    return ux, uy, uxx, uyy, stats.pop(0)


def ssim_per_image(a: torch.Tensor | SsimReference, b: torch.Tensor | SsimReference) -> torch.Tensor:
    """The SSIM of :func:`ssim` without its checks and casts: differentiable, in the inputs' dtype.

    The one SSIM of robustxai: the metric calls it in float64 and the manipulation attack optimises it in
    float32 on the autograd graph. ``data_range`` is 1 (images in [0, 1], min-max normalised maps).

    Args:
        a: Images or maps ``[B, H, W]`` with ``H, W ≥ 7``, or a :class:`SsimReference` of them.
        b: The same shape as ``a``, or a :class:`SsimReference`.

    Returns:
        Tensor ``[B]`` in the inputs' dtype.

    Raises:
        RobustXAIError: On a shape mismatch or images smaller than the 7×7 window.
    """
    _check_ssim_shape(_values(a), _values(b))
    ux, uy, uxx, uyy, uxy = _window_means(a, b)
    n_pix = SSIM_WIN_SIZE**2
    cov_norm = n_pix / (n_pix - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    data_range = 1.0
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux**2 + uy**2 + c1
    b2 = vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    return s.reshape(len(ux), -1).mean(dim=1)


def mse(maps_a: torch.Tensor, maps_b: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean squared difference of each pair of maps.

    Args:
        maps_a: Maps ``[B, H, W]``.
        maps_b: Maps of the same shape, on the same device.
        normalize: Min-max normalise each map first (the paper's protocol), so the value lies in [0, 1].

    Returns:
        Float64 tensor ``[B]``, ≥ 0 (lower is more similar).
    """
    a, b = _prepare(maps_a, maps_b, normalize)
    return ((a - b) ** 2).reshape(a.shape[0], -1).mean(dim=1)


def pearson(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the pixels of each pair of maps.

    Invariant to per-map affine rescaling, so min-max normalisation would not change it.

    Args:
        maps_a: Maps ``[B, H, W]``.
        maps_b: Maps of the same shape, on the same device.

    Returns:
        Float64 tensor ``[B]`` in [−1, 1]; NaN where either map is constant (r is undefined; scipy also
        returns NaN there).
    """
    a, b = _check_pair(maps_a, maps_b)
    n = a.shape[0]
    fa = a.to(torch.float64).reshape(n, -1)
    fb = b.to(torch.float64).reshape(n, -1)
    constant = (fa.max(dim=1).values == fa.min(dim=1).values) | (fb.max(dim=1).values == fb.min(dim=1).values)
    ca = fa - fa.mean(dim=1, keepdim=True)
    cb = fb - fb.mean(dim=1, keepdim=True)
    denom = torch.sqrt((ca * ca).sum(dim=1) * (cb * cb).sum(dim=1))
    r = (ca * cb).sum(dim=1) / torch.where(constant, torch.ones_like(denom), denom)
    r = r.clamp(-1.0, 1.0)
    return torch.where(constant, torch.full_like(r, math.nan), r)
