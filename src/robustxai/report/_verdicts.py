"""Verdicts the summary must not leave out: models at chance, maps at chance under attack, manipulation.

- A model whose clean accuracy is not distinguishable from chance makes every other number about it
  meaningless, so the report flags it at the top. Chance is what always answering the test set's most common
  label scores (never below 1/K for K classes); the model is flagged when the 95 % Wilson interval of its
  clean accuracy reaches down to that level.
- A map that beats the random map on clean images may fall to its level on adversarial images; every model ×
  method whose paired difference from the random map under the primary attack has a 95 % interval that
  includes 0 (or lies below it) is named, with that interval.
- The manipulation outcome: per method attacked through itself, how many images were manipulated (SSIM of
  the map with the target ≥ 0.6) out of how many, per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from robustxai.report._numbers import fmt_general, fmt_number, fmt_percent, wilson_interval
from robustxai.report._tables import HEADLINE_METRIC, ReportTables, condition_label, select_condition
from robustxai.results._schema import CLEAN, MANIPULATION_PREFIX

#: SSIM(target, map) at or above which a manipulation counts as successful (the trustworthiness paper).
SUCCESS_SSIM = 0.6


@dataclass(frozen=True)
class ChanceLevel:
    """A model's clean accuracy next to the chance level of the same images."""

    model: str
    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    chance: float
    majority: str
    n_classes: int

    @property
    def at_chance(self) -> bool:
        """Whether the accuracy's 95 % interval reaches down to chance level (or the model is below it)."""
        return not math.isnan(self.ci_low) and self.ci_low <= self.chance + 1e-12


def class_names(meta: dict[str, Any]) -> list[str] | None:
    """The data set's class names as the run recorded them (``meta["dataset"]["class_names"]``)."""
    dataset = meta.get("dataset")
    names = dataset.get("class_names") if isinstance(dataset, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def chance_levels(predictions: pd.DataFrame, class_names: list[str] | None = None) -> list[ChanceLevel]:
    """Clean accuracy with its Wilson interval and the majority-label rate of the same images, per model.

    Args:
        predictions: The store's ``predictions`` rows (``model, condition, label, correct``).
        class_names: The data set's class names (for the message and K), when the run recorded them.

    Returns:
        One :class:`ChanceLevel` per model with clean predictions, sorted by model.
    """
    clean = predictions[predictions["condition"] == CLEAN].dropna(subset=["correct", "label"])
    out = []
    for model, group in clean.groupby("model", sort=True):
        n = len(group)
        counts = group["label"].astype(np.int64).value_counts()
        top = counts.max()
        label = int(min(counts.index[counts == top]))
        names = class_names or []
        k = max(len(names), int(counts.size))
        accuracy = float(group["correct"].astype(np.float64).mean())
        low, high = wilson_interval(accuracy, n)
        shown = names[label] if 0 <= label < len(names) else str(label)
        out.append(ChanceLevel(str(model), accuracy, n, low, high, float(top) / n, shown, k))
    return out


def chance_warnings(levels: list[ChanceLevel]) -> list[str]:
    """One warning per model at chance accuracy on clean images (empty when every model is above chance).

    When the test images all carry one label, chance is 100 % and one warning says so for the whole run.
    """
    if levels and all(c.chance >= 1.0 for c in levels):
        c = levels[0]
        return [
            f"All {c.n} test images carry the same label ('{c.majority}'): always answering it scores 100 %, "
            "so no model's accuracy, and nothing built on it, can show that the model learned the task. Test "
            "on images of more than one class."
        ]
    out = []
    for c in levels:
        if not c.at_chance:
            continue
        k = f"; with {c.n_classes} classes, 1/K = {fmt_percent(1.0 / c.n_classes)}" if c.n_classes > 1 else ""
        where = "lies below" if c.ci_high < c.chance else "includes"
        out.append(
            f"Model '{c.model}' is at chance level on clean images: {fmt_percent(c.accuracy)} accuracy "
            "(95 % CI "
            f"{fmt_number(c.ci_low, 1, 100.0)}–{fmt_number(c.ci_high, 1, 100.0)} %, n = {c.n} images), and "
            f"always answering the most common label ('{c.majority}', {fmt_percent(c.chance)} of these "
            f"images{k}) "
            f"scores {fmt_percent(c.chance)}; the interval of its accuracy {where} that level. None of its "
            "explanation maps, alignment or robustness figures mean anything until it learns the task."
        )
    return out


def attack_chance_sentences(tables: ReportTables) -> list[str]:
    """Name every model × method whose map is at or below the random map's level under the primary attack.

    Each is given with its paired difference from the random map on the same images (95 % bootstrap CI, n);
    those that were above the random map on clean images are marked, since that is where a reader trusts them.
    """
    gaps = tables.random_gaps
    if tables.primary is None or gaps.empty:
        return []
    label = condition_label(*tables.primary)
    attacked = select_condition(gaps, tables.primary)
    attacked = attacked[(attacked["n"] >= 2) & np.isfinite(attacked["ci_low"].astype(np.float64))]
    if attacked.empty:
        return []
    clean = select_condition(gaps, (CLEAN, 0.0)).set_index(["model", "explainer"])
    low = attacked[attacked["ci_low"] <= 0.0].sort_values(["model", "explainer"], kind="mergesort")
    n_max = int(attacked["n"].max())
    if low.empty:
        return [
            f"Under {label} (the primary attack), every model × method map stays above the random map at "
            f"the top 15 % (the 95 % interval of each paired difference excludes 0; {len(attacked)} "
            f"combinations, up to {n_max} images each)."
        ]
    parts = []
    for r in low.itertuples(index=False):
        key = (r.model, r.explainer)
        was = clean.loc[key] if key in clean.index else None
        mark = (
            f"; above it on clean images, {fmt_number(was['gap'], 1, 100.0, sign=True)} points"
            if was is not None and float(was["ci_low"]) > 0.0
            else ""
        )
        parts.append(
            f"'{r.model}' {r.explainer} {fmt_number(r.gap, 1, 100.0, sign=True)} points (95 % CI "
            f"{fmt_number(r.ci_low, 1, 100.0)} to {fmt_number(r.ci_high, 1, 100.0)}, n = {int(r.n)}{mark})"
        )
    return [
        f"Under {label} (the primary attack), {len(low)} of {len(attacked)} model × method maps fall to the "
        "random map's level or below at the top 15 % (the 95 % interval of their paired difference from it "
        f"on the same images includes 0 or lies below it): {'; '.join(parts)}. Do not show these maps on "
        "possibly perturbed images."
    ]


def manipulation_outcome(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per model × method attacked through itself: images manipulated (``successes``) out of ``n``.

    Columns ``model, method, successes, n, unsuccessful_ratio, peak_in_target`` (how many of the ``n`` maps
    have their maximum inside the target square); empty when the run has no manipulation.
    """
    cols = ["model", "method", "successes", "n", "unsuccessful_ratio", "peak_in_target"]
    cond = metrics["condition"].astype(str)
    rows = metrics[cond.str.startswith(MANIPULATION_PREFIX)]
    rows = rows[rows["condition"].astype(str).str.slice(len(MANIPULATION_PREFIX)) == rows["explainer"]]
    rows = rows[np.isfinite(rows["value"].astype(np.float64))]
    fails = rows[rows["metric"] == "unsuccessful"]
    peaks = rows[rows["metric"] == "peak_in_target"].groupby(["model", "explainer"])["value"]
    peak_counts = (peaks.apply(lambda v: int((v > 0.5).sum()))).to_dict()
    out = [
        (str(m), str(e), int((g["value"] < 0.5).sum()), len(g), float(g["value"].mean()),
         int(peak_counts.get((m, e), 0)))
        for (m, e), g in fails.groupby(["model", "explainer"], sort=True)
    ]  # fmt: skip
    return pd.DataFrame(out, columns=cols)


def manipulation_sentences(outcome: pd.DataFrame) -> list[str]:
    """The manipulation outcome in words: per method, each model's success count and unsuccessful ratio."""
    if outcome.empty:
        return []
    per_method = []
    for method, g in outcome.groupby("method", sort=True):
        models = ", ".join(
            f"'{r.model}' {r.successes} of {r.n} (unsuccessful ratio {fmt_percent(r.unsuccessful_ratio)}; "
            f"map peak inside the target on {r.peak_in_target} of {r.n})"
            for r in g.itertuples(index=False)
        )
        per_method.append(f"{method}: {models}")
    total, n = int(outcome["successes"].sum()), int(outcome["n"].sum())
    return [
        f"Explanation manipulation (a perturbation that moves the map onto a target square while keeping the "
        f"prediction; success = SSIM(target, map) ≥ {fmt_general(SUCCESS_SSIM)}, each method attacked "
        "through itself) "
        f"succeeded on {total} of {n} attempts; images manipulated per method and model: "
        + "; ".join(per_method)
        + ". An SSIM success with the peak outside the square means the map became flat or sparse rather "
        "than pointing at the target."
    ]


def sample_size_sentence(tables: ReportTables, outcome: pd.DataFrame) -> str:
    """The n behind each kind of statement: accuracies, map alignment and manipulation."""
    acc_n = int(tables.clean["n"].max()) if not tables.clean.empty else tables.n_images
    parts = [f"accuracies on {acc_n} test images per model and condition"]
    sizes = [acc_n]
    al = tables.alignment
    head = al[(al["metric"] == HEADLINE_METRIC) & (al["condition"] == CLEAN)] if not al.empty else al
    if not head.empty:
        sizes.append(int(head["n"].max()))
        parts.append(
            f"alignment with the expert points on up to {sizes[-1]} images (those with expert points and a "
            "defined value; each table cell gives its own n)"
        )
    if not outcome.empty:
        sizes.append(int(outcome["n"].max()))
        parts.append(f"manipulation on up to {sizes[-1]} images per model and method")
    caveat = (
        " With fewer than ~100 images, differences of a few percentage points are within sampling noise, so "
        "read the intervals, not just the means."
        if min(sizes) < 100
        else " The 95 % intervals give the remaining sampling uncertainty."
    )
    return "Sample sizes: " + "; ".join(parts) + "." + caveat
