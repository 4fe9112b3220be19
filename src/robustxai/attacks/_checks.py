"""Entry checks and the correctness rule every attack, sweep and cascade shares.

They live below both :mod:`robustxai.attacks._base` (the :class:`~robustxai.attacks._base.Attack` class) and
:mod:`robustxai.attacks.sweep` (ε sweeps and cascades), so neither of those imports the other back.
"""

from __future__ import annotations

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_images
from robustxai.models._losses import check_task_labels, is_multilabel, predict_labels

__all__ = ["check_attack_data", "check_label_range", "is_correct"]


def check_attack_data(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Validate an attack's images and labels for the model's task; return labels on the images' device."""
    check_images(images)
    labels = check_task_labels(model, labels, images.shape[0]).to(images.device)
    check_label_range(model, labels)
    return labels


def check_label_range(model: nn.Module, labels: torch.Tensor, name: str = "labels") -> None:
    """Check multiclass labels against the model's number of classes when the model declares it."""
    k = getattr(model, "num_classes", None)
    if isinstance(k, int) and not is_multilabel(model) and labels.numel() and int(labels.max()) >= k:
        raise RobustXAIError(f"{name} must lie in [0, {k - 1}] for this model, got {int(labels.max())}")


def is_correct(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample correctness ``[B]`` (bool): arg-max == label, or every label right (multilabel)."""
    pred = predict_labels(model, logits)
    if is_multilabel(model):
        return (pred == labels.to(pred.dtype)).all(dim=1)
    return pred == labels
