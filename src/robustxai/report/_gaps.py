"""How far each explainer's alignment lies above the random map, as a paired difference with its own CI.

The summary used to compare a map's interval with the random map's; two overlapping intervals say little
about the difference itself. Here each image's random-map value (averaged over models, as in the baseline
row) is subtracted from the explainer's value on the same image, and the mean difference gets a percentile
bootstrap interval over those images — "how much better than chance, and how sure".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustxai.metrics._statistics import bootstrap_ci

GAP_COLUMNS = ["model", "condition", "epsilon", "explainer", "metric", "gap", "ci_low", "ci_high", "n"]


def random_per_image(metrics: pd.DataFrame, random_explainer: str) -> pd.Series:
    """Each image's random-map value per condition × ε × metric, averaged over models (NaN left out).

    Random maps do not depend on the model, so the baseline row and the paired differences both use one value
    per image, indexed ``(condition, epsilon, metric, sample_id)``.
    """
    rand = metrics[metrics["explainer"] == random_explainer]
    rand = rand.assign(value=rand["value"].where(np.isfinite(rand["value"].astype(np.float64))))
    return rand.groupby(["condition", "epsilon", "metric", "sample_id"], sort=True)["value"].mean()


def random_gaps(metrics: pd.DataFrame, metric: str, random_explainer: str) -> pd.DataFrame:
    """Paired mean difference (explainer − random map) of ``metric`` per model × condition × ε × explainer.

    Args:
        metrics: Per-image rows ``model, condition, epsilon, explainer, metric, sample_id, value``.
        metric: The metric compared (e.g. ``"point_coverage@15"``).
        random_explainer: The explainer name of the random-map baseline.

    Returns:
        Columns :data:`GAP_COLUMNS` (``n``: images where both values are defined), sorted; empty without a
        random map or without the metric.
    """
    rows = metrics[metrics["metric"] == metric]
    base = random_per_image(rows, random_explainer).rename("base")
    if base.empty:
        return pd.DataFrame(columns=GAP_COLUMNS)
    maps = rows[rows["explainer"] != random_explainer]
    maps = maps.join(base, on=["condition", "epsilon", "metric", "sample_id"])
    diff = (maps["value"].astype(np.float64) - maps["base"]).rename("diff")  # non-finite: dropped below
    out = []
    keys = ["model", "condition", "epsilon", "explainer"]
    for key, group in pd.concat([maps[keys], diff], axis=1).groupby(keys, sort=True)["diff"]:
        values = group.to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        gap, low, high = bootstrap_ci(values, n_boot=1000, level=0.95, seed=0)
        out.append((*key, metric, gap, low, high, int(values.size)))
    return pd.DataFrame(out, columns=GAP_COLUMNS)
