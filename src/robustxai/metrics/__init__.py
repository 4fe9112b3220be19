"""Per-sample metrics: classification, alignment with ground truth, map similarity, and statistics.

Every metric is a plain function that takes tensors and returns one value per sample, a float64 tensor
``[B]`` on the input's device; undefined values are NaN. Means, confidence intervals and tables belong to
the audit and the report. Metrics are also registered by name (:func:`list_metrics`, :func:`get_metric`,
:func:`register_metric`); the registry drives the audit and the report.
"""

from __future__ import annotations

from robustxai.metrics import _builtin  # noqa: F401  (registers the built-in metrics)
from robustxai.metrics._alignment import mask_area, point_coverage, rmse, topk_iou, topk_mask
from robustxai.metrics._classification import accuracy, delta_accuracy, predictions
from robustxai.metrics._localisation import peak_in_region, pointing_game, relevance_mass
from robustxai.metrics._multilabel import auc, label_accuracy
from robustxai.metrics._registry import (
    METRICS,
    MapInputs,
    MetricInfo,
    evaluate,
    get_metric,
    headline_metric,
    list_metrics,
    map_metrics,
    register_metric,
    unregister_metric,
)
from robustxai.metrics._similarity import minmax, mse, pearson, ssim
from robustxai.metrics._statistics import bootstrap_ci, rankdata, spearman_permutation

__all__ = [
    "METRICS",
    "MapInputs",
    "MetricInfo",
    "accuracy",
    "auc",
    "bootstrap_ci",
    "delta_accuracy",
    "evaluate",
    "get_metric",
    "headline_metric",
    "label_accuracy",
    "list_metrics",
    "map_metrics",
    "mask_area",
    "minmax",
    "mse",
    "peak_in_region",
    "pearson",
    "point_coverage",
    "pointing_game",
    "predictions",
    "rankdata",
    "register_metric",
    "relevance_mass",
    "rmse",
    "spearman_permutation",
    "ssim",
    "topk_iou",
    "topk_mask",
    "unregister_metric",
]
