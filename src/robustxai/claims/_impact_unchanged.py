"""Explainability-impact paper: under FGSM/BIM the maps' IoU and RMSE against the mask stay unchanged.

The paper (Tables 1–2) finds IoU and RMSE of GradCAM, SmoothGrad and LIME maps against the SAM mask move by
at most 0.019 while accuracy falls by 0.31–0.44, and concludes these metrics may not detect an attack.
Here: per model, attack budget and metric, the per-image change attacked − clean (mean over the paper's map
methods per image, so the image stays the unit) is tested for equivalence to 0 within
:data:`~robustxai.claims._impact.EQUIVALENCE_MARGIN` by two one-sided t-tests (TOST), paired on the same
images. ``impact.map_ssim_detects`` sets beside it the map-SSIM change that does register the attack.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import condition_text, explainers_of, model_names
from robustxai.claims._impact import (
    ATTACKS,
    EQUIVALENCE_MARGIN,
    IOU,
    NOT_EXPLAINED,
    RMSE,
    explained_conditions,
    impact_conditions,
    impact_explainers,
)
from robustxai.claims._paired import better_verdict, chance_problem, paired_accuracy, paired_metric
from robustxai.claims._papers import IMPACT
from robustxai.claims._stats import ALPHA, PairedDifference, Tost, paired_difference, tost
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN_CONDITION, Condition

_NAMES = {IOU: "IoU", RMSE: "RMSE"}


@CLAIMS.register("impact.iou_rmse_unchanged")
class IouRmseUnchanged(Claim):
    """TOST equivalence of IoU and RMSE (attacked vs clean, paired images) per model × attack × metric."""

    id = "impact.iou_rmse_unchanged"
    paper = IMPACT
    statement = (
        "Under FGSM/BIM the maps' top-15 % IoU and RMSE against the mask stay within "
        f"±{EQUIVALENCE_MARGIN:g} of their clean values (equivalence, paired images)."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × FGSM/BIM budget × metric (IoU, RMSE)."""
        conditions = impact_conditions(run)
        if not conditions:
            return [self.undecided(f"the run has none of the paper's attacks ({', '.join(ATTACKS)})")]
        out = []
        for metric in (IOU, RMSE):
            explained = explained_conditions(run, metric)
            explainers = impact_explainers(run, metric)
            if not explainers:
                unexplained = not explained and explainers_of(run, metric)
                why = NOT_EXPLAINED if unexplained else "no images with a mask"
                out.append(self.undecided(f"no {metric} rows under FGSM/BIM: {why}"))
                continue
            for model in model_names(run):
                for condition in explained:
                    out.append(self._one(run, model, condition, metric, explainers))
        return out

    def _one(
        self, run: RunData, model: str, condition: Condition, metric: str, explainers: list[str]
    ) -> ClaimResult:
        attacked, clean = paired_metric(run, model, metric, explainers, condition, CLEAN_CONDITION)
        diff = paired_difference(attacked, clean)
        test = tost(attacked - clean, EQUIVALENCE_MARGIN)
        verdict, why = _decide(diff, test, _NAMES[metric])
        premise = _premise(run, model, condition)
        if premise is not None and verdict == SUPPORTED:
            verdict, why = INCONCLUSIVE, f"{why}, but {premise}"
        return self.result(
            scope=f"{model}, {condition_text(condition)}, {_NAMES[metric]} ({', '.join(explainers)})",
            effect=diff.mean,
            effect_label=f"{_NAMES[metric]} change (attacked − clean), paired images",
            ci=(diff.ci_low, diff.ci_high),
            test=f"TOST (two one-sided t-tests), margin ±{EQUIVALENCE_MARGIN:g}; percentile bootstrap CI",
            p_value=test.p_value,
            n=diff.n,
            n_unit="images",
            verdict=verdict,
            why=why,
        )


def _decide(diff: PairedDifference, test: Tost, name: str) -> tuple[Verdict, str]:
    """Equivalent when TOST's p < α; changed when the whole interval lies outside the margin."""
    margin = test.margin
    numbers = f"{name} change {diff.mean:+.3f} on {diff.n} images"
    if diff.n < 3:
        return INCONCLUSIVE, f"too few images with a mask (n = {diff.n})"
    if test.p_value < ALPHA:
        return SUPPORTED, f"{numbers}: within ±{margin:g} (TOST p = {test.p_value:.3g})"
    if diff.ci_low > margin or diff.ci_high < -margin:
        return CONTRADICTED, f"{numbers}: the attack moves {name} by more than {margin:g} (interval outside)"
    return INCONCLUSIVE, (
        f"interval spans the margin ±{margin:g}: {numbers}, 95 % CI [{diff.ci_low:+.3f}, "
        f"{diff.ci_high:+.3f}], TOST p = {test.p_value:.3g}"
    )


def _premise(run: RunData, model: str, condition: Condition) -> str | None:
    """Why an unchanged IoU/RMSE proves nothing here: the attack did not lower this model's accuracy.

    The paper's point is that the metrics stay put *although* accuracy falls; where the attack does not
    measurably lower accuracy (``impact.accuracy_falls`` is not supported), an unchanged metric is no
    evidence that the metric is blind.
    """
    if problem := chance_problem(run, [model]):
        return problem
    diff, clean, attacked = paired_accuracy(run, (model, CLEAN_CONDITION), (model, condition))
    verdict, why = better_verdict(diff, clean, attacked)
    return None if verdict == SUPPORTED else f"the attack did not measurably lower accuracy ({why})"
