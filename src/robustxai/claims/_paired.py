"""Paired comparisons on the same images, the verdict of "A is more accurate than B", and the chance guard."""

from __future__ import annotations

import numpy as np

from robustxai.claims._base import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import correct_matrix, metric_matrix
from robustxai.claims._stats import ALPHA, PairedDifference, clopper_pearson, paired_difference
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN_CONDITION, Condition

__all__ = [
    "PAIRED_TEST",
    "accuracy_gain_result",
    "better_verdict",
    "chance_problem",
    "paired_accuracy",
    "paired_metric",
]

#: The test behind every paired accuracy difference.
PAIRED_TEST = "paired difference on the same images: percentile bootstrap CI, sign-flip permutation p"


def _aligned(
    ids_a: list[str], a: np.ndarray, ids_b: list[str], b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first rows of ``a`` and ``b`` on the images both have, in the same (sorted) order."""
    common = sorted(set(ids_a) & set(ids_b))
    if not common:
        return np.empty(0), np.empty(0)
    return a[0, [ids_a.index(s) for s in common]], b[0, [ids_b.index(s) for s in common]]


def paired_accuracy(
    run: RunData, a: tuple[str, Condition], b: tuple[str, Condition]
) -> tuple[PairedDifference, float, float]:
    """Accuracy of model ``a[0]`` under ``a[1]`` minus that of ``b[0]`` under ``b[1]``, image by image.

    Only images both were evaluated on count. Returns the paired difference and the two accuracies.
    """
    ids_a, acc_a = correct_matrix(run, a[1], [a[0]])
    ids_b, acc_b = correct_matrix(run, b[1], [b[0]])
    xa, xb = _aligned(ids_a, acc_a, ids_b, acc_b)
    mean_a = float(xa.mean()) if xa.size else float("nan")
    mean_b = float(xb.mean()) if xb.size else float("nan")
    return paired_difference(xa, xb), mean_a, mean_b


def paired_metric(
    run: RunData, model: str, metric: str, explainers: list[str], a: Condition, b: Condition
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``metric`` of ``model`` (mean over ``explainers``) under ``a`` and ``b``, paired by image."""
    ids_a, va = metric_matrix(run, a, metric, [model], explainers)
    ids_b, vb = metric_matrix(run, b, metric, [model], explainers)
    return _aligned(ids_a, va, ids_b, vb)


def better_verdict(diff: PairedDifference, acc_a: float, acc_b: float) -> tuple[Verdict, str]:
    """Whether the first accuracy is higher than the second, by the paired difference on the same images.

    Supported when the whole 95 % interval is above 0 *and* the sign-flip p is below α, contradicted when
    both say it is below 0 (with few discordant images the percentile bootstrap alone is too optimistic);
    inconclusive otherwise, with too few images, or when both accuracies sit at 0 or 1 (the attack
    saturates, or does nothing: no room for a difference).
    """
    numbers = f"{acc_a:.1%} vs {acc_b:.1%} on {diff.n} images, difference {diff.mean:+.1%}"
    if diff.n < 2:
        return INCONCLUSIVE, f"too few shared images (n = {diff.n})"
    if acc_a == acc_b and acc_a in (0.0, 1.0):
        return INCONCLUSIVE, f"both at {acc_a:.0%} accuracy here: no room for a difference ({numbers})"
    interval = f"95 % CI [{diff.ci_low:+.1%}, {diff.ci_high:+.1%}], p = {diff.p_value:.3g}"
    if diff.p_value < ALPHA and diff.ci_low > 0:
        return SUPPORTED, f"{numbers}, {interval}"
    if diff.p_value < ALPHA and diff.ci_high < 0:
        return CONTRADICTED, f"{numbers}, {interval}"
    return INCONCLUSIVE, f"interval spans 0 or p ≥ {ALPHA:g}: {numbers}, {interval}"


def chance_problem(run: RunData, models: list[str]) -> str | None:
    """Why comparing these models' accuracy under attack means nothing: one is no better than chance.

    A model is at chance when the lower end of the exact 95 % interval of its clean accuracy does not
    exceed the majority-class share of the same images: it has nothing to be robust about, and a
    difference of its accuracy under attack is noise (the smoke profile's two-epoch models are such).
    Returns ``None`` when every model is above chance.
    """
    preds = run.predictions
    for model in models:
        rows = preds[(preds["model"] == model) & (preds["condition"] == CLEAN_CONDITION[0])]
        if rows.empty:
            return f"{model} has no clean predictions"
        k, n = int(rows["correct"].astype(np.float64).sum()), len(rows)
        majority = float(rows["label"].astype(str).value_counts(normalize=True).max())
        low, _ = clopper_pearson(k, n)
        if not low > majority:
            return (
                f"{model} is no better than chance on clean images ({k}/{n} = {k / n:.0%} correct, 95 % CI "
                f"from {low:.0%}; majority class {majority:.0%}): its accuracy under attack means nothing"
            )
    return None


def accuracy_gain_result(
    claim: Claim, run: RunData, a: tuple[str, Condition], b: tuple[str, Condition], *, scope: str, label: str
) -> ClaimResult:
    """``claim``'s row for "model ``a[0]`` under ``a[1]`` is more accurate than ``b[0]`` under ``b[1]``".

    The paired difference on the same images decides it (:func:`better_verdict`), unless either model is no
    better than chance on clean images (:func:`chance_problem`): then the row is inconclusive.
    """
    diff, acc_a, acc_b = paired_accuracy(run, a, b)
    verdict, why = better_verdict(diff, acc_a, acc_b)
    if problem := chance_problem(run, list(dict.fromkeys([a[0], b[0]]))):
        verdict, why = INCONCLUSIVE, problem
    return claim.result(
        scope=scope,
        effect=diff.mean,
        effect_label=label,
        ci=(diff.ci_low, diff.ci_high),
        test=PAIRED_TEST,
        p_value=diff.p_value,
        n=diff.n,
        n_unit="images",
        verdict=verdict,
        why=why,
    )
