"""Ground truth for one image: an optional mask and optional expert points.

Both are in the pixel coordinates of the image as the model sees it. Points are ``(x, y)`` — column, row —
as annotation tools export them. Resizing the image must move the truth with it (:meth:`Truth.resized`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from robustxai._errors import DataError


def resize_mask(mask: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask in register with a bilinearly/area-resized image.

    Downsampling averages the covered area (a pixel is in the mask if at least half of it was); upsampling
    interpolates bilinearly with centre-aligned pixels, like the image. A thin mask that would vanish keeps
    every pixel it touches, so an annotation never disappears silently.
    """
    src = torch.from_numpy(mask.astype(np.float32))[None, None]
    down = dst_hw[0] <= mask.shape[0] and dst_hw[1] <= mask.shape[1]
    if down:
        cover = F.interpolate(src, size=dst_hw, mode="area")
    else:
        cover = F.interpolate(src, size=dst_hw, mode="bilinear", align_corners=False)
    out = cover[0, 0] >= 0.5
    if mask.any() and not out.any():
        out = cover[0, 0] > 0
    return out.numpy()


@dataclass(frozen=True)
class Truth:
    """Expert annotation of one image.

    Attributes:
        mask: Boolean array ``[H, W]`` marking the finding, or ``None``.
        points: Float array ``[N, 2]`` of ``(x, y)`` pixel positions on the finding, or ``None``.
    """

    mask: np.ndarray | None = None
    points: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.ndim != 2:
                raise DataError(f"Truth.mask must be 2-D [H, W], got shape {m.shape}")
            object.__setattr__(self, "mask", m.astype(bool))
        if self.points is not None:
            p = (
                np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
                if np.size(self.points)
                else (np.zeros((0, 2)))
            )
            object.__setattr__(self, "points", p)

    @property
    def empty(self) -> bool:
        """True when the image has no annotation at all (e.g. a negative case)."""
        no_mask = self.mask is None or not self.mask.any()
        no_points = self.points is None or len(self.points) == 0
        return no_mask and no_points

    def resized(self, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Truth:
        """Return the truth for the image resized from ``src_hw`` to ``dst_hw`` (rows, columns)."""
        mask = None
        if self.mask is not None:
            mask = resize_mask(self.mask, dst_hw)
        points = None
        if self.points is not None:
            sx = dst_hw[1] / src_hw[1]
            sy = dst_hw[0] / src_hw[0]
            # Pixel centres map as (p + 0.5) * s - 0.5.
            points = (self.points + 0.5) * np.array([sx, sy]) - 0.5
        return Truth(mask=mask, points=points)
