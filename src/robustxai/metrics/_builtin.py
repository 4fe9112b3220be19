"""The built-in metrics' registry entries: one :func:`register_metric` call per metric.

Each entry says what the metric needs, at which top-k fractions and with which audit settings it is
computed, which way is better, why it can be undefined, and how the report shows it. The audit and the
report read these entries; nothing else names the metrics. The order of the calls is the order the audit
computes them and the report shows them (columns of a table, rows of the correlation table).
"""

from __future__ import annotations

from robustxai.metrics._alignment import mask_area, point_coverage, rmse, topk_iou
from robustxai.metrics._classification import accuracy
from robustxai.metrics._localisation import pointing_game, relevance_mass
from robustxai.metrics._multilabel import auc, label_accuracy
from robustxai.metrics._registry import CONFIG_TOPS, REFERENCE_TOP, MetricInfo, register_metric
from robustxai.metrics._similarity import mse, pearson, ssim
from robustxai.metrics._statistics import spearman_permutation

register_metric(
    MetricInfo("accuracy", accuracy, True, "labels", "1 if the prediction equals the label, else 0")
)
register_metric(
    MetricInfo(
        "point_coverage",
        point_coverage,
        True,
        "points",
        "share of expert points inside the top-k map",
        label="point coverage",
        undefined="no expert point",
        tops=CONFIG_TOPS,
        table="alignment",
        scale=100.0,
        digits=1,
        headline=True,
    )
)
register_metric(
    MetricInfo(
        "mask_area",
        mask_area,
        None,
        "map",
        "true share of the image in the top-k region (ties included): describes the region, no better way",
        label="top-k area",
        tops=CONFIG_TOPS,
    )
)
register_metric(
    MetricInfo(
        "pointing_game",
        pointing_game,
        True,
        "truth",
        "1 if the map's maximum is on the mask or near a point",
        label="pointing game",
        undefined="neither a mask nor a point",
        settings=(("radius", "pointing_radius"),),
        table="localisation",
        scale=100.0,
        digits=1,
        guide="share (%) of images whose single most important pixel lies inside the expert mask (or within "
        "the configured radius of an expert point)",
    )
)
register_metric(
    MetricInfo(
        "relevance_mass",
        relevance_mass,
        True,
        "mask",
        "share of positive attribution inside the mask",
        label="relevance mass",
        undefined="no expert mask, or a map without positive attribution",
        table="localisation",
        scale=100.0,
        digits=1,
        guide="share (%) of the map's positive attribution that falls inside the mask",
    )
)
register_metric(
    MetricInfo(
        "topk_iou",
        topk_iou,
        True,
        "mask",
        "IoU of the top-k map with the ground-truth mask",
        label="IoU",
        undefined="no expert mask",
        tops=(REFERENCE_TOP,),
        table="impact",
        digits=2,
        guide="IoU between the top-k % region of the map and the expert mask (0–1, higher is better)",
    )
)
register_metric(
    MetricInfo(
        "rmse",
        rmse,
        False,
        "mask",
        "RMSE between the top-k (or normalised) map and the mask",
        label="RMSE",
        undefined="no expert mask",
        tops=(REFERENCE_TOP,),
        table="impact",
        digits=3,
        guide="RMSE between the thresholded map and the expert mask (lower is better)",
    )
)
register_metric(
    MetricInfo(
        "ssim",
        ssim,
        True,
        "maps_pair",
        "SSIM of two min-max normalised maps (skimage defaults)",
        label="SSIM",
        table="stability",
        digits=2,
    )
)
register_metric(
    MetricInfo(
        "mse",
        mse,
        False,
        "maps_pair",
        "mean squared difference of two min-max normalised maps",
        label="MSE",
        table="stability",
        digits=3,
    )
)
register_metric(
    MetricInfo(
        "pearson",
        pearson,
        True,
        "maps_pair",
        "Pearson correlation of two maps' pixels",
        label="Pearson r",
        undefined="a constant clean or attacked map",
        table="stability",
        digits=2,
    )
)
register_metric(MetricInfo("auc", auc, True, "labels", "ROC AUC per label (ties count half)", per="label"))
register_metric(
    MetricInfo(
        "label_accuracy", label_accuracy, True, "labels", "accuracy per label at logit > 0", per="label"
    )
)
register_metric(
    MetricInfo(
        "spearman",
        spearman_permutation,
        True,
        "values_pair",
        "Spearman rank correlation with a permutation p-value",
        per="set",
    )
)
