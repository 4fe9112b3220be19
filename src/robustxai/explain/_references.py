"""Reference ("baseline") images for path and difference attributions: IG, DeepLIFT, occlusion.

A reference is what "absence of signal" means to the method. A black image (``"zero"``) is the classic
choice; each image's mean intensity (``"mean"``) avoids treating black as neutral, which matters for X-rays
whose background is black; a Gaussian blur of the image (``"blurred"``, Sturmfels et al. 2020) removes fine
structure but keeps the layout, so the attribution concentrates on edges and texture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustxai._errors import RobustXAIError

REFERENCES: tuple[str, ...] = ("zero", "mean", "blurred")

# Kernel radius in standard deviations, as scipy.ndimage.gaussian_filter (truncate=4.0).
_TRUNCATE = 4.0


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` with half-sample symmetric reflection.

    ``d c b a | a b c d | d c b a`` repeated as far as needed, so any radius works on any image size
    (``F.pad(mode="reflect")`` needs padding shorter than the axis and mirrors about the edge sample).
    """
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx < n, idx, 2 * n - 1 - idx)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel of ``images`` ``[B, C, H, W]`` with a Gaussian of ``sigma`` pixels.

    Separable, truncated at 4σ and with half-sample symmetric borders, i.e. the same filter as
    ``scipy.ndimage.gaussian_filter(x, sigma, mode="reflect")`` on the two spatial axes. ``sigma = 0``
    returns the images unchanged.
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise RobustXAIError(f"blur sigma must be a finite number ≥ 0, got {sigma!r}")
    if sigma == 0:
        return images.clone()
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    x = x.index_select(2, _reflect_index(h, radius, images.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, _reflect_index(w, radius, images.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.reshape(b, c, h, w)


def check_reference(kind: str, blur_sigma: float) -> None:
    """Check a reference name and its blur sigma at construction time."""
    if kind not in REFERENCES:
        raise RobustXAIError(f"baseline must be one of {', '.join(map(repr, REFERENCES))}; got {kind!r}")
    try:
        sigma = float(blur_sigma)
    except (TypeError, ValueError):
        raise RobustXAIError(f"blur_sigma must be a number, got {blur_sigma!r}") from None
    if not math.isfinite(sigma) or sigma <= 0:
        raise RobustXAIError(f"blur_sigma must be a finite number > 0 (pixels), got {blur_sigma!r}")


def reference_images(images: torch.Tensor, kind: str, blur_sigma: float = 5.0) -> torch.Tensor:
    """The reference image for each input: ``"zero"``, ``"mean"`` (per image) or ``"blurred"``.

    Args:
        images: Images ``[B, C, H, W]`` in [0, 1].
        kind: One of :data:`REFERENCES`.
        blur_sigma: Standard deviation in pixels of the Gaussian for ``"blurred"``.

    Returns:
        References of the images' shape, dtype and device (still in [0, 1]).
    """
    check_reference(kind, blur_sigma)
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images).contiguous()
    return gaussian_blur(images, float(blur_sigma))
