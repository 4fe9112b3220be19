"""Per-sample metrics: classification, alignment with ground truth, map similarity, and statistics.

Every metric is a plain function that takes tensors and returns one value per sample, a float64 tensor
``[B]`` on the input's device; undefined values are NaN. Means, confidence intervals and tables belong to
the audit and the report. Metrics are also registered by name (:func:`list_metrics`, :func:`get_metric`).
"""

from __future__ import annotations

from robustxai.metrics.alignment import mask_area, point_coverage, rmse, topk_iou, topk_mask
from robustxai.metrics.classification import accuracy, delta_accuracy, predictions
from robustxai.metrics.localisation import pointing_game, relevance_mass
from robustxai.metrics.multilabel import auc, label_accuracy
from robustxai.metrics.registry import METRICS, MetricInfo, get_metric, list_metrics
from robustxai.metrics.similarity import minmax, mse, pearson, ssim
from robustxai.metrics.statistics import bootstrap_ci, rankdata, spearman_permutation

__all__ = [
    "METRICS",
    "MetricInfo",
    "accuracy",
    "auc",
    "bootstrap_ci",
    "delta_accuracy",
    "get_metric",
    "label_accuracy",
    "list_metrics",
    "mask_area",
    "minmax",
    "mse",
    "pearson",
    "point_coverage",
    "pointing_game",
    "predictions",
    "rankdata",
    "relevance_mass",
    "rmse",
    "spearman_permutation",
    "ssim",
    "topk_iou",
    "topk_mask",
]
