"""Trustworthiness paper: the manipulation attack moves the map of every attacked method, predictions kept.

The paper (Table 1, Fig. 3) steers the maps of seven methods to a target square with the unsuccessful
ratio (SSIM(target, map) < 0.6) below 10 % for every method, images that stay near-identical (image SSIM
near 1), predictions kept (AUC change ≤ 2.5 %) and maps far from the originals. Here, per model and
attacked method, five criteria (:data:`CRITERIA`), each judged by its 95 % interval: the paper's
unsuccessful ratio, and the stricter "map peak inside the target" that a merely sparse map cannot pass.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._manip import (
    Criterion,
    Judged,
    attacked_methods,
    decisive_n,
    image_values,
    judge,
    manip_values,
)
from robustxai.claims._papers import TRUST
from robustxai.results._run import RunData

#: The criteria, all of which must hold (thresholds from the paper and issue 15, never fitted to a run):
#: unsuccessful ratio ≤ 10 % (the paper: "all below 10 %"); map peak inside the target ≥ 80 % (issue 15:
#: SSIM ≥ 0.6 against a small square is passed by any sparse map, so the map's maximum must move there);
#: image SSIM ≥ 0.98 (imperceptible); predictions unchanged ≥ 95 % (the paper's AUC change ≤ 2.5 %, as a
#: per-image share); map SSIM to the original < 0.5 (the paper's Fig. 3: the map itself changed).
CRITERIA = (
    Criterion("unsuccessful ratio", "unsuccessful", "max", 0.10, share=True),
    Criterion("map peak inside the target", "peak_in_target", "min", 0.80, share=True),
    Criterion("image SSIM", "image_ssim", "min", 0.98, share=False),
    Criterion("predictions unchanged", "prediction_unchanged", "min", 0.95, share=True),
    Criterion("map SSIM to the original", "map_ssim", "max", 0.5, share=False, strict=True),
)
#: Criteria of the attacked image rather than of a map.
_IMAGE_METRICS = frozenset({"image_ssim", "prediction_unchanged"})


@CLAIMS.register("trust.manipulation_succeeds")
class ManipulationSucceeds(Claim):
    """All five manipulation criteria per model × attacked method, each by its 95 % interval."""

    id = "trust.manipulation_succeeds"
    paper = TRUST
    statement = (
        "For every attacked map method the manipulation succeeds: unsuccessful ratio ≤ 10 %, map peak in "
        "the target ≥ 80 %, image SSIM ≥ 0.98, predictions unchanged ≥ 95 %, map SSIM to the original < 0.5."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × attacked method."""
        pairs = attacked_methods(run)
        if not pairs:
            return [self.undecided("no manipulation stage in this run")]
        return [self._one(run, model, method) for model, method in pairs]

    def _one(self, run: RunData, model: str, method: str) -> ClaimResult:
        judged = [
            judge(
                image_values(run, model, method, c.metric)
                if c.metric in _IMAGE_METRICS
                else manip_values(run, model, method, method, c.metric),
                c,
            )
            for c in CRITERIA
        ]
        head = judged[0]
        verdict, why = _decide(judged)
        return self.result(
            scope=f"{model}, manipulated {method}",
            effect=head.value,
            effect_label="unsuccessful ratio (SSIM(target, map) < 0.6); all five criteria in 'why'",
            ci=head.ci,
            test="each criterion's 95 % interval vs its threshold (Clopper–Pearson: shares; bootstrap: SSIM)",
            p_value=None,
            n=head.n,
            n_unit="images",
            verdict=verdict,
            why=why,
        )


def _decide(judged: list[Judged]) -> tuple[Verdict, str]:
    """Contradicted if any criterion fails, supported if all are met, else inconclusive."""
    detail = "; ".join(j.text() for j in judged)
    n = judged[0].n
    failed = [j.criterion.name for j in judged if j.status == "failed"]
    if failed:
        return CONTRADICTED, f"fails {', '.join(failed)} (n = {n} images): {detail}"
    undecided = [j for j in judged if j.status == "undecided"]
    if not undecided:
        return SUPPORTED, f"all five criteria met (n = {n} images): {detail}"
    needs = [
        f"{j.criterion.name} from n ≥ {m}" for j in undecided if (m := decisive_n(j.criterion)) and m > n
    ]
    need = f"; even a perfect result decides {', '.join(needs)}" if needs else ""
    names = ", ".join(j.criterion.name for j in undecided)
    return INCONCLUSIVE, f"interval spans the threshold of {names} (n = {n} images{need}): {detail}"
