"""Explainer base class, registry, target rule and map reduction (DESIGN.md, "Explanations").

An explainer is created by name with its hyper-parameters and called with data. ``explain()`` returns both
the raw attributions (``[B, C, H, W]``, or ``[B, 1, h, w]`` for CAMs) and the map ``[B, H, W]`` at input
resolution; calling the explainer returns the map alone, which is what metrics take. ``explain_targets()``
explains several classes per image (multi-label findings) and returns maps ``[B, T, H, W]``.

Methods that evaluate the model on many perturbed or interpolated copies of each image (IG steps, SmoothGrad
samples, occlusion windows) take one ``batch_size`` keyword: how many image × perturbation rows go through
the model per forward/backward pass. It bounds memory and never changes the numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._validate import check_images
from robustxai.errors import RobustXAIError
from robustxai.models.losses import check_task_labels, is_multilabel
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


def check_batch_size(batch_size: int | None, name: str = "batch_size") -> int | None:
    """Check a rows-per-pass knob: ``None`` (the method's own choice) or an integer ≥ 1."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RobustXAIError(f"{name} must be None or an integer ≥ 1, got {batch_size!r}")
    return batch_size


def _label_targets(model: nn.Module, labels: torch.Tensor, batch: int) -> torch.Tensor:
    """The class explained for ``target='label'``: the label, or a multi-label image's first positive one."""
    checked = check_task_labels(model, labels, batch)
    if not is_multilabel(model):
        return checked
    positive = checked > 0
    missing = (~positive.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise RobustXAIError(
            f"target='label' explains the first positive label of a multi-label image, but image(s) "
            f"{missing} have none; pass a fixed index or use explain_targets()"
        )
    return positive.long().argmax(dim=1)


def num_outputs(model: nn.Module, images: torch.Tensor) -> int:
    """Number of logits ``K`` the model returns (one forward pass on one image)."""
    with torch.no_grad():
        return int(model(images[:1]).shape[1])


def resolve_targets(
    model: nn.Module, images: torch.Tensor, target: Target, labels: torch.Tensor | None
) -> torch.Tensor:
    """Apply the target rule and return one class index per image ``[B]``.

    Args:
        model: The model (its ``task`` decides how labels are read).
        images: The images being explained ``[B, C, H, W]``.
        target: ``None`` or ``"prediction"``: the model's arg-max logit on these images (for a multi-label
            model, the label with the highest logit); ``"label"``: the true class — for a multi-label model
            (labels ``[B, K]`` of 0/1) the first positive label of each image, and an image without one is
            an error; an ``int``: that class for every image; an integer tensor ``[B]``: one per image.
        labels: Class indices ``[B]`` (multiclass) or 0/1 ``[B, K]`` (multilabel); needed for ``"label"``.
    """
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
        return resolve_targets(model, images, _label_targets(model, labels, batch), None)
    if isinstance(target, int) and not isinstance(target, bool):
        targets = torch.full((batch,), target, dtype=torch.long, device=images.device)
    elif isinstance(target, torch.Tensor) and not target.is_floating_point() and target.dtype != torch.bool:
        if target.shape != (batch,):
            raise RobustXAIError(f"target tensor must have shape [{batch}], got {tuple(target.shape)}")
        targets = target.to(images.device).long()
    else:
        raise RobustXAIError(f"unsupported target {target!r}")
    k = num_outputs(model, images)
    if int(targets.min()) < 0 or int(targets.max()) >= k:
        raise RobustXAIError(
            f"target indices must lie in [0, {k - 1}] for this model, got {targets.tolist()}"
        )
    return targets


def target_list(model: nn.Module, images: torch.Tensor, targets: Sequence[int] | str) -> list[int]:
    """Validate the targets of :meth:`Explainer.explain_targets`: a list of class indices or ``"all"``."""
    k = num_outputs(model, images)
    if isinstance(targets, str):
        if targets != "all":
            raise RobustXAIError(f"targets must be a list of class indices or 'all', got {targets!r}")
        return list(range(k))
    if not isinstance(targets, list | tuple) or len(targets) == 0:
        raise RobustXAIError(f"targets must be a non-empty list of class indices or 'all', got {targets!r}")
    values: list[object] = list(targets)
    if any(isinstance(t, bool) or not isinstance(t, int) for t in values):
        raise RobustXAIError(f"targets must be integer class indices, got {values!r}")
    indices = cast(list[int], values)
    bad = [t for t in indices if not 0 <= t < k]
    if bad:
        raise RobustXAIError(f"target indices must lie in [0, {k - 1}] for this model, got {bad}")
    return indices


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

    def explain_targets(
        self, model: nn.Module, images: torch.Tensor, targets: Sequence[int] | str
    ) -> torch.Tensor:
        """Maps for several classes per image, e.g. every finding of a multi-label model.

        Args:
            model: The model.
            images: Images ``[B, C, H, W]`` in [0, 1].
            targets: Class indices explained for every image, or ``"all"`` (every logit of the model).

        Returns:
            Maps ``[B, T, H, W]``; ``maps[:, j]`` is ``explain(model, images, target=targets[j]).maps``.
        """
        check_images(images)
        indices = target_list(model, images, targets)
        maps = [self.explain(model, images, target=t).maps for t in indices]
        return torch.stack(maps, dim=1)

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
