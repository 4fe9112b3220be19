"""Per-sample classification metrics.

Accuracy is returned per sample (1.0 for a correct prediction, 0.0 otherwise) so that the audit can store
one row per sample and average, bootstrap or stratify later, exactly like the explanation metrics.
"""

from __future__ import annotations

import math

import torch

from robustxai._errors import RobustXAIError
from robustxai._validate import check_labels


def predictions(logits_or_preds: torch.Tensor) -> torch.Tensor:
    """Turn logits ``[B, K]`` (or predicted indices ``[B]``) into predicted class indices ``[B]``.

    A single logit column ``[B, 1]`` is read as a binary (sigmoid) model: class 1 when the logit is > 0.
    Integer vectors ``[B]`` are taken as predictions already.

    Args:
        logits_or_preds: Logits ``[B, K]`` (floating point) or predictions ``[B]`` (integer).

    Returns:
        Integer tensor ``[B]`` (int64) on the input's device.

    Raises:
        RobustXAIError: For any other shape or dtype (a float vector ``[B]`` is ambiguous and refused).
    """
    x = logits_or_preds
    if not isinstance(x, torch.Tensor):
        raise RobustXAIError(f"logits_or_preds must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 2:
        if not x.is_floating_point():
            raise RobustXAIError(f"logits [B, K] must be floating point, got dtype {x.dtype}")
        if x.shape[1] == 0:
            raise RobustXAIError(f"logits must have at least one column, got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            return (x[:, 0] > 0).long()
        return x.argmax(dim=1)
    if x.ndim == 1:
        if x.is_floating_point() or x.dtype == torch.bool:
            raise RobustXAIError(
                f"predictions [B] must hold integer class indices, got dtype {x.dtype} "
                "(pass logits as [B, K])"
            )
        return x.long()
    raise RobustXAIError(f"logits_or_preds must be logits [B, K] or predictions [B], got {tuple(x.shape)}")


def accuracy(logits_or_preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample correctness of a multiclass prediction.

    Args:
        logits_or_preds: Logits ``[B, K]`` (argmax is the prediction; ``[B, 1]`` means one binary logit,
            positive when > 0) or integer predictions ``[B]``.
        labels: Integer true classes ``[B]``.

    Returns:
        Float64 tensor ``[B]`` of 1.0 (correct) / 0.0 (wrong) on the input's device; its mean is the accuracy.

    Raises:
        RobustXAIError: On wrong shapes, dtypes or a batch-size mismatch.
    """
    preds = predictions(logits_or_preds)
    y = check_labels(labels, preds.shape[0])
    return (preds == y.to(preds.device).long()).to(torch.float64)


def delta_accuracy(clean_acc: float, adv_acc: float) -> float:
    """Accuracy drop under attack, ΔAcc = Acc_clean − Acc_adv (Secure Diagnostics).

    Both accuracies must be on the same scale (fractions or percentages); the result uses that scale.
    A positive value means the attack hurts.

    Raises:
        RobustXAIError: If either value is not a finite number.
    """
    values = []
    for name, v in (("clean_acc", clean_acc), ("adv_acc", adv_acc)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise RobustXAIError(f"{name} must be a number, got {v!r}") from None
        if not math.isfinite(f):
            raise RobustXAIError(f"{name} must be finite, got {v!r}")
        values.append(f)
    return values[0] - values[1]
