"""Gradient explainers on top of Captum: Saliency, Input × Gradient, Integrated Gradients (METHODS.md)."""

from __future__ import annotations

import torch
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency as CaptumSaliency
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer, check_batch_size
from robustxai.explain.references import check_reference, reference_images

IG_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")


@EXPLAINERS.register("saliency")
class Saliency(Explainer):
    """Vanilla gradient (Simonyan et al.): |∂f_c/∂x|, max over channels by default.

    Args:
        reduction: Channel reduction of the map.
    """

    name = "saliency"

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Absolute input gradient of the target logit."""
        attr: torch.Tensor = CaptumSaliency(model).attribute(
            images.requires_grad_(True), target=targets, abs=True
        )
        return attr


@EXPLAINERS.register("input_x_gradient")
class InputXGradient(Explainer):
    """Gradient × Input (Shrikumar et al.): x ⊙ ∂f_c/∂x; the map is max over channels of |·| by default.

    It is the first-order (Taylor) share of each pixel in the logit, relative to a black image: one
    backward pass, like Saliency.

    Args:
        reduction: Channel reduction of the map.
    """

    name = "input_x_gradient"

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed x ⊙ ∇f_c(x)."""
        attr: torch.Tensor = CaptumInputXGradient(model).attribute(
            images.requires_grad_(True), target=targets
        )
        return attr


@EXPLAINERS.register("integrated_gradients")
class IntegratedGradients(Explainer):
    """Integrated Gradients (Sundararajan et al.): (x − x₀)·∫ ∇f(x₀ + α(x − x₀)) dα.

    Args:
        n_steps: Points of the Riemann sum along the path (20 in the papers).
        baseline: The reference x₀: ``"zero"`` (black image), ``"mean"`` (each image's mean intensity) or
            ``"blurred"`` (the image under a Gaussian blur of ``blur_sigma`` pixels).
        blur_sigma: Standard deviation in pixels of the blur for ``baseline="blurred"``.
        method: Captum integration rule.
        batch_size: Images × steps evaluated per forward/backward pass (Captum's ``internal_batch_size``;
            at least one step of every image goes into a pass; ``None``: all ``B × n_steps`` in one pass).
            The default 64 keeps a pass near the image batch, which is where CPU throughput peaks
            (DESIGN.md budgets); larger passes are slower on CPU and only pay off on a GPU.
        reduction: Channel reduction of the map.
    """

    name = "integrated_gradients"

    def __init__(
        self,
        n_steps: int = 20,
        baseline: str = "zero",
        blur_sigma: float = 5.0,
        method: str = "riemann_middle",
        batch_size: int | None = 64,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise RobustXAIError(f"n_steps must be an integer ≥ 1, got {n_steps!r}")
        check_reference(baseline, blur_sigma)
        if method not in IG_METHODS:
            raise RobustXAIError(f"unknown IG method {method!r}; known: {', '.join(IG_METHODS)}")
        self.n_steps = n_steps
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.method = method
        self.batch_size = check_batch_size(batch_size)

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The path's starting image x₀ for each input."""
        return reference_images(images, self.baseline, self.blur_sigma)

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed IG attributions (completeness: their sum ≈ f_c(x) − f_c(x₀))."""
        rows = None if self.batch_size is None else max(self.batch_size, images.shape[0])
        attr: torch.Tensor = CaptumIG(model).attribute(
            images,
            baselines=self.baselines(images),
            target=targets,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=rows,
        )
        return attr
