"""Attentive-CNN paper: a soft-attention block improves robustness to PGD.

The paper trains ResNet-50 and InceptionResNetV2 with and without a soft-attention block on three medical
tasks and compares their accuracy under L∞ PGD over a grid of ε; attention helped ResNet-50 on two of the
three tasks. Here: for every attention model and its standard counterpart (the rule of
:mod:`robustxai.claims._pairs`: ``arch`` contains "attention", paired through ``init_from`` or the arch
without "attention"), the paired difference of accuracy (attention − standard) on the same images under
each PGD budget of the run, with a bootstrap interval and a sign-flip permutation p.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, Claim, ClaimResult
from robustxai.claims._data import attack_conditions, condition_text
from robustxai.claims._paired import accuracy_gain_result
from robustxai.claims._pairs import attention_pairs
from robustxai.claims._papers import ATTENTIVE
from robustxai.results._run import RunData

#: The attack of the paper (Foolbox's L∞ PGD).
ATTACK = "pgd"


@CLAIMS.register("attentive.pgd_robustness")
class AttentionRobustness(Claim):
    """Paired accuracy difference (attention − standard) under PGD, one row per pair and ε."""

    id = "attentive.pgd_robustness"
    paper = ATTENTIVE
    statement = (
        "A soft-attention model is more accurate under PGD than its standard counterpart on the same images "
        "(accuracy difference attention − standard > 0)."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per (attention, standard) pair × PGD budget."""
        pairs, notes = attention_pairs(run)
        if not pairs:
            why = "; ".join(notes) if notes else "no attention model in this run"
            return [self.undecided(f"no attention/standard pair: {why}")]
        conditions = [c for c in attack_conditions(run) if c[0] == ATTACK]
        if not conditions:
            return [self.undecided(f"the run has no {ATTACK} attack")]
        out = []
        for attention, standard in pairs:
            for condition in conditions:
                out.append(
                    accuracy_gain_result(
                        self,
                        run,
                        (attention, condition),
                        (standard, condition),
                        scope=f"{attention} vs {standard}, {condition_text(condition)}",
                        label="accuracy difference (attention − standard), paired images",
                    )
                )
        return out
