"""Gradient-path explainers on top of Captum: Saliency and Integrated Gradients (METHODS.md)."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency as CaptumSaliency
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer

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


@EXPLAINERS.register("integrated_gradients")
class IntegratedGradients(Explainer):
    """Integrated Gradients (Sundararajan et al.): (x − x₀)·∫ ∇f(x₀ + α(x − x₀)) dα.

    Args:
        n_steps: Points of the Riemann sum along the path (20 in the papers).
        baseline: ``"zero"`` (black image) or ``"mean"`` (each image's mean intensity).
        method: Captum integration rule.
        batch_size: Images × steps evaluated per forward/backward pass (``None``: one pass of
            ``B × n_steps``); bounds memory.
        reduction: Channel reduction of the map.
    """

    name = "integrated_gradients"

    def __init__(
        self,
        n_steps: int = 20,
        baseline: str = "zero",
        method: str = "riemann_middle",
        batch_size: int | None = 256,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        if int(n_steps) < 1:
            raise RobustXAIError(f"n_steps must be ≥ 1, got {n_steps}")
        if baseline not in ("zero", "mean"):
            raise RobustXAIError(f"baseline must be 'zero' or 'mean', got {baseline!r}")
        if method not in IG_METHODS:
            raise RobustXAIError(f"unknown IG method {method!r}; known: {', '.join(IG_METHODS)}")
        self.n_steps = int(n_steps)
        self.baseline = baseline
        self.method = method
        self.batch_size = batch_size

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The path's starting image for each input."""
        if self.baseline == "zero":
            return torch.zeros_like(images)
        return images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images).contiguous()

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed IG attributions (completeness: their sum ≈ f_c(x) − f_c(x₀))."""
        attr: torch.Tensor = CaptumIG(model).attribute(
            images,
            baselines=self.baselines(images),
            target=targets,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=self.batch_size,
        )
        return attr
