"""Class-activation explainers: Grad-CAM on the model's declared layer (METHODS.md)."""

from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer
from robustxai.models.wrapper import find_submodule


def cam_layer_of(model: nn.Module, layer: str | None) -> nn.Module:
    """The layer Grad-CAM uses: ``layer`` (a dotted path in ``model``) or the wrapper's declared one."""
    if layer is not None:
        return find_submodule(model, layer, f"layer {layer!r} not found in the model")
    getter = getattr(model, "get_cam_layer", None)
    if getter is None:
        raise RobustXAIError("Grad-CAM needs layer=... for a model that is not a robustxai ModelWrapper")
    found: nn.Module = getter()
    return found


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
