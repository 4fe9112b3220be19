"""Localisation metrics: does the explanation's peak, or its mass, fall on the expert's finding?

Both metrics come from METHODS.md ("Alignment with ground truth") and follow Quantus 0.6 so that numbers can
be compared with studies that used it:

- **Pointing game** (Zhang et al., 2018; Quantus ``PointingGame``): a hit when the map's maximum lies on
  the finding — inside the ground-truth mask, or within ``radius`` pixels of an expert point.
- **Relevance mass** (Arras et al., 2022; Quantus ``RelevanceMassAccuracy``): the share of positive
  attribution that falls inside the mask.

Maps are ``[B, H, W]``; every function returns a float64 tensor ``[B]`` on the maps' device, NaN where the
value is undefined for an image (no ground truth), so that callers leave such images out of means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from robustxai._validate import check_maps
from robustxai.errors import RobustXAIError
from robustxai.metrics.alignment import _as_points, _check_masks

Ties = Literal["any", "all"]


def _check_radius(radius: float) -> float:
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise RobustXAIError(f"radius must be a number of pixels ≥ 0, got {radius!r}") from None
    if not (value >= 0.0 and math.isfinite(value)):
        raise RobustXAIError(f"radius must be a finite number of pixels ≥ 0, got {radius!r}")
    return value


def _check_points(points: object, b: int) -> list[torch.Tensor]:
    if isinstance(points, torch.Tensor | np.ndarray | str) or not isinstance(points, Sequence):
        raise RobustXAIError("points must be a list with one [N, 2] array per image")
    if len(points) != b:
        raise RobustXAIError(f"points has {len(points)} entries but maps has {b} images")
    return [_as_points(p, i) for i, p in enumerate(points)]


def pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor | np.ndarray | None = None,
    points: Sequence[np.ndarray | torch.Tensor] | None = None,
    radius: float = 3.0,
    ties: Ties = "any",
) -> torch.Tensor:
    """Pointing game: 1 when the map's maximum falls on the finding, 0 when it misses.

    The target region of an image is the union of its ground-truth mask and of the discs of ``radius``
    pixels around its expert points. Pixel ``(row, col)`` is at ``(x, y) = (col, row)``, the convention of
    :class:`~robustxai.data.truth.Truth` points, and lies in a disc when its distance to the point is
    ``≤ radius`` (so ``radius=0`` asks for the point's own pixel when the point has integer coordinates).
    The radius applies to points only: a mask counts exactly, as in Quantus.

    Ties: a map may have several pixels equal to its maximum (a constant map has them all). With
    ``ties="any"`` (default) the image is a hit when any of them is on the target — Quantus' ``PointingGame``
    rule, so a constant map scores a hit whenever the image has a finding. ``ties="all"`` is the strict
    reading: every maximum must be on the target, so a flat or multi-peaked map cannot score by luck.

    Args:
        maps: Explanation maps ``[B, H, W]``.
        masks: Ground-truth masks, bool ``[B, H, W]`` (or one ``[H, W]`` for every image; 0/1 values are
            accepted), or ``None``.
        points: One array ``[N_b, 2]`` of ``(x, y)`` pixel positions per image (``N_b`` may be 0), or
            ``None``.
        radius: Tolerance around each point in pixels of the maps, ≥ 0 (the audit's ``pointing_radius``;
            Zhang et al. used 15 px at about 224 px).
        ties: ``"any"`` or ``"all"``, see above.

    Returns:
        Float64 tensor ``[B]`` of 1.0 (hit) / 0.0 (miss); NaN for an image whose mask is empty (or absent)
        and which has no point. (Quantus 0.6 stores its NaN in a boolean array, which turns it into a hit;
        robustxai keeps NaN.)

    Raises:
        RobustXAIError: If neither masks nor points is given, or on bad shapes, radius or ``ties``.
    """
    maps = check_maps(maps)
    if masks is None and points is None:
        raise RobustXAIError("pointing_game needs ground truth: pass masks, points or both")
    if ties not in ("any", "all"):
        raise RobustXAIError(f"ties must be 'any' or 'all', got {ties!r}")
    radius = _check_radius(radius)
    b = maps.shape[0]
    flat = maps.reshape(b, -1)
    peak = (flat == flat.max(dim=1, keepdim=True).values).reshape(maps.shape)
    gt = None if masks is None else _check_masks(masks, maps.shape, maps.device)
    # Every maximum of every image, as (image, row, col); usually one per image.
    bi, rows, cols = torch.nonzero(peak, as_tuple=True)
    on = torch.zeros(bi.shape[0], dtype=torch.bool, device=maps.device)
    defined = torch.zeros(b, dtype=torch.bool, device=maps.device)
    if gt is not None:
        on |= gt[bi, rows, cols]
        defined |= gt.reshape(b, -1).any(dim=1)
    if points is not None:
        pts = _check_points(points, b)
        n_max = max((len(p) for p in pts), default=0)
        padded = torch.full((b, n_max, 2), math.nan, dtype=torch.float64)  # NaN never lies within reach
        for i, p in enumerate(pts):
            padded[i, : len(p)] = p
        padded = padded.to(maps.device)
        defined |= torch.tensor([len(p) > 0 for p in pts], device=maps.device)
        if n_max:
            px, py = padded[bi, :, 0], padded[bi, :, 1]
            d2 = (cols[:, None] - px) ** 2 + (rows[:, None] - py) ** 2
            on |= (d2 <= radius * radius).any(dim=1)
    n_on = torch.zeros(b, dtype=torch.long, device=maps.device).index_add_(0, bi, on.long())
    n_peak = torch.bincount(bi, minlength=b)
    hit = n_on > 0 if ties == "any" else n_on == n_peak
    nan = torch.full((b,), math.nan, dtype=torch.float64, device=maps.device)
    out = torch.where(defined, hit.to(torch.float64), nan)
    return out


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Relevance mass accuracy: share of the positive attribution that lies inside the mask.

    ``R = Σ_{p ∈ mask} max(S_p, 0) / Σ_p max(S_p, 0)``. Negative values are set to zero first, as in Arras
    et al.: evidence *against* the class is not relevance for it. On non-negative maps (robustxai's default
    reduction, max over channels of ``|a|``) this equals Quantus' ``RelevanceMassAccuracy`` with
    ``normalise=False``; Quantus sums signed values as given.

    Args:
        maps: Explanation maps ``[B, H, W]``.
        masks: Ground-truth masks, bool ``[B, H, W]`` (or one ``[H, W]``); 0/1 values are accepted.

    Returns:
        Float64 tensor ``[B]`` in [0, 1] (higher is better); NaN where the mask is empty (no finding) or the
        map has no positive attribution (nothing to share out).
    """
    maps = check_maps(maps)
    gt = _check_masks(masks, maps.shape, maps.device)
    b = maps.shape[0]
    pos = maps.to(torch.float64).clamp(min=0.0).reshape(b, -1)
    inside = (pos * gt.reshape(b, -1)).sum(dim=1)
    total = pos.sum(dim=1)
    ok = (total > 0) & gt.reshape(b, -1).any(dim=1)
    share = inside / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(ok, share, torch.full_like(share, math.nan))
