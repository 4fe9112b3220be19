"""Plain-language summary of a run, generated from its tables.

Every sentence is computed from the numbers and states its uncertainty: accuracies carry Wilson intervals,
differences between models a Newcombe interval, alignment means their bootstrap CI, and a map is only called
above (or below) the random-map baseline when the 95 % interval of its paired difference from it on the same
images excludes 0 (:mod:`robustxai.report.gaps`; without per-image pairs, when the two intervals do not
overlap).
"""

from __future__ import annotations

import math

import pandas as pd

from robustxai.report.tables import (
    CLEAN,
    HEADLINE_METRIC,
    RANDOM_EXPLAINER,
    Condition,
    ReportTables,
    condition_label,
    select_condition,
)

#: Below this many images, the summary warns that a few points of difference are noise.
SMALL_N = 100
_Z95 = 1.959963984540054


def wilson_interval(p: float, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials (NaN when ``n`` is 0)."""
    if n <= 0 or math.isnan(p):
        return (math.nan, math.nan)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float]:
    """Newcombe's interval for ``p1 − p2`` from two Wilson intervals.

    It treats the two accuracies as independent; on the same images (paired) it is conservative.
    """
    l1, u1 = wilson_interval(p1, n1)
    l2, u2 = wilson_interval(p2, n2)
    d = p1 - p2
    return (d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100.0 * x:.1f} %"


def _ci(low: float, high: float, scale: float = 100.0, unit: str = " %") -> str:
    if math.isnan(low) or math.isnan(high):
        return "CI not available: fewer than 2 images"
    digits = 1 if scale == 100.0 else 2
    return f"95 % CI {scale * low:.{digits}f}–{scale * high:.{digits}f}{unit}"


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
            f"Under {label} (the primary attack), the only model, '{best['model']}', keeps {_pct(acc)} "
            f"accuracy ({_ci(*ci)}), against {_pct(float(best['clean_accuracy']))} on clean images."
        )
    elif len(top) > 1:
        out.append(
            f"Under {label} (the primary attack), {_names([str(m) for m in top['model']])} tie for the "
            f"highest accuracy, {_pct(acc)} ({_ci(*ci)})."
        )
    else:
        runner = rows.iloc[1]
        acc2, n2 = float(runner["adversarial_accuracy"]), int(runner["n"])
        low, high = difference_interval(acc, n, acc2, n2)
        out.append(
            f"Under {label} (the primary attack), '{best['model']}' is the most robust model: "
            f"{_pct(acc)} accuracy ({_ci(*ci)}), against {_pct(float(best['clean_accuracy']))} "
            "on clean images."
        )
        gap = f"{100.0 * (acc - acc2):.1f} points"
        interval = f"95 % CI of the difference {100.0 * low:.1f} to {100.0 * high:.1f} points"
        if low <= 0.0:
            out.append(
                f"Its lead over the runner-up '{runner['model']}' ({_pct(acc2)}) is {gap}, which is within "
                f"sampling noise ({interval}); the ranking of these two is not established."
            )
        else:
            out.append(
                f"Its lead over the runner-up '{runner['model']}' ({_pct(acc2)}) is {gap} ({interval}), "
                "larger than sampling noise alone would explain."
            )
    drops = rows.dropna(subset=["delta_accuracy"])
    if not drops.empty:
        worst = drops.sort_values(
            ["delta_accuracy", "model"], ascending=[False, True], kind="mergesort"
        ).iloc[0]
        out.append(
            f"The largest drop under {label} is '{worst['model']}': "
            f"{100.0 * float(worst['delta_accuracy']):.1f} points "
            f"({_pct(float(worst['clean_accuracy']))} → {_pct(float(worst['adversarial_accuracy']))})."
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
        f"{100.0 * float(g['gap']):+.1f} points, 95 % CI {100.0 * float(g['ci_low']):.1f} to "
        f"{100.0 * float(g['ci_high']):.1f}"
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
            parts.append(f"'{model}' {best['explainer']} {_pct(float(best['value']))} ({_points(g)})")
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
        return f"random map {_pct(float(base['value']))}; too few images to tell them apart"
    base_ci = _ci(float(base["ci_low"]), float(base["ci_high"]))
    return f"random map {_pct(float(base['value']))} ({base_ci}): {_VERDICTS[verdict]}"


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
        f"'{best['model']}' with {best['explainer']}: {_pct(float(best['value']))} of points "
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
                f"{len(indist)} of {len(rows)} model × explainer combinations are not above a random map at "
                f"the top 15 % ({how}): {_names(indist)}."
            )
        else:
            out.append("Every model × explainer combination is above the random map at the top 15 %.")
    return out


def _stability_sentences(tables: ReportTables) -> list[str]:
    rows = tables.alignment[
        (tables.alignment["metric"] == "map_ssim")
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
        f"(1 = unchanged) ranges from {lo_v:.2f} ('{low['model']}' / {low['explainer']}) to {hi_v:.2f} "
        f"('{high['model']}' / {high['explainer']}), so {verdict}. Part of any change is expected when the "
        "attack flips the prediction, because the map then explains the new class."
    ]


def _tie_sentences(tables: ReportTables, slack: float = 0.05) -> list[str]:
    """Warn where ties made a top-15 % region much larger than 15 % (flat maps cover points for free)."""
    areas = tables.alignment[
        (tables.alignment["metric"] == "mask_area@15") & (tables.alignment["explainer"] != RANDOM_EXPLAINER)
    ]
    inflated = areas[areas["value"] > 0.15 + slack]
    if inflated.empty:
        return []
    worst = inflated.sort_values(["value", "model", "explainer"], ascending=[False, True, True]).iloc[0]
    combos = sorted({f"{r['model']}/{r['explainer']}" for _, r in inflated.iterrows()})
    return [
        f"Ties enlarge the 'top 15 %' region of {_names(combos)}: up to {_pct(float(worst['value']))} of "
        f"the image for '{worst['model']}' / {worst['explainer']} ({worst['condition']}), so their point "
        "coverage is inflated; flat or mostly-zero maps cover points without locating anything."
    ]


def summarize(tables: ReportTables) -> list[str]:
    """Write the report's summary as plain-language sentences.

    Args:
        tables: The run's tables (see :func:`robustxai.report.tables.compute_tables`).

    Returns:
        Sentences on robustness under the primary attack, alignment with expert points against the random
        baseline, map stability under attack, and the sample-size caveat (undefined values are reported in
        the notes of :class:`ReportTables`).
    """
    out = _robustness_sentences(tables)
    out += _alignment_sentences(tables, (CLEAN, 0.0))
    if tables.primary is not None:
        out += _alignment_sentences(tables, tables.primary)
    out += _tie_sentences(tables)
    out += _stability_sentences(tables)
    n = tables.n_images
    if n < SMALL_N:
        out.append(
            f"Based on {n} images; with fewer than ~{SMALL_N} images, differences of a few percentage points "
            "are within sampling noise, so read the intervals, not just the means."
        )
    else:
        out.append(f"Based on {n} images; the 95 % intervals give the remaining sampling uncertainty.")
    return out
