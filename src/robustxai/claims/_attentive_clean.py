"""Attentive-CNN paper: the attention block costs (almost) no clean accuracy.

The paper presents attention as "a reliable method for increasing robust accuracy without sacrifice"; its
attentive ResNet-50 loses 2.5 points of clean accuracy on skin lesions (0.905 → 0.88) and 1.4 on diabetic
retinopathy (0.832 → 0.818), which it calls a slight decrease. Here: a non-inferiority comparison of clean
accuracy (attention − standard counterpart, paired on the same images) against the margin
:data:`NON_INFERIORITY_MARGIN`.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import condition_text
from robustxai.claims._paired import PAIRED_TEST, chance_problem, paired_accuracy
from robustxai.claims._pairs import attention_pairs
from robustxai.claims._papers import ATTENTIVE
from robustxai.claims._stats import PairedDifference
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN_CONDITION

#: Largest loss of clean accuracy still "without sacrifice": the paper calls a 2.5-point loss slight
#: (its largest, skin lesions with ResNet-50), so 3 points is the margin; it is fixed here, not fitted.
NON_INFERIORITY_MARGIN = 0.03


@CLAIMS.register("attentive.clean_accuracy_kept")
class AttentionCleanAccuracy(Claim):
    """Non-inferiority of clean accuracy of each attention model to its standard counterpart."""

    id = "attentive.clean_accuracy_kept"
    paper = ATTENTIVE
    statement = (
        "Adding soft attention costs at most 3 points of clean accuracy: the paired difference "
        "attention − standard stays above −0.03."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per (attention, standard) pair."""
        pairs, notes = attention_pairs(run)
        if not pairs:
            why = "; ".join(notes) if notes else "no attention model in this run"
            return [self.undecided(f"no attention/standard pair: {why}")]
        out = []
        for attention, standard in pairs:
            diff, acc_a, acc_s = paired_accuracy(
                run, (attention, CLEAN_CONDITION), (standard, CLEAN_CONDITION)
            )
            verdict, why = _decide(diff, acc_a, acc_s)
            if problem := chance_problem(run, [attention, standard]):
                verdict, why = INCONCLUSIVE, problem
            out.append(
                self.result(
                    scope=f"{attention} vs {standard}, {condition_text(CLEAN_CONDITION)}",
                    effect=diff.mean,
                    effect_label="clean accuracy difference (attention − standard), paired images",
                    ci=(diff.ci_low, diff.ci_high),
                    test=f"non-inferiority, margin −{NON_INFERIORITY_MARGIN:g}: " + PAIRED_TEST,
                    p_value=None,
                    n=diff.n,
                    n_unit="images",
                    verdict=verdict,
                    why=why,
                )
            )
        return out


def _decide(diff: PairedDifference, acc_a: float, acc_s: float) -> tuple[Verdict, str]:
    margin = NON_INFERIORITY_MARGIN
    numbers = f"{acc_a:.1%} vs {acc_s:.1%} on {diff.n} images, difference {diff.mean:+.1%}"
    if diff.n < 2:
        return INCONCLUSIVE, f"too few shared images (n = {diff.n})"
    if diff.ci_low > -margin:
        return SUPPORTED, f"{numbers}; the interval's low end {diff.ci_low:+.1%} is above −{margin:.0%}"
    if diff.ci_high < -margin:
        return (
            CONTRADICTED,
            f"{numbers}; attention costs more than {margin:.0%} (interval below −{margin:.0%})",
        )
    return INCONCLUSIVE, (
        f"interval spans the margin −{margin:.0%}: {numbers}, "
        f"95 % CI [{diff.ci_low:+.1%}, {diff.ci_high:+.1%}]"
    )
