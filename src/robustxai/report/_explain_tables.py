"""The robustness–alignment correlation across models (written to ``tables/correlation.csv``).

- ``correlation``: Spearman's ρ across models between a robustness figure (accuracy under the primary attack,
  or ΔAcc) and an alignment figure (a clean-image metric of one explainer), with a permutation p-value and the
  number of models it rests on. Secure Diagnostics *asserts* that robust models explain better; this tests it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robustxai._errors import RobustXAIError
from robustxai.metrics._statistics import spearman_permutation
from robustxai.report._tables import RANDOM_EXPLAINER, ReportTables, select_condition
from robustxai.results._metric_keys import alignment_scores
from robustxai.results._schema import CLEAN, Condition, MetricKey

CORRELATION_COLUMNS = [
    "robustness_figure",
    "explainer",
    "alignment_metric",
    "rho",
    "p_value",
    "n_models",
    "n_permutations",
]
#: Robustness figures correlated with alignment: column of the robustness table and its display name.
ROBUSTNESS_FIGURES: dict[str, str] = {
    "adversarial_accuracy": "accuracy under the primary attack",
    "delta_accuracy": "ΔAcc under the primary attack",
}
#: Alignment figures tried: every registered ground-truth alignment score at the reference top-k, in name
#: order (:func:`~robustxai.results._metric_keys.alignment_scores`); a metric absent from the run is skipped.
MIN_MODELS = 3


def _alignment_metric(alignment: pd.DataFrame, wanted: str) -> str | None:
    """``wanted`` if the run has it; for a metric at a top-k, the nearest top-k the run computed."""
    present = {str(m) for m in alignment["metric"]}
    if wanted in present:
        return wanted
    target = MetricKey.parse(wanted)
    want = target.top_percent
    if want is not None:
        keys = [(MetricKey.parse(m), m) for m in present]
        tops = sorted(
            (k.top_percent, m) for k, m in keys if k.name == target.name and k.top_percent is not None
        )
        if tops:
            return min(tops, key=lambda t: (abs(t[0] - want), t[0]))[1]
    return None


def correlation_table(
    robustness: pd.DataFrame,
    alignment: pd.DataFrame,
    primary: Condition | None,
    n_permutations: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman's ρ across models between robustness under the primary attack and clean-image alignment.

    Only models with both figures defined count; a pair with fewer than :data:`MIN_MODELS` models gets a row
    with NaN ρ and p, so the report can say the claim cannot be tested on so few models.

    Args:
        robustness: The robustness table.
        alignment: The aggregated metric table.
        primary: The primary attack condition, or ``None`` (no rows then).
        n_permutations: Permutations of the p-value (exact enumeration when n! is smaller).
        seed: Seed of the Monte-Carlo permutations.

    Returns:
        Columns :data:`CORRELATION_COLUMNS`.
    """
    if primary is None or robustness.empty or alignment.empty:
        return pd.DataFrame(columns=CORRELATION_COLUMNS)
    prim = select_condition(robustness, primary, column="attack").set_index("model")
    clean = alignment[(alignment["condition"] == CLEAN) & (alignment["explainer"] != RANDOM_EXPLAINER)]
    explainers = sorted({str(e) for e in clean["explainer"]} - {""})
    rows = []
    for wanted in alignment_scores():
        metric = _alignment_metric(clean, wanted)
        if metric is None:
            continue
        for explainer in explainers:
            sel = clean[(clean["explainer"] == explainer) & (clean["metric"] == metric)]
            align = sel.set_index("model")["value"].astype(np.float64)
            for column in ROBUSTNESS_FIGURES:
                if column not in prim.columns:
                    continue
                rob = prim[column].astype(np.float64)
                both = pd.concat([rob, align], axis=1, join="inner").dropna()
                rho = p = math.nan
                if len(both) >= MIN_MODELS:
                    try:
                        rho, p, _ = spearman_permutation(
                            both.iloc[:, 0].to_numpy(),
                            both.iloc[:, 1].to_numpy(),
                            n_permutations=n_permutations,
                            seed=seed,
                        )
                    except RobustXAIError:  # e.g. a constant figure: ρ is undefined
                        rho = p = math.nan
                rows.append((column, explainer, metric, rho, p, len(both), n_permutations))
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def add_correlation(tables: ReportTables, n_permutations: int = 10000, seed: int = 0) -> ReportTables:
    """Fill ``tables.correlation`` (see :func:`correlation_table`) and return ``tables``."""
    tables.correlation = correlation_table(
        tables.robustness, tables.alignment, tables.primary, n_permutations=n_permutations, seed=seed
    )
    return tables
