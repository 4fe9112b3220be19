"""Occlusion (Zeiler & Fergus 2014) on top of Captum's ``Occlusion`` (METHODS.md).

A square patch slides over the image; each position is replaced by a reference and the drop of the target
logit, S = f_c(x) − f_c(x with the patch = reference), is credited to the patch's pixels. A pixel covered by
several windows gets their mean. The last window of a row or column is cut at the border, so every pixel is
covered. The method needs no gradients, only forward passes: one per window (and one for the clean image).
"""

from __future__ import annotations

import torch
from captum.attr import Occlusion as CaptumOcclusion
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer, check_batch_size

OCCLUSION_BASELINES: tuple[str, ...] = ("zero", "mean")


def _positive_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RobustXAIError(f"{name} must be None or an integer ≥ 1, got {value!r}")
    return value


@EXPLAINERS.register("occlusion")
class Occlusion(Explainer):
    """Occlusion: S(i, j) = mean over windows covering (i, j) of f_c(x) − f_c(x with the window = baseline).

    Args:
        window: Side of the square patch in pixels; ``None``: 1/8 of the shorter image side, rounded (8 at
            64 px; METHODS.md uses 15 at 224 px).
        stride: Step between windows; ``None``: half the window (at least 1). Must not exceed the window.
        baseline: What the patch is set to: ``0`` / ``"zero"`` (black) or ``"mean"`` (the image's mean).
        batch_size: Images × windows evaluated per forward pass. Captum evaluates
            ``max(1, batch_size // B)`` windows of every image per pass; ``None`` (the default) means one
            window per image per pass, which DESIGN.md measured fastest on CPU (bigger passes were 2× slower).
        reduction: Channel reduction of the map. The default ``"max"`` keeps the sign of S (every channel
            holds the same value), so a patch that *raises* the logit when hidden is not mistaken for
            evidence; ``"max_abs"`` gives |S|.
    """

    name = "occlusion"

    def __init__(
        self,
        window: int | None = None,
        stride: int | None = None,
        baseline: str | int = "zero",
        batch_size: int | None = None,
        reduction: str = "max",
    ) -> None:
        super().__init__(reduction)
        self.window = _positive_int(window, "window")
        self.stride = _positive_int(stride, "stride")
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise RobustXAIError(f"stride ({self.stride}) must not exceed the window ({self.window})")
        if isinstance(baseline, bool) or baseline not in (0, *OCCLUSION_BASELINES):
            raise RobustXAIError(f"baseline must be 0, 'zero' or 'mean', got {baseline!r}")
        self.baseline = "zero" if baseline == 0 else str(baseline)
        self.batch_size = check_batch_size(batch_size)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        """The ``(window, stride)`` used on an image of ``height × width`` pixels."""
        window = self.window if self.window is not None else max(1, round(min(height, width) / 8))
        stride = self.stride if self.stride is not None else max(1, window // 2)
        if window > min(height, width):
            raise RobustXAIError(f"occlusion window {window} exceeds the image size {height}×{width}")
        if stride > window:
            raise RobustXAIError(f"stride ({stride}) must not exceed the window ({window})")
        return window, stride

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed occlusion attributions ``[B, C, H, W]`` (the same value in every channel)."""
        b, c, h, w = images.shape
        window, stride = self.geometry(h, w)
        if self.baseline == "zero":
            reference: float | torch.Tensor = 0.0
        else:
            reference = images.mean(dim=(1, 2, 3), keepdim=True)
        per_eval = 1 if self.batch_size is None else max(1, self.batch_size // b)
        attr: torch.Tensor = CaptumOcclusion(model).attribute(
            images,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=reference,
            target=targets,
            perturbations_per_eval=per_eval,
        )
        return attr.to(images.dtype)
