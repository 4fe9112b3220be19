"""Explanation maps that can be differentiated with respect to the input (for the manipulation attack).

Captum detaches its attributions, so an attack that optimises a map needs its own implementation, built
with ``create_graph=True`` so the map stays on the autograd graph. Each function here follows the
definition in METHODS.md and, on a ReLU model, equals the registered explainer of the same name (the tests
pin them to Captum); on a :class:`~robustxai.attacks.softplus.SoftplusSurrogate` it is the smooth map the
attack descends on.

All functions take ``forward`` (the model, or a surrogate), images ``[B, C, H, W]``, the class index to
explain per image ``[B]`` and return non-negative maps ``[B, H, W]`` (max over channels of |attribution|).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustxai.attacks.softplus import SoftplusSurrogate
from robustxai.errors import RobustXAIError
from robustxai.models.wrapper import cam_layer

Forward = Callable[[torch.Tensor], torch.Tensor]

#: Methods the manipulation attack can differentiate through.
DIFF_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "gradcam",
    "guided_gradcam",
)


@dataclass
class MapSettings:
    """Hyper-parameters of the differentiable maps (kept small: the attack evaluates them every step).

    Attributes:
        ig_steps: Riemann midpoints of Integrated Gradients (zero baseline).
        sg_samples: Noise samples of SmoothGrad.
        sg_sigma: Noise standard deviation of SmoothGrad, in [0, 1] pixel units.
        sg_seed: Seed of the SmoothGrad noise (fixed during an attack, so the objective is deterministic).
        cam_layer: Dotted path of the Grad-CAM layer; ``None`` uses the wrapper's declared one.
        cam_upsample: Upsampling of the CAM in Guided Grad-CAM (bilinear, as the registered explainer).
        create_graph: Keep the map on the autograd graph (``False`` for plain evaluation).
    """

    ig_steps: int = 8
    sg_samples: int = 8
    sg_sigma: float = 0.15
    sg_seed: int = 0
    cam_layer: str | None = None
    cam_upsample: str = "bilinear"
    create_graph: bool = True


def _target_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, targets[:, None]).sum()


def input_gradient(
    forward: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool
) -> torch.Tensor:
    """∂f_c/∂x for each image (``[B, C, H, W]``), kept on the graph when ``create_graph``."""
    x = images if images.requires_grad else images.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_target_sum(forward(x), targets), x, create_graph=create_graph)
    return grad


def saliency_map(
    forward: Forward, images: torch.Tensor, targets: torch.Tensor, s: MapSettings
) -> torch.Tensor:
    """Saliency: max over channels of |∂f_c/∂x|."""
    return input_gradient(forward, images, targets, s.create_graph).abs().amax(dim=1)


def input_x_gradient_map(
    forward: Forward, images: torch.Tensor, targets: torch.Tensor, s: MapSettings
) -> torch.Tensor:
    """Grad×Input: max over channels of |x ⊙ ∂f_c/∂x|."""
    grad = input_gradient(forward, images, targets, s.create_graph)
    return (images * grad).abs().amax(dim=1)


def integrated_gradients_map(
    forward: Forward, images: torch.Tensor, targets: torch.Tensor, s: MapSettings
) -> torch.Tensor:
    """Integrated Gradients with a zero baseline and ``ig_steps`` Riemann midpoints, max |·| over channels.

    All steps of all images go through the model in one batch ``[steps · B, C, H, W]``.
    """
    n, b = s.ig_steps, images.shape[0]
    alphas = (torch.arange(n, dtype=images.dtype, device=images.device) + 0.5) / n
    path = (alphas.view(n, 1, 1, 1, 1) * images.unsqueeze(0)).reshape(n * b, *images.shape[1:])
    grads = input_gradient(forward, path, targets.repeat(n), s.create_graph)
    mean_grad = grads.reshape(n, b, *images.shape[1:]).mean(dim=0)
    return (images * mean_grad).abs().amax(dim=1)


def smoothgrad_noise(images: torch.Tensor, s: MapSettings) -> torch.Tensor:
    """The seeded Gaussian noise ``[samples, B, C, H, W]`` SmoothGrad adds (same for every step)."""
    gen = torch.Generator(device="cpu").manual_seed(s.sg_seed)
    noise = torch.randn((s.sg_samples, *images.shape), generator=gen, dtype=images.dtype)
    return noise.to(images.device) * s.sg_sigma


def smoothgrad_map(
    forward: Forward,
    images: torch.Tensor,
    targets: torch.Tensor,
    s: MapSettings,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """SmoothGrad: mean over noisy copies of |∂f_c/∂x|, then max over channels."""
    noise = smoothgrad_noise(images, s) if noise is None else noise
    k, b = noise.shape[0], images.shape[0]
    noisy = (images.unsqueeze(0) + noise).reshape(k * b, *images.shape[1:])
    grads = input_gradient(forward, noisy, targets.repeat(k), s.create_graph)
    return grads.abs().reshape(k, b, *images.shape[1:]).mean(dim=0).amax(dim=1)


def cam_module(model: nn.Module, layer: str | None) -> nn.Module:
    """The Grad-CAM layer of ``model`` (a copy or the original): ``layer`` or the wrapper's declared one."""
    return cam_layer(model, layer, "cam_layer")


def gradcam_coarse(
    forward: Forward, layer: nn.Module, images: torch.Tensor, targets: torch.Tensor, create_graph: bool
) -> torch.Tensor:
    """Coarse Grad-CAM ``[B, 1, h, w]``: ReLU(Σ_k w_k A_k), w_k = spatial mean of ∂f_c/∂A_k."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x = images if images.requires_grad else images.detach().requires_grad_(True)
        logits = forward(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RobustXAIError(f"the Grad-CAM layer ran {len(captured)} times in one forward pass; expected 1")
    acts = captured[0]
    (grads,) = torch.autograd.grad(_target_sum(logits, targets), acts, create_graph=create_graph)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1, keepdim=True).clamp(min=0)


def gradcam_map(
    forward: Forward, layer: nn.Module, images: torch.Tensor, targets: torch.Tensor, s: MapSettings
) -> torch.Tensor:
    """Grad-CAM upsampled bilinearly to the input size (as the registered explainer does)."""
    cam = gradcam_coarse(forward, layer, images, targets, s.create_graph)
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def guided_gradcam_map(
    forward: Forward,
    guided_forward: Forward,
    layer: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    s: MapSettings,
) -> torch.Tensor:
    """Guided Grad-CAM: guided-backprop gradient × upsampled Grad-CAM, max |·| over channels.

    ``guided_forward`` must run the model with the guided backward rule in its ReLU modules.
    """
    cam = gradcam_coarse(forward, layer, images, targets, s.create_graph)
    corners = False if s.cam_upsample in ("bilinear", "bicubic") else None
    cam = F.interpolate(cam, size=images.shape[-2:], mode=s.cam_upsample, align_corners=corners)
    guided = input_gradient(guided_forward, images, targets, s.create_graph)
    return (guided * cam).abs().amax(dim=1)


def method_map(
    method: str,
    net: nn.Module | SoftplusSurrogate,
    images: torch.Tensor,
    targets: torch.Tensor,
    s: MapSettings,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The map of ``method`` (one of :data:`DIFF_METHODS`) on ``net`` ``[B, H, W]``.

    ``net`` is the model itself or a :class:`~robustxai.attacks.softplus.SoftplusSurrogate` of it;
    Guided Grad-CAM needs the surrogate (its guided backward rule lives in the surrogate's ReLUs).

    Raises:
        RobustXAIError: On an unknown method, or Guided Grad-CAM without a surrogate.
    """
    if method == "saliency":
        return saliency_map(net, images, targets, s)
    if method == "input_x_gradient":
        return input_x_gradient_map(net, images, targets, s)
    if method == "integrated_gradients":
        return integrated_gradients_map(net, images, targets, s)
    if method == "smoothgrad":
        return smoothgrad_map(net, images, targets, s, noise)
    base = net.model if isinstance(net, SoftplusSurrogate) else net
    if method == "gradcam":
        return gradcam_map(net, cam_module(base, s.cam_layer), images, targets, s)
    if method != "guided_gradcam":
        raise RobustXAIError(f"unknown map {method!r}; known: {', '.join(DIFF_METHODS)}")
    if not isinstance(net, SoftplusSurrogate):
        raise RobustXAIError("guided_gradcam needs a SoftplusSurrogate (its guided backward rule)")
    surrogate = net

    def guided(x: torch.Tensor) -> torch.Tensor:
        with surrogate.guided():
            return surrogate(x)

    return guided_gradcam_map(surrogate, guided, cam_module(base, s.cam_layer), images, targets, s)
