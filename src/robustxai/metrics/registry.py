"""Metric registry: per-sample metric functions by name, with what they need and which way is better.

The audit iterates this registry to know which inputs a metric takes (``needs``) and how to rank values
(``higher_is_better``). Entries are stored in the shared :class:`~robustxai.registry.Registry` as
zero-argument factories returning a :class:`MetricInfo`, so unknown names fail with the list of known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from robustxai.metrics.alignment import point_coverage, rmse, topk_iou
from robustxai.metrics.classification import accuracy
from robustxai.metrics.localisation import pointing_game, relevance_mass
from robustxai.metrics.multilabel import auc, label_accuracy
from robustxai.metrics.similarity import mse, pearson, ssim
from robustxai.metrics.statistics import spearman_permutation
from robustxai.registry import Registry

Needs = Literal["points", "mask", "truth", "labels", "maps_pair", "values_pair"]
Per = Literal["sample", "label", "set"]


@dataclass(frozen=True)
class MetricInfo:
    """Description of one registered metric.

    Attributes:
        name: Registry name.
        fn: The metric function; what it returns depends on ``per``.
        higher_is_better: Direction of improvement, for ranking and report arrows.
        needs: What the metric compares against: expert ``points``, a ground-truth ``mask``, either or
            both (``truth``), class ``labels`` (with logits or scores), a second map batch
            (``maps_pair``), or two paired value vectors (``values_pair``, e.g. one value per model).
        description: One line for listings and reports.
        per: What one value describes: a ``sample`` (``fn`` returns a tensor ``[B]``), a ``label``
            (a tensor ``[K]`` computed over a set of samples, e.g. AUC), or the whole ``set`` (a tuple
            of statistics, e.g. Spearman's ``(rho, p_value, n)``).
    """

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    needs: Needs
    description: str
    per: Per = "sample"


METRICS: Registry[MetricInfo] = Registry("metric")


def _register(info: MetricInfo) -> None:
    def factory() -> MetricInfo:
        return info

    METRICS.register(info.name)(factory)


for _info in (
    MetricInfo("accuracy", accuracy, True, "labels", "1 if the prediction equals the label, else 0"),
    MetricInfo(
        "point_coverage", point_coverage, True, "points", "share of expert points inside the top-k map"
    ),
    MetricInfo("topk_iou", topk_iou, True, "mask", "IoU of the top-k map with the ground-truth mask"),
    MetricInfo("rmse", rmse, False, "mask", "RMSE between the top-k (or normalised) map and the mask"),
    MetricInfo("ssim", ssim, True, "maps_pair", "SSIM of two min-max normalised maps (skimage defaults)"),
    MetricInfo("mse", mse, False, "maps_pair", "mean squared difference of two min-max normalised maps"),
    MetricInfo("pearson", pearson, True, "maps_pair", "Pearson correlation of two maps' pixels"),
    MetricInfo(
        "pointing_game", pointing_game, True, "truth", "1 if the map's maximum is on the mask or near a point"
    ),
    MetricInfo(
        "relevance_mass", relevance_mass, True, "mask", "share of positive attribution inside the mask"
    ),
    MetricInfo("auc", auc, True, "labels", "ROC AUC per label (ties count half)", per="label"),
    MetricInfo(
        "label_accuracy", label_accuracy, True, "labels", "accuracy per label at logit > 0", per="label"
    ),
    MetricInfo(
        "spearman",
        spearman_permutation,
        True,
        "values_pair",
        "Spearman rank correlation with a permutation p-value",
        per="set",
    ),
):
    _register(_info)
del _info


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return METRICS.names()


def get_metric(name: str) -> MetricInfo:
    """Return the :class:`MetricInfo` registered as ``name``.

    Raises:
        robustxai.errors.UnknownNameError: For an unknown name; the message lists the known metrics.
    """
    return METRICS.get(name)()
