"""Per-label classification metrics: ROC AUC and label accuracy.

Multi-label models (CheXpert-style, one sigmoid per finding, ``model.task == "multilabel"``) are judged per
label, and clinical papers report AUC rather than accuracy because findings are rare. Unlike the per-sample
metrics, these are computed over a whole set of samples and return one value per label, a float64 tensor
``[K]`` on the input's device; a label whose value is undefined on this set is NaN.
"""

from __future__ import annotations

import math

import torch

from robustxai._errors import RobustXAIError
from robustxai._validate import check_labels, check_multilabel
from robustxai.metrics._statistics import rankdata


def _check_scores(scores: object) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise RobustXAIError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim not in (1, 2):
        raise RobustXAIError(f"scores must have shape [B] or [B, K], got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise RobustXAIError(f"scores must be floating point (logits or probabilities), got {scores.dtype}")
    if scores.shape[0] == 0 or (scores.ndim == 2 and scores.shape[1] == 0):
        raise RobustXAIError(f"scores is empty: shape {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise RobustXAIError("scores contain NaN or infinite values")
    return scores


def _binary_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Mann-Whitney AUC with half credit for ties; NaN when only one class is present."""
    n_pos = int(positive.sum())
    n_neg = int(positive.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score.detach().cpu().to(torch.float64).numpy())
    rank_sum = float(ranks[positive.cpu().numpy()].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _as_label_columns(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and 0/1 targets as matching ``[B, K]`` columns (one column per label or class)."""
    b = scores.shape[0]
    if isinstance(labels, torch.Tensor) and labels.ndim == 2:
        if scores.ndim != 2:
            raise RobustXAIError(
                f"multi-label labels {tuple(labels.shape)} need scores [B, K], got {tuple(scores.shape)}"
            )
        y = check_multilabel(labels, b, scores.shape[1])
        return scores.to(torch.float64), y.to(scores.device) > 0.5
    y = check_labels(labels, b).to(scores.device)
    if scores.ndim == 1 or scores.shape[1] == 1:
        if int(y.max()) > 1:
            raise RobustXAIError(
                f"one score column means a binary task, so labels must be 0 or 1, got {int(y.max())}"
            )
        return scores.reshape(b, 1).to(torch.float64), (y == 1)[:, None]
    k = scores.shape[1]
    if int(y.max()) >= k:
        raise RobustXAIError(f"labels must be class indices < {k}, got {int(y.max())}")
    # One-vs-rest on softmax probabilities; log-softmax orders them identically without saturating to 1.0.
    logp = torch.log_softmax(scores.to(torch.float64), dim=1)
    return logp, torch.nn.functional.one_hot(y, k).bool()


def auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC of each label (multi-label) or class (one-vs-rest), ties counted half.

    Equal to ``sklearn.metrics.roc_auc_score`` on each column: the probability that a random positive
    scores above a random negative, plus half the probability of a tie (Mann-Whitney U / (n₊·n₋), average
    ranks for ties). AUC depends only on the order of the scores, so logits and sigmoid probabilities give
    the same value.

    Accepted inputs:

    - multi-label: ``scores [B, K]`` (logits or probabilities) and 0/1 ``labels [B, K]`` → one AUC per label;
    - binary: ``scores [B]`` or ``[B, 1]`` (score of the positive class) and 0/1 ``labels [B]`` → ``[1]``;
    - multiclass: logits ``[B, K]`` and class indices ``labels [B]`` → one-vs-rest AUC per class on the
      softmax probabilities (for K = 2 both entries equal the binary AUC of class 1).

    Args:
        scores: Model outputs as above; finite floats.
        labels: Targets as above.

    Returns:
        Float64 tensor ``[K]`` on the scores' device; NaN for a label (class) whose targets on this set are
        all positive or all negative — AUC is undefined there (scikit-learn raises instead).

    Raises:
        RobustXAIError: On shapes, dtypes or values that do not fit one of the cases above.
    """
    s = _check_scores(scores)
    cols, pos = _as_label_columns(s, labels)
    values = [_binary_auc(cols[:, j], pos[:, j]) for j in range(cols.shape[1])]
    return torch.tensor(values, dtype=torch.float64, device=s.device)


def label_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of each label of a multi-label model, predicting a finding when its logit is > 0.

    The threshold is that of :func:`robustxai.models.predict_labels` (sigmoid probability > 0.5).

    Args:
        logits: Logits ``[B, K]``, one sigmoid per label.
        labels: 0/1 targets ``[B, K]``.

    Returns:
        Float64 tensor ``[K]`` in [0, 1] on the logits' device: the share of samples whose prediction for
        that label equals its target.

    Raises:
        RobustXAIError: If ``logits`` is not a float ``[B, K]`` tensor or ``labels`` not 0/1 ``[B, K]``.
    """
    s = _check_scores(logits)
    if s.ndim != 2:
        raise RobustXAIError(f"logits of a multi-label model must have shape [B, K], got {tuple(s.shape)}")
    y = check_multilabel(labels, s.shape[0], s.shape[1]).to(s.device)
    return ((s > 0).to(torch.float64) == y.to(torch.float64)).to(torch.float64).mean(dim=0)
