"""Explainer base class, registry, target rule and map reduction (DESIGN.md, "Explanations").

An explainer is created by name with its hyper-parameters and has one verb, ``explain()``: it returns the
raw attributions (``[B, C, H, W]``, or ``[B, 1, h, w]`` for CAMs), the map ``[B, H, W]`` at input
resolution (what metrics take), the classes explained and the call's diagnostics, in an
:class:`Explanation`. :func:`explain_targets` explains several classes per image (multi-label findings) and
returns maps ``[B, T, H, W]``. ``params()`` gives the hyper-parameters the explainer was created with.

Methods that evaluate the model on many perturbed or interpolated copies of each image (IG steps, SmoothGrad
samples, DeepLIFT references, LIME samples) take one ``batch_size`` keyword: how many image × perturbation
rows go through the model per forward/backward pass. It bounds memory and never changes the numbers; ``None``
(the default) means the device's own choice, :func:`rows_per_pass`.

Every explainer states its cost: :meth:`Explainer.passes` is the number of images it pushes forward and
backward for one call, and :meth:`Explainer.pass_rows` how many rows go through the model per pass —
``benchmarks/explainers.py`` divides an explainer's time by that many passes timed at that batch size.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._registry import ParamValue, Registry, declared_params
from robustxai._validate import check_images, check_optional_int
from robustxai.models._losses import check_task_labels, is_multilabel
from robustxai.models._wrapper import ModelWrapper

EXPLAINERS: Registry[Explainer] = Registry("explainer")

Reduction = Literal["max_abs", "sum_abs", "sum", "max", "mean_abs"]
REDUCTIONS: tuple[str, ...] = ("max_abs", "sum_abs", "sum", "max", "mean_abs")
Target = None | str | int | torch.Tensor


@dataclass(frozen=True)
class Explanation:
    """The result of one explainer call: the maps and everything the call found out about them.

    Attributes:
        attributions: Raw attributions ``[B, C, H, W]`` (``[B, 1, h, w]`` for CAM methods).
        maps: Reduced maps ``[B, H, W]`` at input resolution.
        targets: The class index explained for each image ``[B]``.
        approximate: Whether the method knows these maps to be an approximation of its definition on this
            model (DeepLIFT: the attributions of some image do not add up to f_c(x) − f_c(x₀), because the
            model has a non-linearity its rules do not cover). The audit records it and the report marks
            the cells.
        engine: Which implementation computed the attributions, for a method that has several (occlusion:
            ``"incremental"``, its own engine, or ``"captum"``, the fallback); ``None`` otherwise.
    """

    attributions: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    approximate: bool = False
    engine: str | None = None


@dataclass(frozen=True)
class Attribution:
    """What a method's :meth:`Explainer._attribute` hook returns when it has diagnostics to report.

    Attributes:
        values: Raw attributions ``[B, C, H, W]``.
        approximate: See :attr:`Explanation.approximate`.
        engine: See :attr:`Explanation.engine`.
    """

    values: torch.Tensor
    approximate: bool = False
    engine: str | None = None


def as_attribution(found: torch.Tensor | Attribution) -> Attribution:
    """A hook's result as an :class:`Attribution` (a bare tensor has no diagnostics)."""
    return found if isinstance(found, Attribution) else Attribution(found)


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


def check_batch_size(batch_size: object, name: str = "batch_size") -> int | None:
    """Check a rows-per-pass knob: ``None`` (the device's default, :func:`rows_per_pass`) or an int ≥ 1."""
    return check_optional_int(batch_size, name, minimum=1)


# Rows per forward/backward pass when ``batch_size=None``. On CPU a pass of ≈ 32 rows is fastest: smallcnn at
# 64 px (one thread) costs 3.1 ms per image forward+backward at batch 1, 1.9 ms at 32, 1.8 ms at 64 and 3.0 ms
# at 256, where the activations no longer fit in cache and every large buffer is freshly paged in; IG with
# 20 steps on 16 images (320 rows) took 1.13 s in one pass, 0.53 s in passes of 32 and 0.77 s in passes of
# 128. A GPU needs large passes to be busy, and has the memory for them.
CPU_ROWS_PER_PASS = 32
ACCELERATOR_ROWS_PER_PASS = 256


def rows_per_pass(batch_size: int | None, device: torch.device | str = "cpu") -> int:
    """The most rows per pass a ``batch_size`` knob allows on ``device``.

    The knob itself, or for ``None`` 32 on CPU and 256 on a GPU (see :data:`CPU_ROWS_PER_PASS`).
    """
    if batch_size is not None:
        return batch_size
    return CPU_ROWS_PER_PASS if torch.device(device).type == "cpu" else ACCELERATOR_ROWS_PER_PASS


def balanced_rows(total: int, most: int) -> int:
    """Rows per pass when ``total`` rows go in as few passes of at most ``most`` rows as possible.

    The passes are of about the same size: 400 rows in passes of ≤ 32 are 13 passes of 31 (the last 28),
    not 12 of 32 and a slow one of 16.
    """
    passes = -(-total // most)
    return -(-total // passes)


def row_chunks(total: int, most: int) -> list[slice]:
    """``total`` rows cut into :func:`balanced_rows`-sized passes (the last one may be shorter)."""
    size = balanced_rows(total, most)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


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
    """Number of logits ``K`` the model returns.

    A :class:`~robustxai.models._wrapper.ModelWrapper` declares it (one class name per logit); any other model
    is asked with a forward pass on one image.
    """
    if isinstance(model, ModelWrapper):
        return model.num_classes
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

    :meth:`explain` is the one verb. A method implements :meth:`_attribute` (and may implement
    :meth:`_attribute_predicted`); both may return an :class:`Attribution` to report this call's diagnostics,
    which reach the caller in the :class:`Explanation` — an explainer keeps no per-call state.

    Args:
        reduction: How channels are reduced to a map (default: max over channels of |a|).
    """

    name: str = "explainer"
    #: Hyper-parameters the class fixes instead of taking them as keywords (:meth:`params` reports them).
    fixed_params: ClassVar[tuple[str, ...]] = ()

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
        """Explain ``images``: attributions, maps, the classes explained and this call's diagnostics.

        See :func:`resolve_targets` for the target rule; :func:`explain_targets` explains several classes
        per image.
        """
        check_images(images)
        fused = None
        if target is None or (isinstance(target, str) and target == "prediction"):
            with torch.enable_grad():
                fused = self._attribute_predicted(model, images.detach())
        if fused is not None:
            found, targets = as_attribution(fused[0]), fused[1]
        else:
            targets = resolve_targets(model, images, target, labels)
            with torch.enable_grad():
                found = as_attribution(self._attribute(model, images.detach(), targets))
        attr = found.values.detach()
        if attr.dtype in (torch.bfloat16, torch.float16):  # a layer under autocast: metrics read float32
            attr = attr.float()
        maps = self.to_maps(attr, images.shape[-2:])
        return Explanation(attr, maps, targets, approximate=found.approximate, engine=found.engine)

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        target: Target = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Deprecated: ``explain(model, images, target, labels).maps``, which also carries the diagnostics."""
        warnings.warn(
            "calling an explainer is deprecated; use explainer.explain(model, images, ...).maps",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.explain(model, images, target=target, labels=labels).maps

    def applicable(self, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model``, in a few words; ``None`` when it can (the default).

        The audit's plan drops a model × method pair with a reason and lists it instead of running it (e.g.
        Grad-CAM on a model without a spatial layer, attention rollout on a CNN). Cheap: no forward pass.
        """
        return None

    def to_maps(self, attr: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        """Reduce attributions to maps at the input resolution."""
        if tuple(attr.shape[-2:]) != tuple(size):
            attr = F.interpolate(attr, size=tuple(size), mode="bilinear", align_corners=False)
        return reduce_channels(attr, self.reduction)

    @abstractmethod
    def _attribute(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | Attribution:
        """Raw attributions for validated inputs and resolved targets (with diagnostics, if any)."""

    def _attribute_predicted(
        self, model: nn.Module, images: torch.Tensor
    ) -> tuple[torch.Tensor | Attribution, torch.Tensor] | None:
        """Attributions for each image's predicted class, and those classes, from the method's own passes.

        For methods whose forward pass on the images themselves gives the prediction for free; ``None``
        (the default) means the prediction is a forward pass of its own (:func:`resolve_targets`).
        """
        return None

    def finds_prediction(self) -> bool:
        """Whether the method finds the predicted class in its own passes (else: a forward pass of its own).

        True for the methods that implement :meth:`_attribute_predicted`; the audit's plan counts the extra
        forward pass of the others.
        """
        return type(self)._attribute_predicted is not Explainer._attribute_predicted

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Images pushed forward and backward through the model by one call on ``batch`` images.

        ``height × width`` is the image size (occlusion's window count depends on it). Target resolution
        and input checks are not counted. By default one forward and one backward pass of the batch.
        """
        return batch, batch

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Rows that go through the model per forward/backward pass in a call on ``batch`` images.

        The last pass may be shorter. By default the batch itself (one pass).
        """
        return batch

    def params(self) -> dict[str, ParamValue]:
        """Hyper-parameters, for reports and cache keys: the constructor's keywords (no per-call result)."""
        return declared_params(self, self.fixed_params)


def explain_targets(
    explainer: Explainer, model: nn.Module, images: torch.Tensor, targets: Sequence[int] | str
) -> torch.Tensor:
    """Maps for several classes per image, e.g. every finding of a multi-label model.

    Args:
        explainer: The method.
        model: The model.
        images: Images ``[B, C, H, W]`` in [0, 1].
        targets: Class indices explained for every image, or ``"all"`` (every logit of the model).

    Returns:
        Maps ``[B, T, H, W]``; ``maps[:, j]`` is ``explainer.explain(model, images, target=targets[j]).maps``.
    """
    check_images(images)
    indices = target_list(model, images, targets)
    maps = [explainer.explain(model, images, target=t).maps for t in indices]
    return torch.stack(maps, dim=1)


def create_explainer(name: str, **kwargs: object) -> Explainer:
    """Create the registered explainer ``name`` with its hyper-parameters."""
    return EXPLAINERS.create(name, **kwargs)


def list_explainers() -> list[str]:
    """Names of the registered explainers."""
    return EXPLAINERS.names()
