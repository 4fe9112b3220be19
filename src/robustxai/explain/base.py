"""Explainer base class, registry, target rule and map reduction (DESIGN.md, "Explanations").

An explainer is created by name with its hyper-parameters and called with data. ``explain()`` returns both
the raw attributions (``[B, C, H, W]``, or ``[B, 1, h, w]`` for CAMs) and the map ``[B, H, W]`` at input
resolution; calling the explainer returns the map alone, which is what metrics take.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._validate import check_images
from robustxai.errors import RobustXAIError
from robustxai.registry import Registry

EXPLAINERS: Registry[Explainer] = Registry("explainer")

Reduction = Literal["max_abs", "sum_abs", "sum", "max", "mean_abs"]
REDUCTIONS: tuple[str, ...] = ("max_abs", "sum_abs", "sum", "max", "mean_abs")
Target = None | str | int | torch.Tensor


@dataclass
class Explanation:
    """The result of one explainer call.

    Attributes:
        attributions: Raw attributions ``[B, C, H, W]`` (``[B, 1, h, w]`` for CAM methods).
        maps: Reduced maps ``[B, H, W]`` at input resolution.
        targets: The class index explained for each image ``[B]``.
    """

    attributions: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor


def reduce_channels(attr: torch.Tensor, rule: str) -> torch.Tensor:
    """Reduce attributions ``[B, C, H, W]`` to maps ``[B, H, W]`` by a named rule."""
    if rule == "max_abs":
        return attr.abs().amax(dim=1)
    if rule == "sum_abs":
        return attr.abs().sum(dim=1)
    if rule == "mean_abs":
        return attr.abs().mean(dim=1)
    if rule == "sum":
        return attr.sum(dim=1)
    if rule == "max":
        return attr.amax(dim=1)
    raise RobustXAIError(f"unknown reduction {rule!r}; known: {', '.join(REDUCTIONS)}")


def resolve_targets(
    model: nn.Module, images: torch.Tensor, target: Target, labels: torch.Tensor | None
) -> torch.Tensor:
    """Apply the target rule: prediction (``None``), ``"label"``, a fixed index, or one index per image."""
    batch = images.shape[0]
    if target is None or (isinstance(target, str) and target == "prediction"):
        with torch.no_grad():
            return model(images).argmax(dim=1)
    if isinstance(target, str):
        if target != "label":
            raise RobustXAIError(
                f"target must be None, 'prediction', 'label', an int or a tensor; got {target!r}"
            )
        if labels is None:
            raise RobustXAIError("target='label' needs labels")
        return resolve_targets(model, images, labels, None)
    if isinstance(target, int) and not isinstance(target, bool):
        targets = torch.full((batch,), target, dtype=torch.long, device=images.device)
    elif isinstance(target, torch.Tensor) and not target.is_floating_point():
        if target.shape != (batch,):
            raise RobustXAIError(f"target tensor must have shape [{batch}], got {tuple(target.shape)}")
        targets = target.to(images.device).long()
    else:
        raise RobustXAIError(f"unsupported target {target!r}")
    with torch.no_grad():
        k = int(model(images[:1]).shape[1])
    if int(targets.min()) < 0 or int(targets.max()) >= k:
        raise RobustXAIError(
            f"target indices must lie in [0, {k - 1}] for this model, got {targets.tolist()}"
        )
    return targets


class Explainer(ABC):
    """Base class: validates inputs, resolves targets, reduces attributions to maps.

    Args:
        reduction: How channels are reduced to a map (default: max over channels of |a|).
    """

    name: str = "explainer"

    def __init__(self, reduction: str = "max_abs") -> None:
        if reduction not in REDUCTIONS:
            raise RobustXAIError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
        self.reduction = reduction

    def explain(
        self,
        model: nn.Module,
        images: torch.Tensor,
        target: Target = None,
        labels: torch.Tensor | None = None,
    ) -> Explanation:
        """Explain ``images``; see the module docstring for the target rule."""
        check_images(images)
        targets = resolve_targets(model, images, target, labels)
        with torch.enable_grad():
            attr = self.attribute(model, images.detach(), targets).detach()
        maps = self.to_maps(attr, images.shape[-2:])
        return Explanation(attributions=attr, maps=maps, targets=targets)

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        target: Target = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the maps ``[B, H, W]`` for ``images``."""
        return self.explain(model, images, target=target, labels=labels).maps

    def to_maps(self, attr: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        """Reduce attributions to maps at the input resolution."""
        if tuple(attr.shape[-2:]) != tuple(size):
            attr = F.interpolate(attr, size=tuple(size), mode="bilinear", align_corners=False)
        return reduce_channels(attr, self.reduction)

    @abstractmethod
    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw attributions for validated inputs and resolved targets."""

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for reports and cache keys."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def create_explainer(name: str, **kwargs: Any) -> Explainer:
    """Create the registered explainer ``name`` with its hyper-parameters."""
    return EXPLAINERS.create(name, **kwargs)


def list_explainers() -> list[str]:
    """Names of the registered explainers."""
    return EXPLAINERS.names()
