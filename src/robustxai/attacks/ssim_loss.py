"""Differentiable SSIM for the manipulation attack's loss (scikit-image defaults).

The audit scores a manipulation by SSIM — of the attacked image against the clean one (must stay high)
and of the target against the min-max normalised map (must reach 0.6) — so the attack can optimise those
very quantities. :func:`ssim_per_image` equals ``skimage.metrics.structural_similarity(a, b,
data_range=1.0)`` with its defaults (7 × 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, mean
over the pixels whose window does not touch the border) like :func:`robustxai.metrics.ssim`, but it stays
on the autograd graph and keeps the input dtype (float32 during an attack).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustxai.errors import RobustXAIError

WIN = 7
K1 = 0.01
K2 = 0.03


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each pair of single-channel images ``[B, H, W]`` (differentiable), shape ``[B]``.

    Args:
        a: Images or maps ``[B, H, W]``.
        b: Same shape as ``a``.
        data_range: The value range (1 for [0, 1] images and min-max normalised maps).

    Raises:
        RobustXAIError: On a shape mismatch or images smaller than 7 × 7.
    """
    if a.shape != b.shape or a.ndim != 3:
        raise RobustXAIError(
            f"ssim_per_image needs two [B, H, W] tensors, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    n, h, w = a.shape
    if h < WIN or w < WIN:
        raise RobustXAIError(f"ssim needs at least {WIN}×{WIN} pixels, got {h}×{w}")
    x, y = a[:, None], b[:, None]
    stats = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=0), kernel_size=WIN, stride=1)
    ux, uy, uxx, uyy, uxy = stats.split(n, dim=0)
    cov = WIN * WIN / (WIN * WIN - 1)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(dim=1)


def image_ssim(adv: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """SSIM of attacked vs clean images ``[B, C, H, W]`` on the channel mean (as the audit scores it)."""
    return ssim_per_image(adv.mean(dim=1), clean.mean(dim=1))


def minmax_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise each map ``[B, H, W]`` to [0, 1] (differentiable; constant maps become ~0)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.amin(dim=1)[:, None, None]
    hi = flat.amax(dim=1)[:, None, None]
    return (maps - lo) / (hi - lo + eps)
