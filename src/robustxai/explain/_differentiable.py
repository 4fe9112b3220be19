"""Differentiable explanation maps: the hook the manipulation attack is built on (DESIGN.md, ``explain/``).

Captum detaches its attributions, so an attack that optimises a map needs the map on the autograd graph.
An explainer that supports this also derives from :class:`DifferentiableMap` and offers
:meth:`~DifferentiableMap.map_for_attack`, built from the same formula as its normal path wherever the
formula is its own code (saliency, Grad × Input, Integrated Gradients, SmoothGrad); the CAM methods, whose
normal path is Captum's, keep their differentiable formula next to the explainer (``_cam.py``), and the tests
pin both to Captum. XRAI offers the Integrated Gradients map it segments (IG's own ``map_for_attack`` with
XRAI's IG settings): its regions and ranking are piecewise constant, so the attack steers the IG map and the
audit scores the real XRAI map of the attacked image.

``map_for_attack`` takes the model itself, or a smooth stand-in for it (:class:`SmoothForward`, e.g. the
manipulation attack's Softplus surrogate) whose map has a non-zero second derivative, and returns maps
``[B, H, W]`` at input resolution, reduced by the explainer's rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from robustxai.explain._base import EXPLAINERS


@runtime_checkable
class SmoothForward(Protocol):
    """A smooth stand-in for a model: callable like it, holding a (modified) copy in ``model``.

    ``guided()`` switches its ReLU stand-ins to the guided-backprop backward rule (Guided Grad-CAM).
    """

    model: nn.Module

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]``."""
        ...

    def guided(self) -> AbstractContextManager[None]:
        """Use the guided backward rule while the context is open."""
        ...


#: What a differentiable map is computed on: the model itself or a smooth stand-in for it.
Forward = nn.Module | SmoothForward


def module_of(net: Forward) -> nn.Module:
    """The module whose layers a CAM hooks: the model, or the stand-in's copy of it."""
    return net if isinstance(net, nn.Module) else net.model


def target_gradients(
    net: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂f_t/∂x of each image's target logit, and the targets: one forward and one backward pass.

    The same numbers as Captum's ``compute_gradients`` (the sum of the selected logits, differentiated with
    respect to the input only). ``targets=None`` takes each image's arg-max logit of the same forward pass.
    With ``create_graph`` an input that is already on the graph stays on it, and so does the gradient.
    """
    on_graph = create_graph and images.requires_grad
    x = images if on_graph else images.detach().requires_grad_(True)
    logits = net(x)
    if targets is None:
        targets = logits.detach().argmax(dim=1)
    picked = logits.gather(1, targets.to(logits.device)[:, None])
    (grad,) = torch.autograd.grad(picked.sum(), x, create_graph=create_graph)
    return grad, targets


class DifferentiableMap(ABC):
    """Mixin of the explainers the manipulation attack can differentiate through."""

    @abstractmethod
    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """Maps ``[B, H, W]`` of ``net`` for the class ``targets[i]`` of each image.

        Args:
            net: The model, or a smooth stand-in for it (:class:`SmoothForward`).
            images: Images ``[B, C, H, W]``; when they are on the graph, so is the map.
            targets: The class explained per image ``[B]``.
            create_graph: Keep the map on the autograd graph (``False`` for plain evaluation).
        """


def differentiable_methods() -> list[str]:
    """Names of the registered explainers that offer :meth:`DifferentiableMap.map_for_attack`."""
    out = []
    for name in EXPLAINERS.names():
        factory = EXPLAINERS.get(name)
        if isinstance(factory, type) and issubclass(factory, DifferentiableMap):
            out.append(name)
    return out
