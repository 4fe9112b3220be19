"""Class-activation explainers on the model's declared layer: Grad-CAM and Guided Grad-CAM (METHODS.md).

A CNN's layer outputs a channels-first map and goes through Captum, as before. A transformer's layer
outputs tokens (ViT, DeiT, XCiT: ``[B, N, C]``) or a channels-last map (Swin: ``[B, h, w, C]``); its output
and gradient are reshaped to ``[B, C, h, w]`` (prefix tokens dropped,
:func:`~robustxai.models._tokens.to_grid`) and Grad-CAM's formula is applied to that grid — the same
formula, so the two paths agree on a CNN.

The differentiable maps for the manipulation attack (:meth:`GradCAM.map_for_attack`,
:meth:`GuidedGradCAM.map_for_attack`) are Grad-CAM's formula written with ``create_graph=True``
(:func:`gradcam_coarse`, channels-first layers); the tests pin them to Captum.
"""

from __future__ import annotations

import threading
import warnings

import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, GuidedGradCam as CaptumGuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from robustxai._errors import NotApplicableError, RobustXAIError
from robustxai.explain._base import EXPLAINERS, Explainer, reduce_channels
from robustxai.explain._differentiable import DifferentiableMap, Forward, module_of, target_gradients
from robustxai.models._tokens import infer_layout, num_prefix_tokens, to_grid
from robustxai.models._wrapper import cam_layer

NO_SPATIAL_LAYER = (
    "no spatial layer: the model probe found neither a convolutional feature map nor a token grid (name one "
    "with layer=...)"
)


def cam_layer_of(model: nn.Module, layer: str | None) -> nn.Module:
    """The layer Grad-CAM uses: ``layer`` (a dotted path in ``model``) or the wrapper's declared one."""
    return cam_layer(model, layer, "layer")


def cam_layout_of(model: nn.Module, layer: str | None) -> tuple[str | None, int]:
    """The declared layout and prefix of the Grad-CAM layer.

    A layer named by the user that is the wrapper's own Grad-CAM layer keeps its declared layout; any other
    gives ``(None, 0)``: its layout is read from its output (:func:`~robustxai.models._tokens.infer_layout`).
    """
    declared = str(getattr(model, "cam_layout", "nchw")), int(getattr(model, "cam_prefix", 0))
    if layer is None:
        return declared
    own = getattr(model, "get_cam_layer", None)
    if (
        own is not None
        and getattr(model, "cam_layer", None) is not None
        and cam_layer_of(model, layer) is own()
    ):
        return declared
    return None, 0


def _prefix_hint(model: nn.Module) -> int | None:
    """Leading non-patch tokens as the model declares them (its token layer's, or timm's count), or None."""
    if getattr(model, "cam_layout", None) == "tokens":
        return int(getattr(model, "cam_prefix", 0))
    return num_prefix_tokens(getattr(model, "net", model))


def cam_applicable(model: nn.Module, layer: str | None) -> str | None:
    """Why Grad-CAM cannot run on ``model`` (``None`` when it can).

    A wrapper without a spatial layer, or a named ``layer`` the model does not have (an audit of several
    models may name a layer only some of them have: the others skip the method with that reason).
    """
    if layer is not None:
        try:
            cam_layer_of(model, layer)
        except RobustXAIError as err:
            return str(err)
        return None
    if getattr(model, "get_cam_layer", None) is None:
        return "Grad-CAM needs layer=... for a model that is not a robustxai ModelWrapper"
    if getattr(model, "cam_layer", "") is None:
        return NO_SPATIAL_LAYER
    return None


def grid_gradcam(
    model: nn.Module,
    module: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layout: str | None,
    prefix: int,
) -> torch.Tensor:
    """Grad-CAM ``[B, 1, h, w]`` on a layer of any layout.

    ReLU(Σ_k w_k A_k), w_k = mean over the grid of ∂f_c/∂A_k, with A the layer's output laid out as a
    channels-first grid (:func:`~robustxai.models._tokens.to_grid`; ``layout=None``: inferred).
    """
    outputs: list[torch.Tensor] = []
    caller = threading.get_ident()

    def keep(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and threading.get_ident() == caller:  # not another thread's pass
            outputs.append(out)

    images = images.detach().requires_grad_(True)  # a frozen backbone still passes a gradient back
    handle = module.register_forward_hook(keep)
    try:
        logits = model(images)
    finally:
        handle.remove()
    if len(outputs) != 1:
        raise NotApplicableError(
            f"the Grad-CAM layer ran {len(outputs)} times in one forward pass; Grad-CAM needs one output"
        )
    act = outputs[0]
    score = logits.gather(1, targets[:, None].to(logits.device)).sum()
    (grad,) = torch.autograd.grad(score, act)
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    if layout is None:
        layout, prefix = infer_layout(act, hw, getattr(model, "cam_layout", None), _prefix_hint(model))
    act, grad = act.float(), grad.float()  # a half-precision layer under autocast: weights in float32
    grid, grid_grad = to_grid(act.detach(), layout, prefix, hw), to_grid(grad, layout, prefix, hw)
    weights = grid_grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * grid).sum(dim=1, keepdim=True))


def gradcam_coarse(
    net: Forward, layer: nn.Module, images: torch.Tensor, targets: torch.Tensor, create_graph: bool
) -> torch.Tensor:
    """Coarse Grad-CAM ``[B, 1, h, w]``: ReLU(Σ_k w_k A_k), w_k = spatial mean of ∂f_c/∂A_k.

    ``layer`` must belong to the module ``net`` runs (:func:`~robustxai.explain._differentiable.module_of`).
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x = images if images.requires_grad else images.detach().requires_grad_(True)
        logits = net(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise NotApplicableError(
            f"the Grad-CAM layer ran {len(captured)} times in one forward pass; expected 1"
        )
    acts = captured[0]
    picked = logits.gather(1, targets[:, None]).sum()
    (grads,) = torch.autograd.grad(picked, acts, create_graph=create_graph)
    acts, grads = acts.float(), grads.float()  # a half-precision layer under autocast: weights in float32
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1, keepdim=True).clamp(min=0)


def upsample(cam: torch.Tensor, size: torch.Size | tuple[int, int], mode: str) -> torch.Tensor:
    """The coarse CAM upsampled to ``size`` (``align_corners=False`` where the mode takes it)."""
    corners = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(cam, size=tuple(size), mode=mode, align_corners=corners)


@EXPLAINERS.register("gradcam")
class GradCAM(Explainer, DifferentiableMap):
    """Grad-CAM (Selvaraju et al.): ReLU(Σ_k w_k A_k), w_k = spatial mean of ∂f_c/∂A_k, upsampled bilinearly.

    On a transformer A is the declared token layer laid out on the patch grid (module docstring).

    Args:
        layer: Dotted path of the layer in the model; ``None`` uses the wrapper's ``cam_layer``.
        reduction: Channel reduction of the (single-channel) map.
    """

    name = "gradcam"

    def __init__(self, layer: str | None = None, reduction: str = "max_abs") -> None:
        super().__init__(reduction)
        self.layer = layer

    def applicable(self, model: nn.Module) -> str | None:
        """A reason when the model has no spatial layer (:func:`cam_applicable`)."""
        return cam_applicable(model, self.layer)

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Coarse CAM ``[B, 1, h, w]`` (non-negative)."""
        module = cam_layer_of(model, self.layer)
        layout, prefix = cam_layout_of(model, self.layer)
        if layout != "nchw":
            return grid_gradcam(model, module, images, targets, layout, prefix)
        cam = LayerGradCam(model, module)
        attr: torch.Tensor = cam.attribute(images, target=targets, relu_attributions=True)
        return attr

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """Grad-CAM upsampled bilinearly, on the autograd graph.

        The CAM has one non-negative channel, so every channel reduction leaves it as it is.
        """
        layer = cam_layer_of(module_of(net), self.layer)
        cam = gradcam_coarse(net, layer, images, targets, create_graph)
        return upsample(cam, images.shape[-2:], "bilinear")[:, 0]


CAM_UPSAMPLING: tuple[str, ...] = ("bilinear", "nearest", "bicubic", "area")


@EXPLAINERS.register("guided_gradcam")
class GuidedGradCAM(Explainer, DifferentiableMap):
    """Guided Grad-CAM (Selvaraju et al.): Guided Backprop ⊙ the Grad-CAM map upsampled to the input.

    Guided Backprop passes only positive gradients back through ReLU *modules*; the built-in models use
    modules, not ``F.relu``, so the guidance reaches every ReLU. A transformer's GELUs are not ReLUs: there
    Guided Backprop is the plain gradient, as in Captum.

    Args:
        layer: Dotted path of the layer in the model; ``None`` uses the wrapper's ``cam_layer``.
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

    def applicable(self, model: nn.Module) -> str | None:
        """A reason when the model has no spatial layer (:func:`cam_applicable`)."""
        return cam_applicable(model, self.layer)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """A Grad-CAM pass and a guided-backprop pass: 2 × ``batch`` forward and backward."""
        return 2 * batch, 2 * batch

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed Guided Grad-CAM attributions ``[B, C, H, W]``."""
        module = cam_layer_of(model, self.layer)
        layout, prefix = cam_layout_of(model, self.layer)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Setting backward hooks on ReLU", category=UserWarning)
            if layout == "nchw":
                method = CaptumGuidedGradCam(model, module)
                attr: torch.Tensor = method.attribute(
                    images.requires_grad_(True), target=targets, interpolate_mode=self.interpolate_mode
                )
                return attr
            cam = grid_gradcam(model, module, images, targets, layout, prefix)
            guided = GuidedBackprop(model).attribute(images.requires_grad_(True), target=targets)
        up = LayerAttribution.interpolate(
            cam, tuple(images.shape[2:]), interpolate_mode=self.interpolate_mode
        )
        return guided * up

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """Guided-backprop gradient × upsampled Grad-CAM, on the autograd graph.

        The guided backward rule must be differentiable, so ``net`` must be a smooth stand-in whose
        ``guided()`` switches it on (:class:`~robustxai.explain._differentiable.SmoothForward`).

        Raises:
            RobustXAIError: When ``net`` is a plain model.
        """
        if isinstance(net, nn.Module):
            raise RobustXAIError(
                "guided_gradcam's differentiable map needs a smooth stand-in with a guided backward rule "
                "(a SoftplusSurrogate), not the model itself"
            )
        surrogate = net
        layer = cam_layer_of(module_of(surrogate), self.layer)
        coarse = gradcam_coarse(surrogate, layer, images, targets, create_graph)
        cam = upsample(coarse, images.shape[-2:], self.interpolate_mode)

        def guided(x: torch.Tensor) -> torch.Tensor:
            with surrogate.guided():
                return surrogate(x)

        grad = target_gradients(guided, images, targets, create_graph)[0]
        return reduce_channels(grad * cam, self.reduction)
