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

from robustxai._errors import RobustXAIError
from robustxai._validate import check_maps, check_number
from robustxai.metrics._alignment import _as_points, _check_masks

Ties = Literal["any", "all"]

#: Pixels within this fraction of a map's maximum count as tied with it (:func:`peak_in_region`): about
#: eight float32 rounding steps, so maps that reach one peak by two arithmetic paths still tie.
PEAK_RTOL = 1e-6


def peak_pixels(maps: torch.Tensor, rtol: float = 0.0) -> torch.Tensor:
    """Bool ``[B, H, W]``: every pixel at its map's maximum, within ``rtol × |max|`` of it.

    All tied maxima, not the first one ``argmax`` returns (which would favour the top-left corner). A NaN
    pixel counts as −∞, so a map without any number is flat: every pixel ties.
    """
    flat = torch.nan_to_num(maps.reshape(maps.shape[0], -1), nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    top = flat.max(dim=1, keepdim=True).values
    band = top - rtol * top.abs() if rtol else top
    band = torch.where(torch.isfinite(band), band, top)
    return (flat >= band).reshape(maps.shape)


def peak_in_region(
    maps: torch.Tensor, regions: torch.Tensor | np.ndarray, rtol: float = PEAK_RTOL
) -> torch.Tensor:
    """1 where a map's peak lies inside its region, 0 where it does not: the majority of the tied maxima.

    The manipulation attack's "map peak inside the target" (the audit's ``peak_in_target`` and the attack's
    ``"peak"`` selection rule). A map with one maximum is inside when that pixel is. Where several pixels
    tie (within :data:`PEAK_RTOL`) — XRAI's flat regions, a bilinearly upsampled Grad-CAM's 2×2 blocks, a
    constant map — the image counts as inside when more than half of them lie in the region: the side a
    random tie-break would more likely land on, decided without randomness. ``"any"`` (the pointing game's
    default) would let a flat map score for free, ``"all"`` would fail a 2×2 peak that straddles the
    region's edge; an exact split counts as outside, since success must be shown.

    Args:
        maps: Maps ``[B, H, W]``; NaN pixels are never above a number.
        regions: Bool ``[B, H, W]`` (or one ``[H, W]``; 0/1 values are accepted): the target of each image.
        rtol: Relative tolerance of a tie with the maximum (0: exact ties only).

    Returns:
        Float64 tensor ``[B]`` of 1.0 / 0.0 on the maps' device (0 for an empty region, and for a map without
        any finite value — all NaN or ±inf —, whose "peak" would be every pixel; ``[0]`` for no images).

    Raises:
        RobustXAIError: On a non-tensor, a shape other than ``[B, H, W]``, a mismatched region or a
            negative, non-finite or non-number ``rtol`` (``True`` and strings included).
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or not maps.is_floating_point():
        raise RobustXAIError(f"maps must be a float tensor [B, H, W], got {_describe(maps)}")
    rtol = check_number(rtol, "rtol", minimum=0.0)
    inside = _check_masks(regions, maps.shape, maps.device)
    b = maps.shape[0]
    if maps.numel() == 0:  # no images, or maps without pixels: nothing lies inside
        return torch.zeros(b, dtype=torch.float64, device=maps.device)
    peak = peak_pixels(maps.detach(), rtol).reshape(b, -1)
    n_in = (peak & inside.reshape(b, -1)).sum(dim=1)
    has_number = torch.isfinite(maps.detach().reshape(b, -1)).any(dim=1)  # all NaN: no peak to place
    return ((2 * n_in > peak.sum(dim=1)) & has_number).to(torch.float64)


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}, {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


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
    :class:`~robustxai.data._truth.Truth` points, and lies in a disc when its distance to the point is
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
    peak = peak_pixels(maps)
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
