"""The task loss shared by training and attacks: softmax cross-entropy or per-label sigmoid BCE.

A model's task (``ModelWrapper.task``) decides how labels are read: class indices ``[B]`` for
``multiclass``, 0/1 columns ``[B, K]`` for ``multilabel``. Keeping the choice in one place means an attack
on a CheXpert-style model attacks the loss the model was trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._validate import check_labels, check_multilabel


def task_of(model: nn.Module) -> str:
    """``"multilabel"`` for a wrapper that declares it; ``"multiclass"`` for any other module."""
    return "multilabel" if getattr(model, "task", "multiclass") == "multilabel" else "multiclass"


def is_multilabel(model: nn.Module) -> bool:
    """Whether ``model`` is a multi-label (sigmoid per logit) classifier."""
    return task_of(model) == "multilabel"


def check_task_labels(model: nn.Module, labels: torch.Tensor, batch: int) -> torch.Tensor:
    """Validate labels for the task: long ``[B]`` (multiclass) or float 0/1 ``[B, K]`` (multilabel)."""
    if is_multilabel(model):
        return check_multilabel(labels, batch)
    return check_labels(labels, batch)


def task_loss(
    model: nn.Module,
    logits: torch.Tensor,
    labels: torch.Tensor,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy for multiclass models, binary cross-entropy with logits per label for multilabel ones.

    Args:
        model: The model (only its ``task`` is read).
        logits: ``[B, K]`` logits.
        labels: Class indices ``[B]`` or 0/1 targets ``[B, K]``, as the task requires.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample values ``[B]``).
        weight: Class weights ``[K]`` (multiclass) or positive-label weights ``[K]`` (multilabel).
    """
    if is_multilabel(model):
        per = F.binary_cross_entropy_with_logits(
            logits, labels.to(logits.dtype), pos_weight=weight, reduction="none"
        ).sum(dim=1)
        if reduction == "none":
            return per
        return per.sum() if reduction == "sum" else per.mean()
    return F.cross_entropy(logits, labels, weight=weight, reduction=reduction)


def predict_labels(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Predictions: class indices ``[B]`` (argmax) or 0/1 per label ``[B, K]`` (logit > 0)."""
    if is_multilabel(model):
        return (logits > 0).long()
    return logits.argmax(dim=1)
