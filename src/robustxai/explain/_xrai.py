"""XRAI (Kapishnikov et al. 2019): IG summed over Felzenszwalb regions, added greedily (METHODS.md).

The image is over-segmented by Felzenszwalb's algorithm at several scales; each segment, dilated a little, is
a candidate region. Starting from nothing, the region whose not-yet-covered pixels have the highest mean
attribution (the attribution *density*) is added, until no candidate adds ``min_pixel_diff`` new pixels; each
added part of the image gets its region's density, and what is left gets its own mean attribution. The
attributions are Integrated Gradients from robustxai's batched explainer, reduced by the maximum over
channels (as the PAIR ``saliency`` package does).

Differences from PAIR's ``saliency.core.XRAI`` (the reference the tests compare against):

- PAIR resizes every image to 224×224 before segmenting (≈ 0.5 s per image on a CPU). Here each image is
  segmented at its own size, with the pixel-count parameters — Felzenszwalb's ``scales`` and ``min_size``,
  ``min_pixel_diff`` (by area) and ``sigma`` and ``dilation_radius`` (by length) — given for a
  ``reference_size`` × ``reference_size`` image (224, PAIR's defaults) and scaled to the image, so regions
  cover the same share of a small image as PAIR's do of a large one. ``reference_size=None`` uses them as
  given, which is exactly PAIR's segmentation of an image it does not resize.
- PAIR's default IG averages a black and a white baseline; here the baseline is IG's own (zero or mean).
- The greedy search updates each candidate's uncovered count and attribution sum by the pixels just added
  instead of recomputing every mask (same choices, O(masks × pixels) per image instead of O(masks² × pixels)).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.morphology import disk
from skimage.segmentation import felzenszwalb
from torch import nn

from robustxai._arrays import minmax_array
from robustxai._errors import RobustXAIError
from robustxai._validate import check_images, check_int, check_number, check_optional_int
from robustxai.explain._base import EXPLAINERS, Explainer, as_attribution, reduce_channels
from robustxai.explain._differentiable import DifferentiableMap, Forward
from robustxai.explain._gradients import IntegratedGradients

PAIR_SCALES: tuple[float, ...] = (50, 100, 150, 250, 500, 1200)


def felzenszwalb_masks(
    images: torch.Tensor,
    scales: tuple[float, ...] = PAIR_SCALES,
    sigma: float = 0.8,
    min_size: int = 150,
    dilation_radius: int = 5,
) -> list[torch.Tensor]:
    """Candidate regions of each image: Felzenszwalb segments at every scale, dilated by a disk.

    Each image is min-max rescaled to [-1, 1] first (PAIR's convention, so ``scales`` mean the same for
    every image). Masks are ordered scale by scale, then by segment label, as PAIR orders them.

    Args:
        images: Images ``[B, C, H, W]`` in [0, 1].
        scales: Felzenszwalb ``scale`` values (larger: bigger segments).
        sigma: Gaussian pre-smoothing of Felzenszwalb, in pixels.
        min_size: Smallest segment, in pixels.
        dilation_radius: Radius of the disk each mask is dilated by (0: none).

    Returns:
        One boolean tensor ``[M_i, H, W]`` per image.
    """
    check_images(images)
    if not scales:
        raise RobustXAIError("scales must name at least one Felzenszwalb scale")
    offsets = np.argwhere(disk(int(dilation_radius))) - int(dilation_radius)
    out = []
    for image in images.detach().cpu().double().numpy():
        hwc = image.transpose(1, 2, 0)
        scaled = minmax_array(hwc) * 2 - 1 if hwc.max() > hwc.min() else np.zeros_like(hwc)
        masks = []
        for scale in scales:
            seg = felzenszwalb(scaled, scale=float(scale), sigma=float(sigma), min_size=int(min_size))
            masks.append(_dilated_masks(seg - seg.min(), offsets))
        out.append(torch.from_numpy(np.concatenate(masks)).to(images.device))
    return out


def _dilated_masks(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One mask per label of ``labels`` ``[H, W]``, dilated by the footprint ``offsets`` ``[K, 2]``.

    A pixel belongs to label l's dilated mask when some footprint offset from it lands on l, so one scatter
    per offset replaces a morphological dilation per mask (same result as skimage's ``dilation``).
    """
    h, w = labels.shape
    masks = np.zeros((int(labels.max()) + 1, h, w), dtype=bool)
    rows, cols = np.mgrid[0:h, 0:w]
    for dy, dx in offsets:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        masks[labels[r[inside], c[inside]], rows[inside], cols[inside]] = True
    return masks


def xrai_regions(
    attributions: torch.Tensor,
    masks: list[torch.Tensor],
    min_pixel_diff: int = 50,
    area_threshold: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """XRAI's greedy region ranking (PAIR's ``algorithm='full'``) for a batch of attribution maps.

    Args:
        attributions: Pixel attributions ``[B, H, W]``.
        masks: Candidate regions per image, boolean ``[M_i, H, W]``.
        min_pixel_diff: A candidate adding fewer new pixels than this is dropped for good.
        area_threshold: Stop once this share of the image is covered; the rest becomes one region.

    Returns:
        The XRAI map ``[B, H, W]`` (float64: each pixel holds the density of the region that added it) and
        the region rank of every pixel ``[B, H, W]`` (1 = most attributed region).
    """
    if attributions.ndim != 3:
        raise RobustXAIError(f"attributions must have shape [B, H, W], got {list(attributions.shape)}")
    if len(masks) != attributions.shape[0]:
        raise RobustXAIError(
            f"need one mask stack per image: {attributions.shape[0]} images, {len(masks)} stacks"
        )
    min_pixel_diff = check_int(min_pixel_diff, "min_pixel_diff", minimum=1)
    area_threshold = check_number(area_threshold, "area_threshold", above=0, maximum=1)
    b, h, w = attributions.shape
    maps, ranks = [], []
    for attr, stack in zip(attributions.detach().cpu().double().numpy(), masks, strict=True):
        if stack.ndim != 3 or tuple(stack.shape[1:]) != (h, w) or stack.dtype != torch.bool:
            raise RobustXAIError(
                f"masks must be boolean [M, {h}, {w}] per image, got {stack.dtype} {list(stack.shape)}"
            )
        value, rank = _greedy(
            attr.reshape(-1),
            stack.cpu().numpy().reshape(len(stack), -1),
            int(min_pixel_diff),
            float(area_threshold),
        )
        maps.append(torch.from_numpy(value.reshape(h, w)))
        ranks.append(torch.from_numpy(rank.reshape(h, w)))
    return torch.stack(maps).to(attributions.device), torch.stack(ranks).to(attributions.device)


def _greedy(
    attr: np.ndarray, masks: np.ndarray, min_pixel_diff: int, area_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """One image: flat attributions ``[P]``, masks ``[M, P]`` → (map ``[P]``, ranks ``[P]``)."""
    n_pixels = attr.shape[0]
    # [P, M]: the masks holding each pixel in one contiguous row (torch transposes bool blocks fast)
    by_pixel = torch.from_numpy(masks).T.contiguous().numpy()
    value = np.full(n_pixels, -np.inf)
    covered = np.zeros(n_pixels, dtype=bool)
    n_covered = 0
    uncovered_count = masks.sum(axis=1).astype(np.int64)
    uncovered_sum = attr @ by_pixel
    alive = np.ones(len(masks), dtype=bool)
    trace: list[tuple[np.ndarray, float]] = []
    while n_covered / n_pixels <= area_threshold:
        alive &= uncovered_count >= min_pixel_diff
        if not alive.any():
            break
        gains = np.where(alive, uncovered_sum / np.maximum(uncovered_count, 1), -np.inf)
        best = int(np.argmax(gains))  # first of equal gains, as PAIR's strict ">" scan
        added = np.flatnonzero(masks[best] & ~covered)
        value[added] = gains[best]
        covered[added] = True
        n_covered += len(added)
        alive[best] = False
        trace.append((added, float(gains[best])))
        touched = by_pixel[added]
        uncovered_count -= touched.sum(axis=0)
        uncovered_sum -= attr[added] @ touched
    rest = np.flatnonzero(~covered)
    if len(rest):
        value[rest] = attr[rest].mean()
    rank = np.zeros(n_pixels, dtype=np.int64)
    ordered = [pixels for pixels, _ in sorted(trace, key=lambda item: -item[1])]
    if len(rest):
        ordered.append(rest)
    for i, pixels in enumerate(ordered):
        rank[pixels] = i + 1
    return value, rank


@EXPLAINERS.register("xrai")
class XRAI(Explainer, DifferentiableMap):
    """XRAI on robustxai's batched Integrated Gradients; see the module docstring.

    The manipulation attack steers XRAI through the map it segments: :meth:`map_for_attack` is the IG map
    with XRAI's own IG settings, reduced by the maximum over channels (the segmentation and the greedy
    ranking are piecewise constant, so they have no useful gradient); the audit scores the real XRAI map.

    Args:
        n_steps: IG steps.
        baseline: IG baseline, ``"zero"`` or ``"mean"``.
        batch_size: IG image × step rows per pass; ``None``: the device's default
            (:func:`~robustxai.explain._base.rows_per_pass`).
        scales: Felzenszwalb scales (at ``reference_size``).
        sigma: Felzenszwalb smoothing (at ``reference_size``).
        min_size: Smallest segment in pixels (at ``reference_size``).
        dilation_radius: Dilation of each segment in pixels (at ``reference_size``).
        min_pixel_diff: Smallest number of new pixels a region must add (at ``reference_size``).
        area_threshold: Share of the image ranked region by region; the rest is one region.
        reference_size: Side of the image the pixel parameters are given for (``None``: the image's own).
        reduction: Channel reduction of the (single-channel) map; ``"max"`` keeps the sign of the densities.
    """

    name = "xrai"

    def __init__(
        self,
        n_steps: int = 20,
        baseline: str = "zero",
        batch_size: int | None = None,
        scales: tuple[float, ...] = PAIR_SCALES,
        sigma: float = 0.8,
        min_size: int = 150,
        dilation_radius: int = 5,
        min_pixel_diff: int = 50,
        area_threshold: float = 1.0,
        reference_size: int | None = 224,
        reduction: str = "max",
    ) -> None:
        super().__init__(reduction)
        # reduced by the signed maximum over channels, as the attributions XRAI segments
        self._ig = IntegratedGradients(
            n_steps=n_steps, baseline=baseline, batch_size=batch_size, reduction="max"
        )
        if isinstance(scales, str) or not isinstance(scales, tuple | list) or not scales:
            raise RobustXAIError(f"scales must be a non-empty list of numbers > 0, got {scales!r}")
        self.scales = tuple(check_number(s, "each of scales", above=0) for s in scales)
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.baseline = baseline
        self.batch_size = batch_size
        self.sigma = check_number(sigma, "sigma", minimum=0)
        self.min_size = check_int(min_size, "min_size", minimum=1)
        self.dilation_radius = check_int(dilation_radius, "dilation_radius", minimum=0)
        self.min_pixel_diff = check_int(min_pixel_diff, "min_pixel_diff", minimum=1)
        self.area_threshold = check_number(area_threshold, "area_threshold", above=0, maximum=1)
        self.reference_size = check_optional_int(reference_size, "reference_size", minimum=1)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Images pushed forward and backward: IG's steps (segmentation and ranking are overhead)."""
        return self._ig.passes(batch, height, width)

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """IG's image × step rows per pass."""
        return self._ig.pass_rows(batch, device)

    def pixel_parameters(self, height: int, width: int) -> dict[str, float]:
        """The segmentation parameters scaled from ``reference_size`` to an ``height`` × ``width`` image."""
        if self.reference_size is None:
            area = length = 1.0
        else:
            area = height * width / self.reference_size**2
            length = area**0.5
        return {
            "scale_factor": area,
            "sigma": self.sigma * length,
            "min_size": max(1, round(self.min_size * area)),
            "dilation_radius": round(self.dilation_radius * length),
            "min_pixel_diff": max(1, round(self.min_pixel_diff * area)),
        }

    def segment(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Candidate regions ``[M_i, H, W]`` of each image, at the image's own size."""
        p = self.pixel_parameters(images.shape[-2], images.shape[-1])
        return felzenszwalb_masks(
            images,
            scales=tuple(s * p["scale_factor"] for s in self.scales),
            sigma=p["sigma"],
            min_size=int(p["min_size"]),
            dilation_radius=int(p["dilation_radius"]),
        )

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """XRAI map ``[B, 1, H, W]``: each pixel holds the attribution density of the region that added it."""
        attr = as_attribution(self._ig._attribute(model, images, targets)).values.detach()
        ig = reduce_channels(attr, self._ig.reduction)
        p = self.pixel_parameters(images.shape[-2], images.shape[-1])
        value, _ = xrai_regions(ig, self.segment(images), int(p["min_pixel_diff"]), self.area_threshold)
        return value[:, None].to(images.dtype)

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """The IG map XRAI segments ``[B, H, W]`` (IG's own :meth:`~IntegratedGradients.map_for_attack`)."""
        return self._ig.map_for_attack(net, images, targets, create_graph)
