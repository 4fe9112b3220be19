"""Secure Diagnostics: more robust models give maps better aligned with the experts' points.

The paper ranks six fine-tuned models by accuracy under PGD ε = 4/255 (its Table 1) and finds that the
more robust ones cover more of the surgeon's fracture points with the top 15 % of their Saliency,
Integrated Gradients and DeepLIFT maps (Table 2, Eq. 14: the point coverage ratio). Here: Spearman's ρ
over the run's models between robust accuracy under the run's primary attack and the mean point coverage of
the top 15 % of the clean maps, one row per explainer, with its permutation p (exact for ≤ 7 models) and a
bootstrap interval over images (every model's images resampled with the same indices). The explainers are
tested one by one, without a correction for the three tests: a reader should ask for all three to agree.
"""

from __future__ import annotations

import math

import numpy as np

from robustxai.claims._base import CLAIMS, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Claim, ClaimResult, Verdict
from robustxai.claims._data import (
    condition_text,
    correct_matrix,
    explainers_of,
    metric_matrix,
    model_names,
    nan_mean,
    primary_condition,
)
from robustxai.claims._papers import SECURE
from robustxai.claims._stats import ALPHA, spearman_bootstrap, spearman_test
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN_CONDITION

#: The alignment metric of the paper (Eq. 14 with the "top 15 %" threshold its method section names).
ALIGNMENT_METRIC = "point_coverage@15"
#: The paper's three map methods (Table 2); other explainers are used only when none of these ran.
PAPER_EXPLAINERS = ("saliency", "integrated_gradients", "deeplift")
#: Fewest models that can decide: with 5 the smallest exact two-sided permutation p of ρ is 2/5! ≈ 0.017
#: < 0.05; with 4 it is 2/4! ≈ 0.083, so no data could make the test significant (the paper used 6).
MIN_MODELS = 5


@CLAIMS.register("secure.robustness_alignment")
class RobustnessAlignment(Claim):
    """Spearman over models of robust accuracy vs point coverage of the clean maps (one row per explainer)."""

    id = "secure.robustness_alignment"
    paper = SECURE
    statement = (
        "Across models, the more robust a model (accuracy under the primary attack), the better its clean "
        "maps cover the experts' points (top-15 % point coverage): Spearman's ρ > 0."
    )

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        """One row per explainer (the paper's three when present)."""
        primary = primary_condition(run)
        if primary is None:
            return [self.undecided("the run records no primary attack to measure robustness with")]
        present = explainers_of(run, ALIGNMENT_METRIC, [CLEAN_CONDITION])
        explainers = [e for e in PAPER_EXPLAINERS if e in present] or present
        if not explainers:
            return [self.undecided(f"no {ALIGNMENT_METRIC} rows: the run has no images with expert points")]
        return [self._one(run, primary, explainer) for explainer in explainers]

    def _one(self, run: RunData, primary: tuple[str, float], explainer: str) -> ClaimResult:
        models = _with_both(run, primary, explainer)
        _, acc = correct_matrix(run, primary, models)
        _, cov = metric_matrix(run, CLEAN_CONDITION, ALIGNMENT_METRIC, models, [explainer])
        scope = f"{explainer}; robustness: accuracy under {condition_text(primary)}"
        label = f"Spearman ρ over models (robust accuracy vs {ALIGNMENT_METRIC}, clean)"
        k = len(models)
        if acc.shape[1] == 0 or cov.shape[1] == 0 or k < 3:
            why = (
                f"too few models (n = {k}; ρ needs ≥ 3, a decision ≥ {MIN_MODELS})"
                if k < 3
                else "no images shared by every model under the primary attack and with points"
            )
            return self.undecided(
                why + " — run --profile paper", scope=scope, effect_label=label, n=k, n_unit="models"
            )
        rho, p = spearman_test(_nanmean_rows(acc), _nanmean_rows(cov))
        ci = spearman_bootstrap(acc, cov)
        verdict, why = _decide(rho, p, ci, k)
        return self.result(
            scope=scope,
            effect=rho,
            effect_label=label,
            ci=ci,
            test="Spearman ρ, two-sided permutation p; percentile bootstrap over images",
            p_value=None if math.isnan(p) else p,
            n=k,
            n_unit="models",
            verdict=verdict,
            why=why,
        )


def _with_both(run: RunData, primary: tuple[str, float], explainer: str) -> list[str]:
    """The models with predictions under the primary attack and clean coverage rows of ``explainer``.

    A model the run audited for another stage only (e.g. manipulation) is left out rather than emptying the
    set of images every model shares.
    """
    out = []
    for model in model_names(run):
        ids_acc, _ = correct_matrix(run, primary, [model])
        ids_cov, _ = metric_matrix(run, CLEAN_CONDITION, ALIGNMENT_METRIC, [model], [explainer])
        if ids_acc and ids_cov:
            out.append(model)
    return out


def _nanmean_rows(matrix: np.ndarray) -> np.ndarray:
    """Per-model mean over its images, undefined values left out (NaN for a model with none)."""
    return np.array([nan_mean(r) for r in np.asarray(matrix, dtype=np.float64)])


def _decide(rho: float, p: float, ci: tuple[float, float], k: int) -> tuple[Verdict, str]:
    """Supported/contradicted only with ≥ MIN_MODELS models, p < α and an interval on the same side of 0."""
    if k < MIN_MODELS:
        return INCONCLUSIVE, (
            f"too few models (n = {k}; needs ≥ {MIN_MODELS}: with {k} the smallest attainable permutation p "
            f"is 2/{k}! = {2 / math.factorial(k):.2f}) — run --profile paper"
        )
    if math.isnan(rho):
        return INCONCLUSIVE, "ρ is undefined: robust accuracy or coverage is the same for every model"
    if p >= ALPHA:
        return INCONCLUSIVE, f"no significant rank correlation over {k} models (ρ = {rho:.2f}, p = {p:.3f})"
    low, high = ci
    if rho > 0 and low > 0:
        return SUPPORTED, f"ρ = {rho:.2f} over {k} models (p = {p:.3f}), interval over images above 0"
    if rho < 0 and high < 0:
        return CONTRADICTED, (
            f"ρ = {rho:.2f} over {k} models (p = {p:.3f}): more robust models align *worse*, interval below 0"
        )
    return INCONCLUSIVE, (
        f"ρ = {rho:.2f} is significant over models (p = {p:.3f}) but its interval over images "
        f"[{low:.2f}, {high:.2f}] spans 0"
    )
