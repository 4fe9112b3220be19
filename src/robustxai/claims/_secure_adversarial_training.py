"""Secure Diagnostics: adversarially trained models stay accurate under PGD where a standard one fails.

The paper's Table 1: under PGD ε = 4/255 its five robust (adversarially trained) models keep 69–87 % of
their accuracy while the standard model falls to 0 %. Its ranking of models by robustness, and so its
alignment claim, rests on that gap. Here: for every PGD-trained model and its standard counterpart (rule
of :mod:`robustxai.claims._pairs`), the paired accuracy difference under the run's primary attack.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, Claim, ClaimResult
from robustxai.claims._data import condition_text, primary_condition
from robustxai.claims._paired import accuracy_gain_result
from robustxai.claims._pairs import adversarial_pairs
from robustxai.claims._papers import SECURE
from robustxai.results._run import RunData


@CLAIMS.register("secure.adversarial_training")
class AdversarialTrainingRobustness(Claim):
    """Paired accuracy difference (adversarially trained − standard) under the primary attack."""

    id = "secure.adversarial_training"
    paper = SECURE
    statement = (
        "An adversarially trained model is more accurate under the primary attack than its standard "
        "counterpart on the same images (difference > 0)."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per (PGD-trained, standard) pair."""
        primary = primary_condition(run)
        if primary is None:
            return [self.undecided("the run records no primary attack")]
        pairs, notes = adversarial_pairs(run)
        if not pairs:
            why = "; ".join(notes) if notes else "no adversarially (pgd) trained model in this run"
            return [self.undecided(f"no adversarial/standard pair: {why}")]
        out = []
        for robust, standard in pairs:
            out.append(
                accuracy_gain_result(
                    self,
                    run,
                    (robust, primary),
                    (standard, primary),
                    scope=f"{robust} vs {standard}, {condition_text(primary)}",
                    label="accuracy difference (adversarially trained − standard), paired images",
                )
            )
        return out
