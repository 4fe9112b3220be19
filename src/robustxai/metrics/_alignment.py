"""Alignment of explanation maps with expert ground truth (METHODS.md, "Alignment with ground truth").

All functions take maps ``[B, H, W]`` and return one value per image as a float64 tensor ``[B]`` on the
maps' device. Values that are undefined for an image (no valid point, empty ground-truth mask) are NaN, so
that the caller can leave those images out of dataset means instead of counting them as 0 or 1.

The binary "top-k" map is the one of Secure Diagnostics (eqs. 13–14): ``M = [S ≥ percentile(S, 100·(1−top))]``
computed per image. Because the comparison is ``≥``, ties at the threshold can make the mask larger than
``top`` of the image; :func:`mask_area` reports the true area so that reports can show it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from robustxai._errors import RobustXAIError
from robustxai._validate import check_maps
from robustxai.metrics._similarity import minmax


def _check_top(top: float) -> float:
    try:
        value = float(top)
    except (TypeError, ValueError):
        raise RobustXAIError(f"top must be a number in (0, 1], got {top!r}") from None
    if not (0.0 < value <= 1.0):
        raise RobustXAIError(f"top must be a fraction of pixels in (0, 1], got {top!r}")
    return value


def _order_statistics(flat: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``lo``-th and ``hi``-th smallest values of each row (0-based, ``lo ≤ hi``), as a full sort gives.

    A partial sort from the nearer end (``topk``) returns the same elements as the full sort, several times
    faster for the 4,096 pixels of a 64-px map.
    """
    n = flat.shape[1]
    if hi < n - lo:
        small = torch.topk(flat, hi + 1, dim=1, largest=False, sorted=True).values
        return small[:, lo], small[:, hi]
    big = torch.topk(flat, n - lo, dim=1, largest=True, sorted=True).values  # big[:, j] = sorted[:, n-1-j]
    return big[:, n - 1 - lo], big[:, n - 1 - hi]


def _percentile_threshold(maps: torch.Tensor, top: float) -> torch.Tensor:
    """Per-image ``np.percentile(S, 100·(1−top))`` with numpy's default ``linear`` method, shape ``[B]``.

    The arithmetic mirrors numpy step by step (virtual index ``(n−1)·q``, its floor, and numpy's two-sided
    ``_lerp``) in the maps' dtype, so the threshold, and hence the ``≥`` ties, match numpy for float64 and
    float32 maps.
    """
    b = maps.shape[0]
    flat = maps.reshape(b, -1)
    n = flat.shape[1]
    q = (100.0 * (1.0 - top)) / 100.0  # numpy divides the percentile by 100 in float64
    virtual = (n - 1) * q
    lo = min(max(math.floor(virtual), 0), n - 1)
    hi = min(lo + 1, n - 1)
    gamma = virtual - lo
    a, c = _order_statistics(flat, lo, hi)
    diff = c - a
    if gamma >= 0.5:
        return c - diff * (1.0 - gamma)
    return a + diff * gamma


def topk_mask(maps: torch.Tensor, top: float) -> torch.Tensor:
    """Binary map of the ``top`` share of highest-scoring pixels of each image.

    ``M = S ≥ percentile(S, 100·(1−top))`` per image, the percentile being numpy's default
    (``np.percentile`` with linear interpolation), exactly as METHODS.md defines it. Ties at the threshold
    are all kept, so the mask may cover more than ``top`` of the image (a constant map selects everything).

    Args:
        maps: Explanation maps ``[B, H, W]``, any float dtype.
        top: Fraction of pixels to keep, in (0, 1]; e.g. 0.15 for the paper's ν = 85.

    Returns:
        Bool tensor ``[B, H, W]`` on the maps' device.
    """
    maps = check_maps(maps)
    top = _check_top(top)
    thr = _percentile_threshold(maps, top)
    return maps >= thr[:, None, None]


def mask_area(maps: torch.Tensor, top: float) -> torch.Tensor:
    """True fraction of pixels selected by :func:`topk_mask` (≥ ``top`` when there are ties).

    Args:
        maps: Explanation maps ``[B, H, W]``.
        top: Requested fraction of pixels, in (0, 1].

    Returns:
        Float64 tensor ``[B]`` in (0, 1].
    """
    mask = topk_mask(maps, top)
    return mask.reshape(mask.shape[0], -1).to(torch.float64).mean(dim=1)


def _as_points(p: object, index: int) -> torch.Tensor:
    if isinstance(p, torch.Tensor):
        t = p.detach().to("cpu", torch.float64)
    elif isinstance(p, np.ndarray | list | tuple):
        try:
            t = torch.as_tensor(np.asarray(p, dtype=np.float64))
        except (TypeError, ValueError):
            raise RobustXAIError(f"points[{index}] must be numeric (x, y) pairs") from None
    else:
        raise RobustXAIError(f"points[{index}] must be an array [N, 2], got {type(p).__name__}")
    if t.numel() == 0:
        return t.reshape(0, 2)
    if t.ndim != 2 or t.shape[1] != 2:
        raise RobustXAIError(f"points[{index}] must have shape [N, 2] as (x, y), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise RobustXAIError(f"points[{index}] contains NaN or infinite coordinates")
    return t


def point_coverage(
    maps: torch.Tensor,
    points: Sequence[np.ndarray | torch.Tensor],
    top: float = 0.15,
) -> torch.Tensor:
    """Point coverage ratio (Secure Diagnostics, eqs. 13–14): share of expert points inside the top-k map.

    Each point ``p = (x, y)`` (x = column, y = row) is rounded to the nearest pixel, halves rounding up
    (``floor(v + 0.5)``), and counts as covered when ``topk_mask(maps, top)[b, y, x]`` is set. Points that
    fall outside the image after rounding are ignored (they cannot be covered or missed).

    Args:
        maps: Explanation maps ``[B, H, W]``.
        points: One array ``[N_b, 2]`` of ``(x, y)`` pixel positions per image (``N_b`` may be 0).
        top: Fraction of pixels in the binary map, in (0, 1]; the paper's ν = 85 is ``top=0.15``.

    Returns:
        Float64 tensor ``[B]`` in [0, 1]; NaN for an image with no valid point — leave it out of means.
        The paper's dataset value is the mean over images × 100.
    """
    mask = topk_mask(maps, top)
    b, h, w = mask.shape
    if isinstance(points, torch.Tensor | np.ndarray | str) or not isinstance(points, Sequence):
        raise RobustXAIError("points must be a list with one [N, 2] array per image")
    if len(points) != b:
        raise RobustXAIError(f"points has {len(points)} entries but maps has {b} images")
    mask_cpu = mask.cpu()
    out = torch.full((b,), math.nan, dtype=torch.float64)
    for i, p in enumerate(points):
        pts = _as_points(p, i)
        cols = torch.floor(pts[:, 0] + 0.5).long()
        rows = torch.floor(pts[:, 1] + 0.5).long()
        inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        if not bool(inside.any()):
            continue
        hits = mask_cpu[i, rows[inside], cols[inside]]
        out[i] = hits.to(torch.float64).mean()
    return out.to(maps.device)


def _check_masks(masks: object, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Return ground-truth masks as a bool tensor ``[B, H, W]`` matching ``shape`` (``[H, W]`` broadcasts)."""
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(masks, torch.Tensor):
        raise RobustXAIError(f"masks must be a bool tensor or array [B, H, W], got {type(masks).__name__}")
    m = masks
    if m.ndim == 2:
        m = m.unsqueeze(0).expand(shape[0], -1, -1)
    if tuple(m.shape) != tuple(shape):
        raise RobustXAIError(f"masks shape {tuple(masks.shape)} does not match maps shape {tuple(shape)}")
    if m.dtype != torch.bool:
        if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
            raise RobustXAIError(f"masks must be boolean (or 0/1 values), got dtype {m.dtype}")
        m = m != 0
    return m.to(device)


def topk_iou(maps: torch.Tensor, masks: torch.Tensor | np.ndarray, top: float = 0.15) -> torch.Tensor:
    """Intersection over union between the top-k binary map and the ground-truth mask.

    Args:
        maps: Explanation maps ``[B, H, W]``.
        masks: Ground-truth masks, bool ``[B, H, W]`` (or one ``[H, W]`` for every image); 0/1 integers
            or floats are accepted too.
        top: Fraction of pixels in the binary map, in (0, 1] (the explainability-impact paper uses 0.15).

    Returns:
        Float64 tensor ``[B]`` in [0, 1]; NaN where the ground-truth mask is empty (IoU is undefined for a
        negative case, which should be left out rather than scored 0).
    """
    pred = topk_mask(maps, top)
    gt = _check_masks(masks, pred.shape, pred.device)
    b = pred.shape[0]
    inter = (pred & gt).reshape(b, -1).sum(dim=1).to(torch.float64)
    union = (pred | gt).reshape(b, -1).sum(dim=1).to(torch.float64)
    gt_size = gt.reshape(b, -1).sum(dim=1)
    iou = inter / union  # union ≥ |pred| > 0 always
    return torch.where(gt_size > 0, iou, torch.full_like(iou, math.nan))


def rmse(maps: torch.Tensor, masks: torch.Tensor | np.ndarray, top: float | None = 0.15) -> torch.Tensor:
    """Root-mean-square error between a map and the ground-truth mask, ``sqrt(mean((gt − map)²))``.

    Args:
        maps: Explanation maps ``[B, H, W]``.
        masks: Ground-truth masks, bool ``[B, H, W]`` (or one ``[H, W]``).
        top: With a fraction in (0, 1], the map is the binary :func:`topk_mask`; with ``None`` it is the
            per-image min-max normalised map in [0, 1] (constant maps become zeros).

    Returns:
        Float64 tensor ``[B]`` in [0, 1] (lower is better); NaN where the ground-truth mask is empty.
    """
    maps = check_maps(maps)
    gt = _check_masks(masks, maps.shape, maps.device)
    pred = minmax(maps.to(torch.float64)) if top is None else topk_mask(maps, top).to(torch.float64)
    b = pred.shape[0]
    err = ((gt.to(torch.float64) - pred) ** 2).reshape(b, -1).mean(dim=1).sqrt()
    gt_size = gt.reshape(b, -1).sum(dim=1)
    return torch.where(gt_size > 0, err, torch.full_like(err, math.nan))
