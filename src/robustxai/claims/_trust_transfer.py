"""Trustworthiness paper: images manipulated through Integrated Gradients move the other methods' maps too.

The paper (Fig. 2, last row) scores every method's map on the images attacked through IG: "for the
majority of the methods, the attention area was moved to the targeted top-right corner". Here, per model
and evaluated method, the share of IG-attacked images on which that method's map has its peak inside the
target, with its exact binomial interval, against :data:`TRANSFER_SHARE`.
"""

from __future__ import annotations

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import metric_rows
from robustxai.claims._manip import Criterion, attacked_methods, judge, manip_values
from robustxai.claims._papers import TRUST
from robustxai.results._run import RunData

#: The method whose adversarial images are transferred (the paper's).
SOURCE = "integrated_gradients"
#: A method counts as transferred to when its map's peak moved into the target on more than half of the
#: images: the paper's "moved to the targeted corner" for a typical image, stated as a majority.
TRANSFER_SHARE = 0.5
_CRITERION = Criterion(
    "map peak inside the target", "peak_in_target", "min", TRANSFER_SHARE, share=True, strict=True
)


@CLAIMS.register("trust.ig_transfer")
class IgTransfer(Claim):
    """Share of IG-manipulated images whose map (of another method) peaks in the target."""

    id = "trust.ig_transfer"
    paper = TRUST
    statement = (
        "Images manipulated through Integrated Gradients also move another method's map: its peak lies in "
        "the target on more than half of the images."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per model × method evaluated on the IG-attacked images."""
        models = [model for model, method in attacked_methods(run) if method == SOURCE]
        if not models:
            return [self.undecided(f"no manipulation through {SOURCE} in this run (needs --profile paper)")]
        out = []
        for model in models:
            m = metric_rows(run, _CRITERION.metric)
            rows = m[(m["model"] == model) & (m["condition"] == f"manipulate:{SOURCE}")]
            others = sorted({str(e) for e in rows["explainer"].unique()} - {"", SOURCE})
            if not others:
                out.append(self.undecided(f"{SOURCE} is not in manipulation.transfer_from: no transfer rows",
                                          scope=model))  # fmt: skip
            out += [self._one(run, model, other) for other in others]
        return out

    def _one(self, run: RunData, model: str, method: str) -> ClaimResult:
        j = judge(manip_values(run, model, SOURCE, method, _CRITERION.metric), _CRITERION)
        verdict: Verdict = {"met": SUPPORTED, "failed": CONTRADICTED, "undecided": INCONCLUSIVE}[j.status]
        why = j.text() + f" (n = {j.n} images)"
        if verdict == INCONCLUSIVE:
            why = f"interval spans {TRANSFER_SHARE:.0%}: " + why
        return self.result(
            scope=f"{model}, {method} on images manipulated through {SOURCE}",
            effect=j.value,
            effect_label="share of images whose map peak lies in the target",
            ci=j.ci,
            test="exact binomial (Clopper–Pearson) interval vs 50 %",
            p_value=None,
            n=j.n,
            n_unit="images",
            verdict=verdict,
            why=why,
        )
