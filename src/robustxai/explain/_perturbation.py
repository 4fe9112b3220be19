"""Occlusion (Zeiler & Fergus 2014) on top of Captum's ``Occlusion`` (METHODS.md).

A square patch slides over the image; each position is replaced by a reference and the drop of the target
logit, S = f_c(x) − f_c(x with the patch = reference), is credited to the patch's pixels. A pixel covered by
several windows gets their mean. The last window of a row or column is cut at the border, so every pixel is
covered. The method needs no gradients, only forward passes: one per window (and one for the clean image).

Those passes are computed incrementally (:mod:`robustxai.explain._incremental`, Nakandala et al. 2019): the
clean activations are kept and each layer is re-evaluated only on the box a window can reach, so a window
costs a fraction of a forward pass; the numbers are Captum's. Models the incremental engine does not support
(untraceable, in training mode, ...) go through Captum's ``Occlusion`` itself, one window per image per pass.
Which of the two ran is the call's :attr:`~robustxai.explain._base.Explanation.engine`.
"""

from __future__ import annotations

import math

import torch
from captum.attr import Occlusion as CaptumOcclusion
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_optional_int
from robustxai.explain import _incremental as incremental
from robustxai.explain._base import EXPLAINERS, Attribution, Explainer, check_batch_size

OCCLUSION_BASELINES: tuple[str, ...] = ("zero", "mean")


@EXPLAINERS.register("occlusion")
class Occlusion(Explainer):
    """Occlusion: S(i, j) = mean over windows covering (i, j) of f_c(x) − f_c(x with the window = baseline).

    Args:
        window: Side of the square patch in pixels; ``None``: 1/8 of the shorter image side, rounded (8 at
            64 px; METHODS.md uses 15 at 224 px).
        stride: Step between windows; ``None``: half the window (at least 1). Must not exceed the window.
        baseline: What the patch is set to: ``0`` / ``"zero"`` (black) or ``"mean"`` (the image's mean).
        batch_size: Images × windows evaluated per pass. ``None`` (the default): the incremental engine
            sizes its passes to stay in cache, and the Captum fallback evaluates one window per image per
            pass (DESIGN.md measured that fastest on CPU); an integer: that many rows per incremental pass,
            ``max(1, batch_size // B)`` windows of every image per Captum pass.
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
        self.window = check_optional_int(window, "window", minimum=1)
        self.stride = check_optional_int(stride, "stride", minimum=1)
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

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Forward passes (images) of the full computation, and backward passes (none).

        One forward per window and image plus the unoccluded images; incremental evaluation does less work
        than that (see the module docstring).
        """
        window, stride = self.geometry(height, width)
        windows = (math.ceil((height - window) / stride) + 1) * (math.ceil((width - window) / stride) + 1)
        return batch * (windows + 1), 0

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Attribution:
        """Signed occlusion attributions ``[B, C, H, W]`` (one value in every channel), and the engine."""
        done = self._incremental(model, images, targets)
        if done is not None:
            return done[0]
        b, c, h, w = images.shape
        window, stride = self.geometry(h, w)
        per_eval = 1 if self.batch_size is None else max(1, self.batch_size // b)
        attr: torch.Tensor = CaptumOcclusion(model).attribute(
            images,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=self._reference(images),
            target=targets,
            perturbations_per_eval=per_eval,
        )
        return Attribution(attr.to(images.dtype), engine="captum")

    def _attribute_predicted(
        self, model: nn.Module, images: torch.Tensor
    ) -> tuple[Attribution, torch.Tensor] | None:
        """Attributions for the predicted classes, read from the clean pass the method runs anyway."""
        return self._incremental(model, images, None)

    def _reference(self, images: torch.Tensor) -> float | torch.Tensor:
        return 0.0 if self.baseline == "zero" else images.mean(dim=(1, 2, 3), keepdim=True)

    def _incremental(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[Attribution, torch.Tensor] | None:
        """The incremental engine's attributions and targets; ``None`` when it cannot run on this model."""
        window, stride = self.geometry(*images.shape[-2:])
        reference = self._reference(images)
        done = incremental.occlusion(model, images, targets, window, stride, reference, self.batch_size)
        if done is None:
            return None
        return Attribution(done[0].to(images.dtype), engine="incremental"), done[1]
