"""Plain-language summary of a run, generated from its tables.

Every sentence is computed from the numbers and states its uncertainty: accuracies carry Wilson intervals,
differences between models a Newcombe interval, alignment means their bootstrap CI, and a map is only called
above (or below) the random-map baseline when the 95 % interval of its paired difference from it on the same
images excludes 0 (:mod:`robustxai.report._gaps`; without per-image pairs, when the two intervals do not
overlap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from robustxai.metrics import get_metric
from robustxai.metrics._registry import REFERENCE_TOP
from robustxai.report._numbers import difference_interval, fmt_number, fmt_percent, wilson_interval
from robustxai.report._tables import (
    HEADLINE_METRIC,
    RANDOM_EXPLAINER,
    ReportTables,
    condition_label,
    select_condition,
)
from robustxai.report._verdicts import (
    attack_chance_sentences,
    chance_levels,
    chance_warnings,
    class_names,
    manipulation_outcome,
    manipulation_sentences,
    sample_size_sentence,
)
from robustxai.results._metric_keys import reference_key
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN, Condition

__all__ = ["SummarySection", "difference_interval", "summarize", "summary_sections", "wilson_interval"]


def _ci(low: float, high: float, scale: float = 100.0, unit: str = " %") -> str:
    if math.isnan(low) or math.isnan(high):
        return "CI not available: fewer than 2 images"
    digits = 1 if scale == 100.0 else 2
    return f"95 % CI {fmt_number(low, digits, scale)}–{fmt_number(high, digits, scale)}{unit}"


def _names(names: list[str], limit: int = 6) -> str:
    shown = [f"'{n}'" for n in names[:limit]]
    if len(names) > limit:
        return ", ".join(shown) + f" and {len(names) - limit} more"
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


def _robustness_sentences(tables: ReportTables) -> list[str]:
    if tables.primary is None:
        return ["No adversarial attack was evaluated, so robustness cannot be judged from this run."]
    label = condition_label(*tables.primary)
    rows = select_condition(tables.robustness, tables.primary, column="attack")
    rows = rows.sort_values(["adversarial_accuracy", "model"], ascending=[False, True], kind="mergesort")
    if rows.empty:
        return []
    best = rows.iloc[0]
    acc, n = float(best["adversarial_accuracy"]), int(best["n"])
    ci = wilson_interval(acc, n)
    top = rows[rows["adversarial_accuracy"].round(12) == round(acc, 12)]
    out: list[str] = []
    if len(rows) == 1:
        out.append(
            f"Under {label} (the primary attack), the only model, '{best['model']}', keeps "
            f"{fmt_percent(acc)} accuracy ({_ci(*ci)}, n = {n} images), against "
            f"{fmt_percent(float(best['clean_accuracy']))} on clean images."
        )
    elif len(top) > 1:
        out.append(
            f"Under {label} (the primary attack), {_names([str(m) for m in top['model']])} tie for the "
            f"highest accuracy, {fmt_percent(acc)} ({_ci(*ci)}, n = {n} images)."
        )
    else:
        runner = rows.iloc[1]
        acc2, n2 = float(runner["adversarial_accuracy"]), int(runner["n"])
        low, high = difference_interval(acc, n, acc2, n2)
        out.append(
            f"Under {label} (the primary attack), '{best['model']}' is the most robust model: "
            f"{fmt_percent(acc)} accuracy ({_ci(*ci)}, n = {n} images), "
            f"against {fmt_percent(float(best['clean_accuracy']))} "
            "on clean images."
        )
        gap = f"{fmt_number(acc - acc2, 1, 100.0)} points"
        interval = (
            f"95 % CI of the difference {fmt_number(low, 1, 100.0)} to {fmt_number(high, 1, 100.0)} points"
        )
        if low <= 0.0:
            out.append(
                f"Its lead over the runner-up '{runner['model']}' ({fmt_percent(acc2)}) is {gap}, which is "
                f"within sampling noise ({interval}); the ranking of these two is not established."
            )
        else:
            out.append(
                f"Its lead over the runner-up '{runner['model']}' ({fmt_percent(acc2)}) is {gap} "
                f"({interval}), larger than sampling noise alone would explain."
            )
    drops = rows.dropna(subset=["delta_accuracy"])
    if not drops.empty:
        worst = drops.sort_values(
            ["delta_accuracy", "model"], ascending=[False, True], kind="mergesort"
        ).iloc[0]
        out.append(
            f"The largest drop under {label} is '{worst['model']}': "
            f"{fmt_number(worst['delta_accuracy'], 1, 100.0)} points "
            f"({fmt_percent(float(worst['clean_accuracy']))} → "
            f"{fmt_percent(float(worst['adversarial_accuracy']))})."
        )
    return out


def _gap(tables: ReportTables, row: pd.Series) -> pd.Series | None:
    """The paired explainer − random-map difference of an alignment row (``None`` if under 2 images)."""
    gaps = tables.random_gaps
    if gaps.empty:
        return None
    hit = select_condition(gaps, (str(row["condition"]), float(row["epsilon"])))
    hit = hit[(hit["model"] == row["model"]) & (hit["explainer"] == row["explainer"])]
    return None if hit.empty or hit.iloc[0]["n"] < 2 else hit.iloc[0]


def _points(g: pd.Series) -> str:
    """``+82.8 points, 95 % CI 73.3 to 90.6``."""
    return (
        f"{fmt_number(g['gap'], 1, 100.0, sign=True)} points, 95 % CI {fmt_number(g['ci_low'], 1, 100.0)} to "
        f"{fmt_number(g['ci_high'], 1, 100.0)}"
    )


def _gap_clause(tables: ReportTables, row: pd.Series) -> str:
    """``"; on the same 40 images the difference is +82.8 points, 95 % CI …"``, or ``""``."""
    g = _gap(tables, row)
    if g is None:
        return ""
    return f"; on the same {int(g['n'])} images the difference is {_points(g)}"


def _per_model_leads(tables: ReportTables, rows: pd.DataFrame) -> str | None:
    """Each model's best explainer at the headline metric and its paired difference from the random map."""
    if tables.random_gaps.empty or rows["model"].nunique() < 2:
        return None
    parts = []
    for model, group in rows.groupby("model", sort=True):
        best = group.iloc[0]  # rows are sorted best first
        g = _gap(tables, best)
        if g is not None:
            parts.append(f"'{model}' {best['explainer']} {fmt_percent(float(best['value']))} ({_points(g)})")
    if not parts:
        return None
    return "Best method per model against the random map on the same images: " + "; ".join(parts) + "."


def _versus_random(tables: ReportTables, row: pd.Series, base: pd.Series) -> str | None:
    """``"above"``, ``"level"`` or ``"below"`` the random map; ``None`` with too few images to tell.

    From the paired difference on the same images when the run has it (its 95 % interval excludes 0 or not),
    else from the two intervals (they overlap or not), which is the more conservative test.
    """
    g = _gap(tables, row)
    if g is not None and not (math.isnan(float(g["ci_low"])) or math.isnan(float(g["ci_high"]))):
        low, high = float(g["ci_low"]), float(g["ci_high"])
        return "above" if low > 0.0 else "below" if high < 0.0 else "level"
    if any(math.isnan(float(row[c])) or math.isnan(float(base[c])) for c in ("ci_low", "ci_high")):
        return None
    if float(row["ci_low"]) > float(base["ci_high"]):
        return "above"
    return "level" if float(row["ci_high"]) >= float(base["ci_low"]) else "below"


_VERDICTS = {
    "above": "clearly above the random map",
    "level": "not distinguishable from random",
    "below": "below the random map",
}


def _chance(tables: ReportTables, row: pd.Series, base: pd.Series | None) -> str:
    if base is None:
        return "no random-map baseline was stored, so chance level cannot be judged"
    verdict = _versus_random(tables, row, base)
    if verdict is None:
        return f"random map {fmt_percent(float(base['value']))}; too few images to tell them apart"
    base_ci = _ci(float(base["ci_low"]), float(base["ci_high"]))
    return f"random map {fmt_percent(float(base['value']))} ({base_ci}): {_VERDICTS[verdict]}"


def _alignment_sentences(tables: ReportTables, cond: Condition) -> list[str]:
    rows = select_condition(tables.alignment, cond)
    rows = rows[
        (rows["metric"] == HEADLINE_METRIC) & (rows["explainer"] != RANDOM_EXPLAINER) & (rows["n"] > 0)
    ]
    if rows.empty:
        return []
    rows = rows.sort_values(["value", "model", "explainer"], ascending=[False, True, True], kind="mergesort")
    best = rows.iloc[0]
    base_rows = select_condition(tables.baseline, cond)
    base_rows = base_rows[(base_rows["metric"] == HEADLINE_METRIC) & (base_rows["n"] > 0)]
    base = None if base_rows.empty else base_rows.iloc[0]
    where = "On clean images" if cond[0] == CLEAN else f"Under {condition_label(*cond)}"
    out = [
        f"{where}, the maps that best cover the expert points within their top 15 % are "
        f"'{best['model']}' with {best['explainer']}: {fmt_percent(float(best['value']))} of points "
        f"({_ci(float(best['ci_low']), float(best['ci_high']))}, n = {int(best['n'])}); "
        f"{_chance(tables, best, base)}{_gap_clause(tables, best) if base is not None else ''}."
    ]
    if cond[0] == CLEAN:
        leads = _per_model_leads(tables, rows)
        if leads:
            out.append(leads)
    if base is not None and cond[0] == CLEAN:
        indist = [
            f"{r['model']}/{r['explainer']}"
            for _, r in rows.iterrows()
            if _versus_random(tables, r, base) in (None, "level", "below")
        ]
        if indist:
            how = (
                "the 95 % interval of their paired difference from it includes 0, or lies below it"
                if not tables.random_gaps.empty
                else "their intervals overlap, or theirs lies below"
            )
            out.append(
                f"On clean images, {len(indist)} of {len(rows)} model × explainer combinations are not above "
                f"a random map at the top 15 % ({how}; up to {int(rows['n'].max())} images each): "
                f"{_names(indist)}."
            )
        else:
            n_max = int(rows["n"].max())
            out.append(
                f"On clean images, every model × explainer combination ({len(rows)}) is above the random map "
                f"at the top 15 % (up to {n_max} images each); this does not carry over to attacked images."
            )
    return out


def _stability_sentences(tables: ReportTables) -> list[str]:
    rows = tables.alignment[
        (tables.alignment["metric"] == reference_key(get_metric("ssim")))
        & (tables.alignment["explainer"] != RANDOM_EXPLAINER)
        & (tables.alignment["n"] > 0)
    ]
    if tables.primary is not None and not select_condition(rows, tables.primary).empty:
        rows = select_condition(rows, tables.primary)
        where = f"under {condition_label(*tables.primary)}"
    else:
        where = "under the attacks"
    if rows.empty:
        return []
    rows = rows.sort_values(["value", "model", "explainer"], kind="mergesort")
    low, high = rows.iloc[0], rows.iloc[-1]
    lo_v, hi_v = float(low["value"]), float(high["value"])
    if hi_v < 0.5:
        verdict = "every map changed substantially"
    elif lo_v > 0.9:
        verdict = "the maps barely moved"
    else:
        verdict = "some maps move much more than others"
    return [
        f"Adversarial images move the explanations {where}: the mean SSIM between clean and attacked maps "
        f"(1 = unchanged) ranges from {fmt_number(lo_v)} ('{low['model']}' / {low['explainer']}) to "
        f"{fmt_number(hi_v)} ('{high['model']}' / {high['explainer']}; up to {int(rows['n'].max())} images "
        f"each), so {verdict}. Part of any change is expected when the "
        "attack flips the prediction, because the map then explains the new class."
    ]


def _tie_sentences(tables: ReportTables, slack: float = 0.05) -> list[str]:
    """Warn where ties made a top-15 % region much larger than 15 % (flat maps cover points for free)."""
    area = reference_key(get_metric("mask_area"))
    areas = tables.alignment[
        (tables.alignment["metric"] == area) & (tables.alignment["explainer"] != RANDOM_EXPLAINER)
    ]
    inflated = areas[areas["value"] > REFERENCE_TOP + slack]
    if inflated.empty:
        return []
    worst = inflated.sort_values(["value", "model", "explainer"], ascending=[False, True, True]).iloc[0]
    combos = sorted({f"{r['model']}/{r['explainer']}" for _, r in inflated.iterrows()})
    return [
        f"Ties enlarge the 'top 15 %' region of {_names(combos)}: up to "
        f"{fmt_percent(float(worst['value']))} of "
        f"the image for '{worst['model']}' / {worst['explainer']} ({worst['condition']}), so their point "
        "coverage is inflated; flat or mostly-zero maps cover points without locating anything."
    ]


@dataclass
class SummarySection:
    """One headed group of summary sentences (clean and attacked results are never mixed in one group)."""

    title: str
    sentences: list[str] = field(default_factory=list)


def summary_sections(tables: ReportTables, run: RunData | None = None) -> list[SummarySection]:
    """Write the report's summary as headed groups of plain-language sentences.

    Args:
        tables: The run's tables (see :func:`robustxai.report.compute_tables`).
        run: The run's rows; with them, the summary adds the manipulation outcome (its n included).

    Returns:
        Non-empty sections: robustness, explanations on clean images, explanations under the primary attack
        (every model × method at the random map's level there is named), explanation manipulation, and the
        sample sizes behind each kind of statement. Models at chance accuracy are flagged separately
        (:func:`robustxai.report._verdicts.chance_warnings`), at the top of the report.
    """
    outcome = manipulation_outcome(run.metrics) if run is not None else pd.DataFrame()
    sections = [
        SummarySection("Robustness", _robustness_sentences(tables)),
        SummarySection("Explanations on clean images", _alignment_sentences(tables, (CLEAN, 0.0))),
    ]
    if tables.primary is not None:
        attacked = _alignment_sentences(tables, tables.primary) + attack_chance_sentences(tables)
        attacked += _stability_sentences(tables)
        label = condition_label(*tables.primary)
        sections.append(SummarySection(f"Explanations under attack ({label})", attacked))
    sections.append(SummarySection("Caveats", _tie_sentences(tables)))
    sections.append(SummarySection("Explanation manipulation", manipulation_sentences(outcome)))
    sections.append(SummarySection("Sample sizes", [sample_size_sentence(tables, outcome)]))
    return [s for s in sections if s.sentences]


def summarize(tables: ReportTables, run: RunData | None = None) -> list[str]:
    """Write the report's summary as plain-language sentences (:func:`summary_sections`, flattened).

    With ``run``, warnings about models at chance accuracy on clean images come first.
    """
    first = chance_warnings(chance_levels(run.predictions, class_names(run.meta))) if run is not None else []
    return first + [s for section in summary_sections(tables, run) for s in section.sentences]
