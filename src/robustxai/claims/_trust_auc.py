"""Trustworthiness paper: the manipulated images leave the model's performance (AUC) almost unchanged.

The paper's Table 1: the AUC on manipulated images differs from the original 0.895 by at most 2.5 %
(relative) for every attacked method — the maps move while the diagnosis stays. Here, per model and
attacked method: the mean over labels (classes) of the ROC AUC on the manipulated images, its change
relative to the clean images' (in %, as the paper's row "AUC (change %)"), and a percentile-bootstrap
interval over images (clean and manipulated scores of an image resampled together), against
:data:`MAX_AUC_DROP_PCT`. Read from the stage's ``label@k``, ``clean_score@k`` and ``adv_score@k`` rows.

Where the manipulated images hold one class only (the built-in benchmark manipulates the annotated, i.e.
fractured, images) AUC is undefined; the row then judges, against the same bound, the relative change of
the mean probability of each image's true class (paired bootstrap over images) and says so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import metric_names, metric_rows
from robustxai.claims._manip import attacked_methods
from robustxai.claims._papers import TRUST
from robustxai.claims._stats import percentile_interval, resample
from robustxai.results._run import RunData
from robustxai.results._schema import ADV_SCORE, CLEAN_SCORE, LABEL, NO_EXPLAINER, MetricKey

#: Largest relative AUC drop still "unchanged": the paper's largest is 2.5 % (Grad-CAM, Guided Grad-CAM).
MAX_AUC_DROP_PCT = 2.5


def mean_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean over labels of the ROC AUC (Mann–Whitney, ties counted half) of each row.

    Args:
        scores: ``[B, K, n]`` scores of ``n`` images for ``K`` labels, in ``B`` resamples.
        labels: ``[B, K, n]`` 0/1 targets.

    Returns:
        ``[B]``; a label whose targets are all one value in a resample is left out of that row's mean
        (NaN when every label is).
    """
    ranks = sps.rankdata(scores, axis=-1)
    pos = labels > 0.5
    n_pos = pos.sum(axis=-1)
    n_neg = labels.shape[-1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (ranks * pos).sum(axis=-1) - n_pos * (n_pos + 1) / 2.0
        per_label = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    defined = np.isfinite(per_label)
    count = defined.sum(axis=-1)
    total = np.where(defined, per_label, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _per_label(run: RunData, model: str, method: str, name: str) -> dict[str, float]:
    """``sample_id → value`` of one per-label metric (``label@0``) of the attacked images."""
    rows = metric_rows(run, name)
    rows = rows[
        (rows["model"] == model)
        & (rows["condition"] == f"manipulate:{method}")
        & (rows["explainer"] == NO_EXPLAINER)
    ]
    return {str(s): float(v) for s, v in zip(rows["sample_id"], rows["value"], strict=True)}


def _columns(run: RunData, model: str, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``labels, clean scores, manipulated scores`` ``[K, n]`` over the images that have all of them."""
    ks = sorted(
        {MetricKey.parse(n).qualifier for n in metric_names(run) if MetricKey.parse(n).name == LABEL},
        key=lambda q: (len(q), q),
    )
    tables = [[_per_label(run, model, method, str(MetricKey(p, k))) for k in ks] for p in _PREFIXES]
    ids = sorted(set.intersection(*(set(t) for table in tables for t in table))) if ks else []
    arrays = [np.array([[t[i] for i in ids] for t in table]).reshape(len(ks), len(ids)) for table in tables]
    return arrays[0], arrays[1], arrays[2]


_PREFIXES = (LABEL, CLEAN_SCORE, ADV_SCORE)


@CLAIMS.register("trust.auc_kept")
class AucKept(Claim):
    """Relative AUC change (manipulated vs clean images) per model × attacked method, bootstrapped."""

    id = "trust.auc_kept"
    paper = TRUST
    statement = (
        "The manipulated images keep the model's performance: the mean AUC over labels falls by less than "
        "2.5 % relative to the clean images (where they hold one class only, AUC is undefined: the mean "
        "probability of the true class, by the same bound)."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × attacked method (the stage stores per-label scores for every task)."""
        pairs = attacked_methods(run)
        if not pairs:
            return [self.undecided("no manipulation stage in this run")]
        return [self._one(run, model, method) for model, method in pairs]

    def _one(self, run: RunData, model: str, method: str) -> ClaimResult:
        labels, clean, adv = _columns(run, model, method)
        scope = f"{model}, manipulated {method}"
        n = labels.shape[1]
        change = _change(mean_auc(clean[None], labels[None]), mean_auc(adv[None], labels[None]))[0]
        if n >= 2 and math.isnan(change) and _one_class(labels):
            return self._true_class(scope, labels, clean, adv)
        if n < 2 or math.isnan(change):
            why = (
                f"AUC undefined on {n} image{'s' * (n != 1)}"
                if n
                else "AUC undefined: the run stores no per-label scores of these manipulated images"
            )
            return self.undecided(why, scope=scope, effect_label=_LABEL, n=n, n_unit="images")
        idx = resample(n)  # [B, n]: every label's clean and manipulated scores of an image move together
        y = labels[:, idx].transpose(1, 0, 2)
        boots = _change(
            mean_auc(clean[:, idx].transpose(1, 0, 2), y), mean_auc(adv[:, idx].transpose(1, 0, 2), y)
        )
        ci = percentile_interval(boots)
        verdict, why = _decide(change, ci, n)
        return self.result(
            scope=scope,
            effect=change,
            effect_label=_LABEL,
            ci=ci,
            test=f"percentile bootstrap over images vs −{MAX_AUC_DROP_PCT:g} % (non-inferiority)",
            p_value=None,
            n=n,
            n_unit="images",
            verdict=verdict,
            why=why,
        )

    def _true_class(self, scope: str, labels: np.ndarray, clean: np.ndarray, adv: np.ndarray) -> ClaimResult:
        """Where AUC is undefined (one class only): the change of the true class's mean probability.

        What "AUC kept" stands for on such data: the manipulated images leave the model's confidence in
        the right class where it was. Per image the probability of its true class (mean over its positive
        labels), the change of the mean relative to the clean images' (%), a paired percentile bootstrap
        over images, judged against the paper's bound :data:`MAX_AUC_DROP_PCT`.
        """
        pos = labels > 0.5
        has = pos.any(axis=0)
        count = np.maximum(pos.sum(axis=0), 1)
        c, a = ((v * pos).sum(axis=0)[has] / count[has] for v in (clean, adv))
        n = int(c.size)
        one = (
            f"the {labels.shape[1]} manipulated images hold one class only, so AUC cannot be computed on them"
        )
        if n < 3:
            why = f"{one}; too few images with a true class to compare its probability (n = {n})"
            return self.undecided(why, scope=scope, effect_label=_TRUE_LABEL, n=n, n_unit="images")
        idx = resample(n)  # [B, n]: an image's clean and manipulated probabilities move together
        ci = percentile_interval(_change(c[idx].mean(axis=1), a[idx].mean(axis=1)))
        change = float(_change(np.array(c.mean()), np.array(a.mean())))
        verdict, why = _decide(change, ci, n, "true-class probability")
        return self.result(
            scope=scope,
            effect=change,
            effect_label=_TRUE_LABEL,
            ci=ci,
            test=f"paired percentile bootstrap over images vs −{MAX_AUC_DROP_PCT:g} % (non-inferiority)",
            p_value=None,
            n=n,
            n_unit="images",
            verdict=verdict,
            why=f"{one}; instead: {why}",
        )


_LABEL = "AUC change (manipulated vs clean, % of clean), mean over labels"
_TRUE_LABEL = "true-class probability change (manipulated vs clean, % of clean), mean over images"


def _one_class(labels: np.ndarray) -> bool:
    """Whether every label is one value on every image (no label has both classes: AUC is undefined)."""
    return bool(labels.size) and bool(np.all(labels.min(axis=1) == labels.max(axis=1)))


def _change(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clean > 0, 100.0 * (adv - clean) / clean, np.nan)


def _decide(change: float, ci: tuple[float, float], n: int, name: str = "AUC") -> tuple[Verdict, str]:
    bound = -MAX_AUC_DROP_PCT
    numbers = f"{name} change {change:+.1f} % on {n} images, 95 % CI [{ci[0]:+.1f}, {ci[1]:+.1f}] %"
    if math.isnan(ci[0]):
        return INCONCLUSIVE, f"no interval: {numbers}"
    if ci[0] > bound:
        return SUPPORTED, f"{numbers}: the drop stays under {MAX_AUC_DROP_PCT:g} %"
    if ci[1] < bound:
        return CONTRADICTED, f"{numbers}: the {name} falls by more than {MAX_AUC_DROP_PCT:g} %"
    return INCONCLUSIVE, f"interval spans −{MAX_AUC_DROP_PCT:g} %: {numbers}"
