"""Superpixels for LIME (quickshift or SLIC), one image per thread, as consecutive labels.

Kept apart from :mod:`robustxai.explain._lime` (perturbations and ridge fits) so each stays readable;
LIME re-exports :func:`segment_images`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from skimage.segmentation import quickshift, slic

from robustxai._errors import RobustXAIError
from robustxai._validate import check_images

__all__ = ["SEGMENTATIONS", "check_segments", "segment_images"]

SEGMENTATIONS: tuple[str, ...] = ("quickshift", "slic")


def _segment_one(
    image: np.ndarray,
    *,
    method: str,
    n_segments: int,
    compactness: float,
    kernel_size: float,
    max_dist: float,
    ratio: float,
    seed: int,
) -> torch.Tensor:
    """Consecutive superpixel labels ``[H, W]`` of one ``[C, H, W]`` image (see :func:`segment_images`)."""
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    channels = hwc.shape[-1]
    if method == "slic":
        labels = slic(
            hwc if channels > 1 else hwc[..., 0],
            n_segments=int(n_segments),
            compactness=float(compactness),
            start_label=0,
            channel_axis=-1 if channels > 1 else None,
        )
    else:
        rgb = np.repeat(hwc, 3, axis=-1) if channels == 1 else hwc
        labels = quickshift(
            rgb,
            kernel_size=float(kernel_size),
            max_dist=float(max_dist),
            ratio=float(ratio),
            convert2lab=rgb.shape[-1] == 3,
            rng=int(seed),
        )
    _, consecutive = np.unique(labels, return_inverse=True)
    return torch.from_numpy(consecutive.reshape(labels.shape).astype(np.int64))


def segment_images(
    images: torch.Tensor,
    method: str = "quickshift",
    *,
    n_segments: int = 50,
    compactness: float = 10.0,
    kernel_size: float = 4.0,
    max_dist: float = 200.0,
    ratio: float = 0.2,
    seed: int = 0,
) -> torch.Tensor:
    """Superpixels of each image as consecutive labels ``0 … S_i − 1``.

    Args:
        images: Images ``[B, C, H, W]`` in [0, 1].
        method: ``"quickshift"`` (the lime package's default, with its defaults ``kernel_size=4``,
            ``max_dist=200``, ``ratio=0.2``) or ``"slic"`` (``n_segments``, ``compactness``).
        n_segments: SLIC's approximate number of superpixels.
        compactness: SLIC's balance of colour against space.
        kernel_size: Quickshift's Gaussian kernel width.
        max_dist: Quickshift's cut-off for linking pixels.
        ratio: Quickshift's balance of colour against space.
        seed: Quickshift's tie-breaking seed.

    Returns:
        Labels ``[B, H, W]`` (long, on the images' device).
    """
    check_images(images)
    if method not in SEGMENTATIONS:
        raise RobustXAIError(f"unknown segmentation {method!r}; known: {', '.join(SEGMENTATIONS)}")
    one = partial(
        _segment_one,
        method=method,
        n_segments=n_segments,
        compactness=compactness,
        kernel_size=kernel_size,
        max_dist=max_dist,
        ratio=ratio,
        seed=seed,
    )
    arrays = list(images.detach().cpu().double().numpy())
    # scikit-image's segmentations release the GIL: one image per thread, as many threads as torch uses.
    workers = max(1, min(len(arrays), torch.get_num_threads()))
    if workers == 1:
        out = [one(a) for a in arrays]
    else:
        with ThreadPoolExecutor(workers) as pool:
            out = list(pool.map(one, arrays))
    return torch.stack(out).to(images.device)


def check_segments(segments: object, images: torch.Tensor) -> torch.Tensor:
    """Check superpixel labels ``[B, H, W]``: integers ``0 … S_i − 1`` matching the images."""
    b, _, h, w = images.shape
    if not isinstance(segments, torch.Tensor):
        raise RobustXAIError(f"segments must be a torch.Tensor, got {type(segments).__name__}")
    if tuple(segments.shape) != (b, h, w):
        raise RobustXAIError(f"segments must have shape {[b, h, w]}, got {list(segments.shape)}")
    if segments.is_floating_point() or segments.dtype == torch.bool:
        raise RobustXAIError(f"segments must hold integer labels, got dtype {segments.dtype}")
    seg = segments.long().to(images.device)
    if int(seg.min()) < 0:
        raise RobustXAIError("segments must be labelled 0 … S − 1, got a negative label")
    return seg
