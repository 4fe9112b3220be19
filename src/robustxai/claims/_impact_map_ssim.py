"""Beside the explainability-impact claim: the map SSIM (clean map vs attacked map) does register the attack.

IoU and RMSE against a mask compare each map with the truth, so a map that changes inside and outside the
mask alike can keep both. Comparing the attacked map with the clean map of the same image (SSIM, the
manipulation paper's measure) sees the change directly. Here: per model and FGSM/BIM budget, the mean of
1 − SSIM(clean map, attacked map) over images (mean over the paper's map methods per image), judged against
the same margin under which IoU/RMSE count as unchanged.
"""

from __future__ import annotations

import numpy as np

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import condition_text, metric_matrix, model_names
from robustxai.claims._impact import (
    ATTACKS,
    EQUIVALENCE_MARGIN,
    NOT_EXPLAINED,
    explained_conditions,
    impact_conditions,
    impact_explainers,
)
from robustxai.claims._papers import IMPACT
from robustxai.claims._stats import paired_difference
from robustxai.results._run import RunData
from robustxai.results._schema import Condition

#: The stored map-similarity metric (clean vs attacked map of the same image, model and explainer).
MAP_SSIM = "map_ssim"


@CLAIMS.register("impact.map_ssim_detects")
class MapSsimDetects(Claim):
    """Bootstrap interval of 1 − map SSIM per model × FGSM/BIM budget, against the equivalence margin."""

    id = "impact.map_ssim_detects"
    paper = IMPACT
    statement = (
        "Where IoU/RMSE stay put, the map itself changes under FGSM/BIM: 1 − SSIM(clean map, attacked map) "
        f"exceeds the same margin {EQUIVALENCE_MARGIN:g}."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × FGSM/BIM budget."""
        conditions = impact_conditions(run)
        if not conditions:
            return [self.undecided(f"the run has none of the paper's attacks ({', '.join(ATTACKS)})")]
        explainers = impact_explainers(run, MAP_SSIM)
        if not explainers:
            return [self.undecided(f"no map_ssim rows under FGSM/BIM: {NOT_EXPLAINED}")]
        explained = explained_conditions(run, MAP_SSIM)
        return [self._one(run, m, c, explainers) for m in model_names(run) for c in explained]

    def _one(self, run: RunData, model: str, condition: Condition, explainers: list[str]) -> ClaimResult:
        _, ssim = metric_matrix(run, condition, MAP_SSIM, [model], explainers)
        change = 1.0 - ssim[0] if ssim.size else np.empty(0)
        diff = paired_difference(change, np.zeros_like(change))  # a one-sample interval: paired with 0
        verdict, why = _decide(diff.mean, (diff.ci_low, diff.ci_high), diff.n)
        return self.result(
            scope=f"{model}, {condition_text(condition)} ({', '.join(explainers)})",
            effect=diff.mean,
            effect_label="1 − SSIM(clean map, attacked map), mean over images",
            ci=(diff.ci_low, diff.ci_high),
            test=f"percentile bootstrap CI over images vs margin {EQUIVALENCE_MARGIN:g}",
            p_value=None,
            n=diff.n,
            n_unit="images",
            verdict=verdict,
            why=why,
        )


def _decide(mean: float, ci: tuple[float, float], n: int) -> tuple[Verdict, str]:
    margin = EQUIVALENCE_MARGIN
    if n < 3:
        return INCONCLUSIVE, f"too few images (n = {n})"
    if ci[0] > margin:
        return SUPPORTED, f"the map changes by {mean:.3f} (1 − SSIM), interval above {margin:g}"
    if ci[1] < margin:
        return CONTRADICTED, f"the map barely changes: 1 − SSIM = {mean:.3f}, interval below {margin:g}"
    return INCONCLUSIVE, f"interval [{ci[0]:.3f}, {ci[1]:.3f}] spans the margin {margin:g}"
