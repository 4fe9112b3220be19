"""DeepLIFT with the rescale rule (Shrikumar et al. 2017) on top of Captum's ``DeepLift`` (METHODS.md).

DeepLIFT explains the difference f_c(x) − f_c(x₀) to a reference x₀ and, through a network of linear layers
and supported non-linearities, its attributions add up to exactly that difference (summation-to-delta).
Captum implements the rule by hooking the backward pass of non-linearity *modules* (ReLU, max-pool, softmax,
…), so two things silently break it: a functional call (``F.relu``) is invisible to the hooks, and a module
called twice in one forward pass (e.g. torchvision ResNet blocks reuse one ReLU) keeps only its last input.
The second is detected here and refused; the built-in models use neither.

Captum 0.9 also mis-handles two hooked modules in a row (ReLU → MaxPool in every conv block here): the
first one records its output gradient *before* the second replaces it with DeepLIFT multipliers, so it
rescales the plain gradient and summation-to-delta fails by a few per cent (captum issue #1104, fixed
upstream in PR #1843 after 0.9). :class:`_DeepLiftOwnInputHooks` registers each module's multiplier hook on
the module's own copy of its input instead, so the modified gradient is what flows on. On models without
adjacent non-linearities it gives Captum's numbers exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn
from torch.utils.hooks import RemovableHandle

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer
from robustxai.explain.references import check_reference, reference_images


def _own_input_hooks(module: nn.Module, hook: Callable[..., Any]) -> list[RemovableHandle]:
    """Call ``hook(module, grad_input, grad_output)`` on the gradient of the module's private input copy."""
    grad_out: dict[torch.device, torch.Tensor] = {}

    def record(grad: torch.Tensor) -> None:
        grad_out[grad.device] = grad

    def forward_hook(module: nn.Module, args: Any, output: Any) -> None:
        (output[0] if isinstance(output, tuple) else output).register_hook(record)

    def pre_hook(module: nn.Module, args: Any) -> tuple[torch.Tensor]:
        copy = (args[0] if isinstance(args, tuple) else args).clone()

        def replace(grad: torch.Tensor) -> torch.Tensor | None:
            if not grad_out:
                return None
            new = hook(module, grad, grad_out[grad.device])
            return new[0] if isinstance(new, tuple) else new

        copy.register_hook(replace)
        return (copy,)

    return [module.register_forward_pre_hook(pre_hook), module.register_forward_hook(forward_hook)]


class _DeepLiftOwnInputHooks(CaptumDeepLift):
    """Captum's DeepLift with each multiplier hook on the module's own input copy (module docstring)."""

    def _register_hooks(self, module: nn.Module, attribute_to_layer_input: bool = True) -> None:
        if not self._can_register_hook(module):
            return
        self.forward_handles.append(module.register_forward_hook(self._forward_hook))
        self.forward_handles.append(module.register_forward_pre_hook(self._forward_pre_hook))
        self.backward_handles.extend(_own_input_hooks(module, self._backward_hook))


def reused_nonlinearities(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """Non-linearity modules that one forward pass calls more than once: ``{dotted name: calls}``."""
    calls: dict[str, int] = {}
    handles: list[RemovableHandle] = []

    def counter(name: str) -> object:
        def hook(module: nn.Module, args: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1

        return hook

    for name, module in model.named_modules():
        if type(module) in SUPPORTED_NON_LINEAR:
            handles.append(module.register_forward_hook(counter(name)))
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for handle in handles:
            handle.remove()
    return {name: n for name, n in calls.items() if n > 1}


@EXPLAINERS.register("deeplift")
class DeepLift(Explainer):
    """DeepLIFT, rescale rule: (x − x₀) · multipliers, with Σ attributions = f_c(x) − f_c(x₀).

    Needs every ReLU / max-pool / softmax to be its own module, used once per forward pass; a model that
    reuses one is refused (see the module docstring). Run it on a model in eval mode: Captum feeds the images
    and references through the network in one batch, so batch-norm in training mode would mix them.

    Args:
        baseline: The reference x₀: ``"zero"`` (black image, the default), ``"mean"`` (each image's mean
            intensity) or ``"blurred"`` (Gaussian blur of ``blur_sigma`` pixels).
        blur_sigma: Standard deviation in pixels of the blur for ``baseline="blurred"``.
        eps: Captum's guard against division by tiny input differences in the rescale multipliers.
        reduction: Channel reduction of the map.
    """

    name = "deeplift"

    def __init__(
        self, baseline: str = "zero", blur_sigma: float = 5.0, eps: float = 1e-10, reduction: str = "max_abs"
    ) -> None:
        super().__init__(reduction)
        check_reference(baseline, blur_sigma)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
            raise RobustXAIError(f"eps must be a number > 0, got {eps!r}")
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.eps = float(eps)

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The reference x₀ for each input."""
        return reference_images(images, self.baseline, self.blur_sigma)

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed DeepLIFT attributions ``[B, C, H, W]``."""
        reused = reused_nonlinearities(model, images)
        if reused:
            listed = ", ".join(f"{name!r} ({n}×)" for name, n in sorted(reused.items()))
            raise RobustXAIError(
                f"DeepLift needs each non-linearity module used once per forward pass; reused: {listed}"
            )
        reference = self.baselines(images.detach())  # outside the graph: x₀ is a constant
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"Setting forward, backward hooks", category=UserWarning
            )
            attr: torch.Tensor = _DeepLiftOwnInputHooks(model, eps=self.eps).attribute(
                images.detach().requires_grad_(True), baselines=reference, target=targets
            )
        return attr
