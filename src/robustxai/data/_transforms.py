"""Image transforms of the data layer: resizing, channel conversion and intensity pre-processing.

Why here: whatever a study did to its images before the model saw them (resize to 224 px, repeat a gray
X-ray into three channels for an ImageNet backbone, the chest X-ray high-pass of the attentive-CNN paper) is
part of the data, so attacks and explanations see the same [0, 1] images the model was trained on. Mean/std
normalisation is *not* a data transform: it lives inside the model (DESIGN.md).

Geometric transforms (:func:`resize`) move the ground truth with the image. Intensity transforms (the
:data:`TRANSFORMS` registry, e.g. ``"highpass"``) map a ``[C, H, W]`` image in [0, 1] to another of the same
shape and range and leave the truth alone. :class:`~robustxai.data._folder.FolderDataset` applies them in the
order read → channels → resize → intensity transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from robustxai._errors import DataError
from robustxai._registry import Registry
from robustxai.data._truth import Truth

Transform = Callable[[torch.Tensor], torch.Tensor]
TransformSpec = str | Transform | Sequence[str | Transform] | None

TRANSFORMS: Registry[Transform] = Registry("transform")

# ITU-R BT.601 luma weights, as PIL's ``convert("L")`` uses them.
_LUMA = (0.299, 0.587, 0.114)


def resize(image: torch.Tensor, truth: Truth, size: tuple[int, int]) -> tuple[torch.Tensor, Truth]:
    """Resize an image ``[C, H, W]`` to ``size`` = (rows, columns) and move its truth with it.

    Bilinear with antialiasing (area-like when shrinking), centre-aligned pixels, result clamped to [0, 1]
    (bilinear interpolation of values in [0, 1] stays in [0, 1] up to rounding).
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if (h, w) == tuple(size):
        return image, truth
    out = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return out.clamp(0.0, 1.0), truth.resized((h, w), (int(size[0]), int(size[1])))


def to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``[C, H, W]`` to 1 or 3 channels: gray is repeated, RGB becomes BT.601 luma.

    Why: ImageNet backbones expect three channels; repeating a gray image keeps its values exactly (so an
    ε-ball in 1-channel space maps onto one in 3-channel space), where a learned adapter would not.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"image must have shape [1|3, H, W], got {tuple(image.shape)}")
    c = int(image.shape[0])
    if c == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1).clone()
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True).clamp(0.0, 1.0)


def gaussian_kernel(sigma: float, truncate: float = 3.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 1-D Gaussian kernel OpenCV builds for ``GaussianBlur(img, (0, 0), sigma)``.

    Size ``round(2·truncate·σ + 1) | 1`` (OpenCV uses truncate 3 for 8-bit images and 4 for float ones),
    samples ``exp(−i² / 2σ²)`` at integer offsets, normalised to sum 1.
    """
    if not sigma > 0:
        raise DataError(f"sigma must be > 0, got {sigma!r}")
    if not truncate > 0:
        raise DataError(f"truncate must be > 0, got {truncate!r}")
    size = int(round(2.0 * truncate * sigma + 1.0)) | 1
    r = (size - 1) // 2
    x = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _reflect101(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source indices for ``n`` samples padded by ``pad`` each side, mirrored without repeating the edge.

    This is OpenCV's ``BORDER_REFLECT_101`` (and SciPy's ``mode="mirror"``): ``… c b | a b c … | b a …``;
    it folds as often as needed, so a kernel wider than the image is fine.
    """
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _blur_matrix(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` matrix M with ``M @ v`` = ``v`` convolved with ``kernel`` under a reflect-101 border."""
    r = (kernel.numel() - 1) // 2
    src = _reflect101(n, r, kernel.device).unfold(0, kernel.numel(), 1)  # [n, taps]: source of each tap
    m = torch.zeros(n, n, dtype=kernel.dtype, device=kernel.device)
    return m.scatter_add_(1, src, kernel.expand(n, -1).contiguous())


def gaussian_blur(image: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of each channel of ``[C, H, W]``, reflect-101 border, float64 inside.

    Each 1-D pass is a product with a banded ``[n, n]`` matrix (taps folded back at the borders), which is
    exact and much faster on CPU than a float64 convolution with a 121-tap kernel.
    """
    k = gaussian_kernel(sigma, truncate).to(image.device)
    x = image.to(torch.float64)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    out = _blur_matrix(h, k) @ x @ _blur_matrix(w, k).T
    return out.to(image.dtype)


def highpass(
    image: torch.Tensor, sigma: float = 20.0, gain: float = 4.0, offset: float = 128.0, truncate: float = 3.0
) -> torch.Tensor:
    """The chest X-ray high-pass of the attentive-CNN paper (METHODS.md), on a ``[C, H, W]`` image in [0, 1].

    Steps: min–max to [0, 255] over the whole image; ``B`` = Gaussian blur with σ = ``sigma``;
    ``x' = clip(gain·x − gain·B + offset, 0, 255)``; divide by 255. A constant image gives ``offset/255``.

    The blur matches ``cv2.GaussianBlur(x, (0, 0), sigma)`` as the paper called it on 8-bit images: OpenCV's
    default ``BORDER_REFLECT_101`` border and a kernel truncated at ``truncate`` = 3 σ (121 taps at σ = 20;
    OpenCV's float path would use 4 σ). It equals OpenCV's float result to rounding error; 8-bit OpenCV
    also rounds the blur (fixed point, off by up to ~1.5 grey levels) and the gain of 4 amplifies that, so
    the paper's 8-bit images differ from these by a few grey levels at most (under one on average).

    Args:
        image: ``[C, H, W]`` float in [0, 1]; every channel is blurred separately.
        sigma: Blur standard deviation in pixels of ``image`` (so apply it after resizing to the model size).
        gain: Weight of the detail (paper: 4).
        offset: Grey level of flat regions on the 0–255 scale (paper: 128).
        truncate: Kernel half-width in units of σ.
    """
    if image.ndim != 3 or not image.is_floating_point():
        raise DataError(f"highpass: expected a float image [C, H, W], got {tuple(image.shape)} {image.dtype}")
    lo, hi = image.min(), image.max()
    span = hi - lo
    x = (image - lo) / span * 255.0 if float(span) > 0 else torch.zeros_like(image)
    blurred = gaussian_blur(x, sigma, truncate)
    out = (gain * x - gain * blurred + offset).clamp(0.0, 255.0) / 255.0
    return out.to(image.dtype)


@TRANSFORMS.register("highpass")
class HighPass:
    """Registered form of :func:`highpass` (``create_transform("highpass", sigma=20)``)."""

    def __init__(
        self, sigma: float = 20.0, gain: float = 4.0, offset: float = 128.0, truncate: float = 3.0
    ) -> None:
        gaussian_kernel(sigma, truncate)  # validates sigma and truncate now, not at the first image
        self.sigma, self.gain, self.offset, self.truncate = float(sigma), float(gain), float(offset), truncate

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """High-pass ``image`` ``[C, H, W]`` (see :func:`highpass`)."""
        return highpass(image, self.sigma, self.gain, self.offset, self.truncate)

    def __repr__(self) -> str:
        return (
            f"HighPass(sigma={self.sigma}, gain={self.gain}, offset={self.offset}, truncate={self.truncate})"
        )


def create_transform(name: str, **kwargs: object) -> Transform:
    """Create a registered intensity transform by name (unknown names and keywords list what exists)."""
    return TRANSFORMS.create(name, **kwargs)


def list_transforms() -> list[str]:
    """Names of the registered intensity transforms."""
    return TRANSFORMS.names()


def build_transforms(spec: TransformSpec) -> list[Transform]:
    """Turn ``None``, a name, a callable or a list of them into a list of transforms (names: registry)."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) or callable(spec) else list(spec)
    out: list[Transform] = []
    for item in items:
        if isinstance(item, str):
            out.append(create_transform(item))
        elif callable(item):
            out.append(item)
        else:
            raise DataError(f"a transform must be a name or a callable, got {type(item).__name__}")
    return out


def apply_transforms(image: torch.Tensor, transforms: Sequence[Transform], sid: str) -> torch.Tensor:
    """Apply intensity transforms in order, checking that each keeps the shape and the [0, 1] range."""
    for t in transforms:
        out = t(image)
        if not isinstance(out, torch.Tensor) or out.shape != image.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(f"transform {t!r} changed image {sid!r} from {tuple(image.shape)} to {got}")
        if not bool(torch.isfinite(out).all()) or float(out.min()) < 0.0 or float(out.max()) > 1.0:
            raise DataError(f"transform {t!r} left image {sid!r} outside [0, 1]")
        image = out
    return image
