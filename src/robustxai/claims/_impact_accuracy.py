"""Explainability-impact paper: FGSM and BIM lower the model's accuracy.

The paper's model falls from 89.9 % to 58.7 % (FGSM) and 45.5 % (BIM) accuracy. Here: per model and attack
budget, the paired difference of accuracy clean − attacked on the same images (the premise of the paper's
"the maps' IoU/RMSE barely move although accuracy falls").
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, Claim, ClaimResult
from robustxai.claims._data import condition_text, model_names
from robustxai.claims._impact import ATTACKS, impact_conditions
from robustxai.claims._paired import accuracy_gain_result
from robustxai.claims._papers import IMPACT
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN_CONDITION


@CLAIMS.register("impact.accuracy_falls")
class AccuracyFalls(Claim):
    """Paired accuracy drop clean − attacked per model × FGSM/BIM budget."""

    id = "impact.accuracy_falls"
    paper = IMPACT
    statement = "FGSM and BIM lower accuracy: clean − attacked accuracy on the same images > 0."

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × FGSM/BIM budget."""
        conditions = impact_conditions(run)
        if not conditions:
            return [self.undecided(f"the run has none of the paper's attacks ({', '.join(ATTACKS)})")]
        out = []
        for model in model_names(run):
            for condition in conditions:
                out.append(
                    accuracy_gain_result(
                        self,
                        run,
                        (model, CLEAN_CONDITION),
                        (model, condition),
                        scope=f"{model}, {condition_text(condition)}",
                        label="accuracy drop (clean − attacked), paired images",
                    )
                )
        return out
