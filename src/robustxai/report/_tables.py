"""Aggregate tables of one run, computed from the run store only.

The store holds one row per sample (predictions) or per sample × metric (metrics). This module turns those
rows into the dataset-level tables the report prints and writes as CSV:

- ``robustness``: accuracy per model, clean and under each attack × ε (fractions in [0, 1]);
- ``alignment``: mean of every map metric per model × condition × ε × explainer, with a 95 % bootstrap CI;
- ``baseline``: the random-map baseline, averaged per image over models, with its own CI;
- ``stability``: SSIM / MSE / Pearson between the clean and the attacked map of the same image, per model ×
  attack × ε × explainer, with bootstrap CIs.

It also resolves the *primary* attack (the one used for ΔAcc and the rank) and labels conditions for display.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustxai._atomic import replacing
from robustxai.metrics._statistics import bootstrap_ci
from robustxai.report._gaps import random_gaps, random_per_image
from robustxai.report._numbers import fmt_general
from robustxai.report._undefined import undefined_note
from robustxai.results._metric_keys import headline_key, is_stability_key
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN, MANIPULATION_PREFIX, NO_EXPLAINER, Condition

logger = logging.getLogger(__name__)

#: The folder of a run that holds its tables as CSV (see :mod:`robustxai.report._run_tables`).
TABLES_DIR = "tables"
RANDOM_EXPLAINER = "random"
#: The alignment level the summary and the paired random-map gaps talk about (the headline of Table 2): the
#: registered headline metric at the reference top-k (``point_coverage@15``).
HEADLINE_METRIC = headline_key()
ROBUSTNESS_COLUMNS = [
    "model",
    "attack",
    "epsilon",
    "clean_accuracy",
    "adversarial_accuracy",
    "delta_accuracy",
    "n",
]
ALIGNMENT_COLUMNS = [
    "model",
    "condition",
    "epsilon",
    "explainer",
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
]
STABILITY_COLUMNS = ["model", "attack", "epsilon", "explainer", "metric", "value", "ci_low", "ci_high", "n"]
BASELINE_COLUMNS = ["condition", "epsilon", "metric", "value", "n", "ci_low", "ci_high", "n_missing"]
_GROUP = ["model", "condition", "epsilon", "explainer", "metric"]


@dataclass
class ReportTables:
    """The aggregates of one run, shared by the CSV writer, figures, summary and HTML."""

    robustness: pd.DataFrame
    clean: pd.DataFrame
    alignment: pd.DataFrame
    baseline: pd.DataFrame
    primary: Condition | None
    models: list[str]
    n_images: int
    n_missing: int
    notes: list[str] = field(default_factory=list)
    stability: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlation: pd.DataFrame = field(default_factory=pd.DataFrame)
    reference_ranks: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Paired explainer − random-map differences of the headline metric (:mod:`robustxai.report._gaps`).
    random_gaps: pd.DataFrame = field(default_factory=pd.DataFrame)


def clean_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Clean accuracy per model (``model, accuracy, n``), sorted by model."""
    clean = predictions[predictions["condition"] == CLEAN]
    out = clean.groupby("model", sort=True)["correct"].agg(["mean", "size"]).reset_index()
    out.columns = ["model", "accuracy", "n"]
    return out


def robustness_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per model × attack × ε next to the model's clean accuracy.

    Args:
        predictions: The store's ``predictions`` table.

    Returns:
        Columns :data:`ROBUSTNESS_COLUMNS`, sorted by model, attack and ε. ``n`` is the number of images
        evaluated under the attack; ``delta_accuracy`` is clean minus adversarial accuracy.
    """
    clean = clean_accuracy(predictions).set_index("model")["accuracy"]
    adv = predictions[predictions["condition"] != CLEAN]
    out = adv.groupby(["model", "condition", "epsilon"], sort=True)["correct"].agg(["mean", "size"])
    out = out.reset_index().rename(
        columns={"condition": "attack", "mean": "adversarial_accuracy", "size": "n"}
    )
    out["clean_accuracy"] = out["model"].map(clean).astype(np.float64)
    out["delta_accuracy"] = out["clean_accuracy"] - out["adversarial_accuracy"]
    out["n"] = out["n"].astype(np.int64)
    out = out.sort_values(["model", "attack", "epsilon"], kind="mergesort").reset_index(drop=True)
    return out[ROBUSTNESS_COLUMNS]


def _ci_row(values: np.ndarray) -> tuple[float, int, float, float, int]:
    """Return ``(mean, n, low, high, n_missing)`` for one group's per-sample values."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    mean, low, high = bootstrap_ci(arr[finite], n_boot=1000, level=0.95, seed=0)
    return mean, int(finite.sum()), low, high, int((~finite).sum())


def alignment_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % bootstrap CI of every metric per model × condition × ε × explainer.

    NaN (undefined) per-sample values are left out of the mean and counted in ``n_missing``.

    Args:
        metrics: The store's ``metrics`` table.

    Returns:
        Columns :data:`ALIGNMENT_COLUMNS` plus ``n_missing``, sorted by the grouping columns.
    """
    rows = [  # a Series group-by: no per-group frame is built (the report's largest table)
        (*key, *_ci_row(values.to_numpy()))
        for key, values in metrics.groupby(_GROUP, sort=True, dropna=False)["value"]
    ]
    cols = [*_GROUP, "value", "n", "ci_low", "ci_high", "n_missing"]
    out = pd.DataFrame(rows, columns=cols)
    return out[[*ALIGNMENT_COLUMNS, "n_missing"]].reset_index(drop=True)


def is_stability_metric(metric: object) -> bool:
    """Whether a metric compares a clean map with an attacked one (a registered ``maps_pair`` metric).

    Such rows belong to the stability table (``map_ssim``, ``map_mse``, ``map_pearson``, and any
    ``maps_pair`` metric registered later).
    """
    return is_stability_key(metric)


def stability_table(alignment: pd.DataFrame) -> pd.DataFrame:
    """Rows of the stability table (clean-vs-attacked map similarity), from the aggregated metrics.

    Args:
        alignment: The aggregated metric table (:func:`robustxai.report._tables.alignment_table`).

    Returns:
        Columns :data:`STABILITY_COLUMNS`, sorted by model, attack, ε, explainer and metric.
    """
    rows = alignment[alignment["metric"].map(is_stability_metric) & (alignment["condition"] != CLEAN)]
    rows = rows[rows["explainer"] != RANDOM_EXPLAINER]
    out = rows.rename(columns={"condition": "attack"})[STABILITY_COLUMNS]
    return out.sort_values(
        ["model", "attack", "epsilon", "explainer", "metric"], kind="mergesort"
    ).reset_index(drop=True)


def random_baseline(metrics: pd.DataFrame) -> pd.DataFrame:
    """The random-map baseline per condition × ε × metric.

    Random maps do not depend on the model, so each image's values are first averaged over models; the CI is
    then bootstrapped over images (not over model × image rows, which would overstate n).

    Args:
        metrics: The store's ``metrics`` table.

    Returns:
        Columns :data:`BASELINE_COLUMNS`, sorted.
    """
    per_image = random_per_image(metrics, RANDOM_EXPLAINER)
    if per_image.empty:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    rows = [
        (cond, eps, metric, *_ci_row(group.to_numpy()))
        for (cond, eps, metric), group in per_image.groupby(level=[0, 1, 2], sort=True)
    ]
    cols = ["condition", "epsilon", "metric", "value", "n", "ci_low", "ci_high", "n_missing"]
    return pd.DataFrame(rows, columns=cols)[BASELINE_COLUMNS]


def attacked_conditions(robustness: pd.DataFrame) -> list[Condition]:
    """All ``(attack, ε)`` pairs in the robustness table, sorted."""
    pairs = {(str(a), float(e)) for a, e in zip(robustness["attack"], robustness["epsilon"], strict=True)}
    return sorted(pairs)


def resolve_primary(meta: dict[str, Any], robustness: pd.DataFrame) -> tuple[Condition | None, list[str]]:
    """Find the primary attack (used for ΔAcc and the rank) among the attacked conditions.

    The stored ε is matched to the nearest ε evaluated for that attack (configs may store a rounded value).
    Without a usable ``primary_attack`` entry, PGD (or else the first attack) at its largest ε is used.

    Args:
        meta: The store's metadata.
        robustness: The robustness table.

    Returns:
        The condition (or ``None`` without any attack) and notes for the report's warning box.
    """
    pairs = attacked_conditions(robustness)
    if not pairs:
        return None, []
    notes: list[str] = []
    wanted = meta.get("primary_attack")
    if isinstance(wanted, dict) and "attack" in wanted:
        attack = str(wanted["attack"])
        candidates = [e for a, e in pairs if a == attack]
        if candidates:
            try:
                eps = float(wanted.get("epsilon", max(candidates)))
            except (TypeError, ValueError):
                eps = max(candidates)
            best = min(candidates, key=lambda e: (abs(e - eps), e))
            if not math.isclose(best, eps, rel_tol=0.05, abs_tol=1e-4):
                notes.append(
                    f"The primary attack {attack} at ε = {fmt_general(eps)} was not evaluated; "
                    f"the nearest evaluated ε = {fmt_general(best)} is used instead."
                )
            return (attack, best), notes
        notes.append(f"The primary attack {attack!r} was not evaluated; a fallback is used.")
    attacks = sorted({a for a, _ in pairs})
    attack = "pgd" if "pgd" in attacks else attacks[0]
    best = max(e for a, e in pairs if a == attack)
    notes.append(f"No usable primary attack recorded; using {condition_label(attack, best)}.")
    return (attack, best), notes


def select_condition(frame: pd.DataFrame, condition: Condition, column: str = "condition") -> pd.DataFrame:
    """Rows of ``frame`` for one condition (ε compared with a small tolerance)."""
    attack, eps = condition
    mask = (frame[column] == attack) & np.isclose(frame["epsilon"].astype(np.float64), eps, atol=1e-9)
    return frame[mask]


def primary_ranks(robustness: pd.DataFrame, primary: Condition | None) -> dict[str, int]:
    """Rank models by accuracy under the primary attack: 1 = highest; tied accuracies share the rank."""
    if primary is None:
        return {}
    rows = select_condition(robustness, primary, column="attack")
    acc = rows.set_index("model")["adversarial_accuracy"].round(12)
    ranks = acc.rank(method="min", ascending=False)
    return {str(m): int(r) for m, r in ranks.items() if not math.isnan(r)}


def format_epsilon(eps: float) -> str:
    """Show ε as ``k/255`` when it is (nearly) a whole number of 8-bit grey levels, else as a decimal."""
    if eps == 0:
        return "0"
    levels = eps * 255.0
    if eps < 0.25 and abs(levels - round(levels)) < 0.02 and round(levels) >= 1:
        return f"{round(levels)}/255"
    return fmt_general(eps, 4)


def condition_label(condition: str, eps: float) -> str:
    """Human label of a condition, e.g. ``"clean"`` or ``"pgd ε=4/255"``."""
    return CLEAN if condition == CLEAN else f"{condition} ε={format_epsilon(eps)}"


def compute_tables(run: RunData) -> ReportTables:
    """Compute every aggregate of a run.

    Args:
        run: The rows loaded by :func:`load_run`.

    Returns:
        The report tables and notes on anything the reader should know (e.g. a fallback primary attack).
    """
    robustness = robustness_table(run.predictions)
    primary, notes = resolve_primary(run.meta, robustness)
    # Map metrics only: manipulation rows ("manipulate:<method>") and per-image rows without a map (explainer
    # "", e.g. multi-label scores) have their own sections (report/_manipulation.py, report/_multilabel.py).
    m = run.metrics
    manipulated = m["condition"].astype(str).str.startswith(MANIPULATION_PREFIX)
    evaluated = m[~manipulated & (m["explainer"] != NO_EXPLAINER)]
    alignment = alignment_table(evaluated)
    models = sorted({str(m) for m in run.predictions["model"]} | {str(m) for m in run.models["model"]})
    n_missing = int(alignment["n_missing"].sum()) if not alignment.empty else 0
    note = undefined_note(alignment)
    if note:
        notes.append(note)
    return ReportTables(
        robustness=robustness,
        clean=clean_accuracy(run.predictions),
        alignment=alignment,
        baseline=random_baseline(evaluated),
        primary=primary,
        models=models,
        n_images=int(run.predictions["sample_id"].nunique()),
        n_missing=n_missing,
        notes=notes,
        stability=stability_table(alignment),
        reference_ranks=reference_ranks(run.meta),
        random_gaps=random_gaps(evaluated, HEADLINE_METRIC, RANDOM_EXPLAINER),
    )


def reference_ranks(meta: dict[str, Any]) -> dict[str, int]:
    """Published ranks of the models, from the resolved config (``models[].reference_rank``)."""
    config = meta.get("config")
    models = config.get("models") if isinstance(config, dict) else None
    out: dict[str, int] = {}
    for m in models if isinstance(models, list) else []:
        if isinstance(m, dict) and isinstance(m.get("reference_rank"), int):
            out[str(m.get("name"))] = int(m["reference_rank"])
    return out


def write_table_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write one table as CSV the way every run table and its CSV export is written (no index, LF lines)."""
    with replacing(path) as tmp:  # never written in place: a hard link named path keeps its bytes
        frame.to_csv(tmp, index=False, lineterminator="\n")
    return path
