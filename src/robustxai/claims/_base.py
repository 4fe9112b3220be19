"""What a claim is: a registered, testable statement of a paper's finding, decided from one run's results.

A claim plug-in is a class registered in :data:`CLAIMS` with a stable ``id``, the ``paper`` it comes from,
its ``statement`` (one sentence that the run can make true or false) and :meth:`Claim.evaluate`, which reads
only the run's results (:class:`robustxai.results.RunData`) and returns one :class:`ClaimResult` per scope it
can decide (a model, a pair of models, an attack budget, an attacked method …). A user adds a hypothesis in
one file::

    from robustxai.claims import CLAIMS, Claim, ClaimResult

    @CLAIMS.register("mine.clean_accuracy_high")
    class CleanAccuracyHigh(Claim):
        id = "mine.clean_accuracy_high"
        paper = "my lab notebook"
        statement = "Every model is right on at least 90 % of clean test images."

        def evaluate(self, run):
            ...

and imports that module before :func:`robustxai.claims.evaluate_claims` runs.

Verdicts are ``supported``, ``contradicted`` or ``inconclusive``; an inconclusive result always says why
(too few models, an interval that spans the threshold, a stage the run did not have), so the reader knows
what evidence would decide it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from robustxai._errors import RobustXAIError
from robustxai._registry import Registry
from robustxai.results._run import RunData

__all__ = [
    "CLAIMS",
    "CONTRADICTED",
    "INCONCLUSIVE",
    "SUPPORTED",
    "VERDICTS",
    "Claim",
    "ClaimResult",
    "Verdict",
]

Verdict = Literal["supported", "contradicted", "inconclusive"]
SUPPORTED: Verdict = "supported"
CONTRADICTED: Verdict = "contradicted"
INCONCLUSIVE: Verdict = "inconclusive"
#: Every verdict, in the order a reader weighs them.
VERDICTS: tuple[Verdict, ...] = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)


@dataclass(frozen=True)
class ClaimResult:
    """One decided (or undecidable) claim on one scope of a run.

    Attributes:
        claim_id: The claim's registered id (``secure.robustness_alignment``).
        paper: The paper the claim comes from.
        statement: The claim as a testable sentence.
        scope: What this row is about within the run (``"model attention vs standard, pgd ε = 4/255"``);
            ``""`` when the claim has one row for the whole run.
        effect: The measured effect (NaN when it could not be measured).
        effect_label: What the number is (``"Spearman ρ over models"``).
        ci_low: Lower end of the 95 % interval of ``effect`` (NaN when there is none).
        ci_high: Upper end of the 95 % interval of ``effect``.
        test: Name of the test or interval behind the verdict.
        p_value: The test's p-value, ``None`` when the verdict rests on an interval alone.
        n: How many units the effect rests on.
        n_unit: What ``n`` counts (``"models"``, ``"images"``).
        verdict: ``supported``, ``contradicted`` or ``inconclusive``.
        why: The reason in plain language; never empty for an inconclusive verdict.
    """

    claim_id: str
    paper: str
    statement: str
    scope: str
    effect: float
    effect_label: str
    ci_low: float
    ci_high: float
    test: str
    p_value: float | None
    n: int
    n_unit: str
    verdict: Verdict
    why: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise RobustXAIError(
                f"claim {self.claim_id}: verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}"
            )
        if self.verdict == INCONCLUSIVE and not self.why.strip():
            raise RobustXAIError(f"claim {self.claim_id}: an inconclusive verdict must say why")


class Claim(ABC):
    """A testable statement of a paper's finding (subclass it and register it in :data:`CLAIMS`).

    Class attributes ``id``, ``paper`` and ``statement`` describe the claim; :meth:`evaluate` decides it.
    :meth:`result` and :meth:`undecided` build rows with those three filled in.
    """

    id: ClassVar[str]
    paper: ClassVar[str]
    statement: ClassVar[str]

    @abstractmethod
    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """Decide the claim on ``run``: one result per scope, at least one (inconclusive if need be)."""

    def result(
        self,
        *,
        scope: str,
        effect: float,
        effect_label: str,
        ci: tuple[float, float],
        test: str,
        p_value: float | None,
        n: int,
        n_unit: str,
        verdict: Verdict,
        why: str,
    ) -> ClaimResult:
        """A :class:`ClaimResult` of this claim."""
        return ClaimResult(
            self.id,
            self.paper,
            self.statement,
            scope,
            float(effect),
            effect_label,
            float(ci[0]),
            float(ci[1]),
            test,
            None if p_value is None else float(p_value),
            int(n),
            n_unit,
            verdict,
            why,
        )

    def undecided(
        self, why: str, *, scope: str = "", effect_label: str = "", n: int = 0, n_unit: str = ""
    ) -> ClaimResult:
        """An inconclusive result with no measured effect (the run lacks what the claim needs)."""
        return self.result(
            scope=scope,
            effect=math.nan,
            effect_label=effect_label,
            ci=(math.nan, math.nan),
            test="",
            p_value=None,
            n=n,
            n_unit=n_unit,
            verdict=INCONCLUSIVE,
            why=why,
        )


#: The claim registry: id → claim class (created without arguments).
CLAIMS: Registry[Claim] = Registry("claim")
