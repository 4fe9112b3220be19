"""Class-activation explainers on the model's declared layer: Grad-CAM and Guided Grad-CAM (METHODS.md)."""

from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from captum.attr import LayerGradCam
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer
from robustxai.models.wrapper import cam_layer


def cam_layer_of(model: nn.Module, layer: str | None) -> nn.Module:
    """The layer Grad-CAM uses: ``layer`` (a dotted path in ``model``) or the wrapper's declared one."""
    return cam_layer(model, layer, "layer")


@EXPLAINERS.register("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al.): ReLU(Σ_k w_k A_k), w_k = spatial mean of ∂f_c/∂A_k, upsampled bilinearly.

    Args:
        layer: Dotted path of the conv layer in the model; ``None`` uses the wrapper's ``cam_layer``.
        reduction: Channel reduction of the (single-channel) map.
    """

    name = "gradcam"

    def __init__(self, layer: str | None = None, reduction: str = "max_abs") -> None:
        super().__init__(reduction)
        self.layer = layer

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Coarse CAM ``[B, 1, h, w]`` (non-negative)."""
        cam = LayerGradCam(model, cam_layer_of(model, self.layer))
        attr: torch.Tensor = cam.attribute(images, target=targets, relu_attributions=True)
        return attr


CAM_UPSAMPLING: tuple[str, ...] = ("bilinear", "nearest", "bicubic", "area")


@EXPLAINERS.register("guided_gradcam")
class GuidedGradCAM(Explainer):
    """Guided Grad-CAM (Selvaraju et al.): Guided Backprop ⊙ the Grad-CAM map upsampled to the input.

    Guided Backprop passes only positive gradients back through ReLU *modules*; the built-in models use
    modules, not ``F.relu``, so the guidance reaches every ReLU.

    Args:
        layer: Dotted path of the conv layer in the model; ``None`` uses the wrapper's ``cam_layer``.
        interpolate_mode: How the coarse CAM is upsampled; ``"bilinear"`` (default) as in ``gradcam`` here,
            ``"nearest"`` as Captum's default.
        reduction: Channel reduction of the map.
    """

    name = "guided_gradcam"

    def __init__(
        self, layer: str | None = None, interpolate_mode: str = "bilinear", reduction: str = "max_abs"
    ) -> None:
        super().__init__(reduction)
        if interpolate_mode not in CAM_UPSAMPLING:
            raise RobustXAIError(
                f"interpolate_mode must be one of {', '.join(CAM_UPSAMPLING)}; got {interpolate_mode!r}"
            )
        self.layer = layer
        self.interpolate_mode = interpolate_mode

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """A Grad-CAM pass and a guided-backprop pass: 2 × ``batch`` forward and backward."""
        return 2 * batch, 2 * batch

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed Guided Grad-CAM attributions ``[B, C, H, W]``."""
        method = CaptumGuidedGradCam(model, cam_layer_of(model, self.layer))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Setting backward hooks on ReLU", category=UserWarning)
            attr: torch.Tensor = method.attribute(
                images.requires_grad_(True), target=targets, interpolate_mode=self.interpolate_mode
            )
        return attr
