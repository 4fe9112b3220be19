"""LIME (Ribeiro et al. 2016) on superpixels, batched across images and perturbations (METHODS.md).

Each image is cut into superpixels (quickshift or SLIC). A perturbation switches every superpixel on or off
with probability ½ (Captum's default sampler); an "off" superpixel is replaced by its own mean intensity. The
model's target logit on the perturbed images is regressed on the on/off vectors by a weighted ridge fit with
an intercept; the weights are an exponential kernel on the cosine distance between the original and the
perturbed image (Captum's ``Lime`` default: ``exp(-d² / (2 w²))``, ``w = 1``). The map paints each
superpixel's positive ridge weight on its pixels; the paper's mask keeps the top-k positive superpixels.

Captum's ``Lime`` trains one scikit-learn model per image and builds its perturbations one at a time. Here the
perturbations of all images go through the model in chunks of ``batch_size`` and the ridge systems of all
images are solved in one batched call, with the same numbers: for the same superpixels and seed the weights
equal Captum's ``Lime(..., interpretable_model=SkLearnRidge(alpha))`` called per image after
``torch.manual_seed(seed)`` (a test checks this). Each image draws its perturbations from its own generator
seeded with ``seed``, so an image's explanation does not depend on what else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_images, check_int, check_number, check_optional_int
from robustxai.explain._base import (
    EXPLAINERS,
    Explainer,
    Explanation,
    Target,
    balanced_rows,
    check_batch_size,
    resolve_targets,
    row_chunks,
    rows_per_pass,
)
from robustxai.explain._superpixels import SEGMENTATIONS, check_segments, segment_images


def superpixel_means(images: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each pixel replaced by the mean of its superpixel, per channel: the "switched off" image."""
    b, c, h, w = images.shape
    s = int(segments.max()) + 1
    index = segments.reshape(b, 1, h * w).expand(b, c, h * w)
    flat = images.reshape(b, c, h * w)
    sums = torch.zeros(b, c, s, dtype=images.dtype, device=images.device).scatter_add_(2, index, flat)
    counts = torch.zeros(b, 1, s, dtype=images.dtype, device=images.device)
    counts.scatter_add_(2, index[:, :1], torch.ones_like(flat[:, :1]))
    means = sums / counts.clamp(min=1)
    return means.gather(2, index).reshape(b, c, h, w)


def paint(weights: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Paint per-superpixel values ``[B, S]`` on their pixels: ``[B, H, W]``."""
    b, h, w = segments.shape
    return weights.gather(1, segments.reshape(b, h * w)).reshape(b, h, w)


def top_superpixel_mask(weights: torch.Tensor, segments: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The paper's LIME mask: the ``k`` superpixels with the largest positive weights (fewer if fewer > 0).

    Args:
        weights: Ridge weights per superpixel ``[B, S]``.
        segments: Superpixel labels ``[B, H, W]`` indexing ``weights``.
        k: How many superpixels to keep.

    Returns:
        Boolean mask ``[B, H, W]``.
    """
    k = check_int(k, "top_k", minimum=1)
    if weights.ndim != 2 or segments.ndim != 3 or weights.shape[0] != segments.shape[0]:
        raise RobustXAIError(
            f"weights [B, S] and segments [B, H, W] must share B, got {list(weights.shape)} "
            f"and {list(segments.shape)}"
        )
    if int(segments.max()) >= weights.shape[1]:
        raise RobustXAIError(f"segments has label {int(segments.max())} but only {weights.shape[1]} weights")
    kk = min(int(k), weights.shape[1])
    top = weights.topk(kk, dim=1).indices
    keep = torch.zeros_like(weights, dtype=torch.bool).scatter_(1, top, True) & (weights > 0)
    return paint(keep, segments)


@dataclass
class LimeFit:
    """The weighted ridge fit of every image.

    Attributes:
        weights: Ridge weight per superpixel ``[B, S]`` (``S`` = most superpixels in the batch; the unused
            columns of images with fewer superpixels are 0).
        intercept: Intercept of each fit ``[B]``.
        segments: Superpixel labels ``[B, H, W]``.
    """

    weights: torch.Tensor
    intercept: torch.Tensor
    segments: torch.Tensor

    def painted(self) -> torch.Tensor:
        """Weights painted on their superpixels ``[B, H, W]``."""
        return paint(self.weights, self.segments)


@EXPLAINERS.register("lime")
class Lime(Explainer):
    """LIME on superpixels with a weighted ridge fit, batched; see the module docstring.

    Args:
        n_samples: Perturbations per image (the lime package uses 1000; 256 keeps CPU audits affordable).
        segmentation: ``"quickshift"`` or ``"slic"``; see :func:`segment_images` for their keywords.
        n_segments: SLIC's approximate number of superpixels.
        compactness: SLIC's compactness.
        kernel_size: Quickshift's kernel width.
        max_dist: Quickshift's link cut-off.
        ratio: Quickshift's colour/space balance.
        kernel_width: Width ``w`` of the similarity kernel ``exp(-d² / (2 w²))`` on cosine distance.
        alpha: Ridge penalty (scikit-learn's ``Ridge(alpha)``; > 0).
        batch_size: Perturbed images (image × perturbation rows) per forward pass; ``None``: the device's
            default, 32 rows on CPU and 256 on a GPU (:func:`~robustxai.explain._base.rows_per_pass`).
            Bounds memory; never changes the numbers.
        seed: Seed of every image's perturbations (and of quickshift).
        top_k: ``None``: the map is the positive weights; an int: the map is the 0/1 mask of the ``top_k``
            positive superpixels (the paper's LIME mask, ``top_k=5``).
    """

    name = "lime"
    fixed_params = ("reduction",)

    def __init__(
        self,
        n_samples: int = 256,
        segmentation: str = "quickshift",
        n_segments: int = 50,
        compactness: float = 10.0,
        kernel_size: float = 4.0,
        max_dist: float = 200.0,
        ratio: float = 0.2,
        kernel_width: float = 1.0,
        alpha: float = 1.0,
        batch_size: int | None = None,
        seed: int = 0,
        top_k: int | None = None,
    ) -> None:
        super().__init__("max_abs")
        if segmentation not in SEGMENTATIONS:
            raise RobustXAIError(f"unknown segmentation {segmentation!r}; known: {', '.join(SEGMENTATIONS)}")
        self.n_samples = check_int(n_samples, "n_samples", minimum=1)
        self.segmentation = segmentation
        self.n_segments = check_int(n_segments, "n_segments", minimum=1)
        self.compactness = check_number(compactness, "compactness")
        self.kernel_size = check_number(kernel_size, "kernel_size")
        self.max_dist = check_number(max_dist, "max_dist")
        self.ratio = check_number(ratio, "ratio")
        self.kernel_width = check_number(kernel_width, "kernel_width", above=0)
        self.alpha = check_number(alpha, "alpha", above=0)
        self.batch_size = check_batch_size(batch_size)
        self.seed = check_int(seed, "seed")
        self.top_k = check_optional_int(top_k, "top_k", minimum=1)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Images pushed forward and backward by one call on ``batch`` images.

        LIME only runs forward, one pass per perturbation; segmentation and the ridge fits are overhead.
        """
        return batch * self.n_samples, 0

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Image × perturbation rows per forward pass (balanced passes: :func:`.base.row_chunks`)."""
        return balanced_rows(batch * self.n_samples, rows_per_pass(self.batch_size, device))

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """This explainer's superpixels of ``images`` ``[B, H, W]``."""
        return segment_images(
            images,
            self.segmentation,
            n_segments=self.n_segments,
            compactness=self.compactness,
            kernel_size=self.kernel_size,
            max_dist=self.max_dist,
            ratio=self.ratio,
            seed=self.seed,
        )

    def samples(self, n_features: torch.Tensor) -> torch.Tensor:
        """On/off vectors ``[B, n_samples, S]``; image i draws ``Bernoulli(½)^{S_i}`` from its own stream."""
        width = int(n_features.max())
        out = torch.zeros(len(n_features), self.n_samples, width)
        for i, s in enumerate(n_features.tolist()):
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            out[i, :, :s] = torch.bernoulli(torch.full((self.n_samples, s), 0.5), generator=gen)
        return out

    @torch.no_grad()
    def fit(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        segments: torch.Tensor | None = None,
    ) -> LimeFit:
        """Run the perturbations and the weighted ridge fits.

        Args:
            model: Classifier returning logits ``[B, K]``.
            images: Images ``[B, C, H, W]`` in [0, 1].
            targets: Class index explained per image ``[B]``.
            segments: Superpixel labels ``[B, H, W]`` (``None``: this explainer's segmentation).

        Returns:
            The ridge weights, intercepts and superpixels.
        """
        check_images(images)
        seg = self.segment(images) if segments is None else check_segments(segments, images)
        b, c, h, w = images.shape
        n_features = seg.reshape(b, -1).amax(dim=1).cpu() + 1
        z = self.samples(n_features).to(device=images.device, dtype=images.dtype)
        off = superpixel_means(images, seg)
        flat_seg = seg.reshape(b, 1, h * w)
        outputs = torch.empty(b * self.n_samples, dtype=torch.float64, device=images.device)
        for chunk in row_chunks(b * self.n_samples, self.pass_rows(b, images.device)):
            idx = torch.arange(chunk.start, chunk.stop, device=images.device)
            img, smp = idx // self.n_samples, idx % self.n_samples
            on = z[img, smp].unsqueeze(1).gather(2, flat_seg[img]).reshape(len(idx), 1, h, w) > 0
            perturbed = torch.where(on, images[img], off[img])
            logits = model(perturbed)
            outputs[idx] = logits.gather(1, targets[img, None].to(logits.device))[:, 0].double()
        similarity = _kernel(images, off, seg, z.double(), self.kernel_width)
        weights, intercept = weighted_ridge(
            z.double(),
            outputs.reshape(b, self.n_samples),
            similarity,
            self.alpha,
        )
        return LimeFit(weights=weights, intercept=intercept, segments=seg)

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed ridge weights painted on their superpixels ``[B, 1, H, W]``."""
        return self.fit(model, images, targets).painted()[:, None].to(images.dtype)

    def explain(
        self,
        model: nn.Module,
        images: torch.Tensor,
        target: Target = None,
        labels: torch.Tensor | None = None,
    ) -> Explanation:
        """Attributions are the signed painted weights; the map their positive part or the top-k mask."""
        check_images(images)
        targets = resolve_targets(model, images, target, labels)
        result = self.fit(model, images.detach(), targets)
        attr = result.painted()[:, None].to(images.dtype)
        if self.top_k is None:
            maps = attr[:, 0].clamp(min=0)
        else:
            maps = top_superpixel_mask(result.weights, result.segments, self.top_k).to(images.dtype)
        return Explanation(attributions=attr, maps=maps, targets=targets)


def _kernel(
    images: torch.Tensor, off: torch.Tensor, seg: torch.Tensor, z: torch.Tensor, width: float
) -> torch.Tensor:
    """``exp(-d² / (2 w²))``, d = cosine distance of each perturbed image to its original ``[B, N]``.

    A perturbed image is the original on switched-on superpixels and ``off`` elsewhere, so its dot product
    with the original and its norm are sums of per-superpixel terms: no pass over the perturbed pixels.
    """
    b = images.shape[0]
    width_s = z.shape[2]
    flat = seg.reshape(b, -1)

    def per_segment(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(b, width_s, dtype=torch.float64, device=images.device)
        return out.scatter_add_(1, flat, values.double().sum(dim=1).reshape(b, -1))

    xx, xb, bb = per_segment(images * images), per_segment(images * off), per_segment(off * off)
    dot = z @ xx[..., None] + (1 - z) @ xb[..., None]
    norm2 = z @ xx[..., None] + (1 - z) @ bb[..., None]
    cos = dot[..., 0] / (xx.sum(dim=1, keepdim=True) * norm2[..., 0]).sqrt().clamp(min=1e-12)
    return torch.exp(-((1 - cos) ** 2) / (2 * width**2))


def weighted_ridge(
    x: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched ridge with intercept, ``min Σ wᵢ (yᵢ − xᵢβ − b)² + α‖β‖²``, as scikit-learn's ``Ridge``.

    Args:
        x: Features ``[B, N, S]``.
        y: Targets ``[B, N]``.
        sample_weight: Non-negative weights ``[B, N]``.
        alpha: Penalty (> 0, so all-zero feature columns get weight 0 and the system stays solvable).

    Returns:
        Coefficients ``[B, S]`` and intercepts ``[B]``.
    """
    wsum = sample_weight.sum(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
    x_mean = (sample_weight[..., None] * x).sum(dim=1) / wsum
    y_mean = (sample_weight * y).sum(dim=1, keepdim=True) / wsum
    xc = x - x_mean[:, None]
    yc = y - y_mean
    xw = xc * sample_weight[..., None]
    gram = xw.transpose(1, 2) @ xc
    gram = gram + alpha * torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
    coef = torch.linalg.solve(gram, (xw.transpose(1, 2) @ yc[..., None]))[..., 0]
    intercept = y_mean[:, 0] - (x_mean * coef).sum(dim=1)
    return coef, intercept
