"""Target maps of the manipulation attack: where the attacker wants the explanation to point.

The default target is a square in the image corner farthest from the expert's finding (the paper put its
60 × 60 px square in the top-right corner of 512 px radiographs, away from the pathology).
"""

from __future__ import annotations

import numpy as np
import torch

from robustxai._errors import RobustXAIError

#: Where the finding of one image is: a boolean mask ``[H, W]``, points ``[N, 2]`` as (x, y) pixels, or
#: nothing. (Not :class:`robustxai.data.Truth`, which holds both; the audit passes one of the two.)
MaskOrPoints = np.ndarray | torch.Tensor | None


def _truth_pixels(truth: MaskOrPoints, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth pixel coordinates ``[N, 2]`` as (row, col) from a boolean mask or (x, y) points."""
    if truth is None:
        return np.zeros((0, 2))
    arr = truth.detach().cpu().numpy() if isinstance(truth, torch.Tensor) else np.asarray(truth)
    if arr.dtype == bool:
        if arr.shape != tuple(shape):
            raise RobustXAIError(f"truth mask must have shape {tuple(shape)}, got {arr.shape}")
        return np.argwhere(arr).astype(np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise RobustXAIError(
            f"truth must be a boolean mask {tuple(shape)} or points [N, 2] as (x, y), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise RobustXAIError("truth points must be finite")
    return arr[:, ::-1].astype(np.float64)  # (x, y) → (row, col)


def default_target(truth: MaskOrPoints, shape: tuple[int, int], size: int) -> torch.Tensor:
    """The default target map: a ``size`` × ``size`` square in the image corner farthest from the truth.

    "Farthest" maximises the smallest distance from the square's centre to any ground-truth pixel or point.
    Without ground truth the top-right corner is used (where the paper put its target). Ties are broken in
    the order top-right, top-left, bottom-right, bottom-left.

    Args:
        truth: A boolean mask ``[H, W]``, points ``[N, 2]`` as (x, y) pixels, or ``None``.
        shape: ``(H, W)`` of the map.
        size: Side of the square in pixels, ``1 ≤ size ≤ min(H, W)``.

    Returns:
        Float map ``[H, W]``: 1 inside the square, 0 elsewhere.

    Raises:
        RobustXAIError: On a bad size, a mask of the wrong shape or malformed points.
    """
    h, w = int(shape[0]), int(shape[1])
    if not 1 <= int(size) <= min(h, w):
        raise RobustXAIError(f"target size must be between 1 and {min(h, w)} pixels, got {size}")
    size = int(size)
    corners = [(0, w - size), (0, 0), (h - size, w - size), (h - size, 0)]  # (row, col) of the top-left
    pix = _truth_pixels(truth, (h, w))
    best = corners[0]
    if len(pix):
        centres = np.array([(r + (size - 1) / 2, c + (size - 1) / 2) for r, c in corners])
        dist = np.sqrt(((centres[:, None, :] - pix[None, :, :]) ** 2).sum(-1)).min(axis=1)
        best = corners[int(np.argmax(dist))]  # argmax keeps the first of equal distances
    out = torch.zeros(h, w)
    out[best[0] : best[0] + size, best[1] : best[1] + size] = 1.0
    return out
