"""The short answer for a clinical reviewer: which model, which map method, how far to trust it, and why.

Five lines, each computed from numbers the summary already states (robust accuracy with its Wilson interval,
the paired difference of the map from a random map at the top 15 %, the map SSIM between clean and attacked
images, the manipulation outcome) and worded by what the intervals allow: a lead within sampling noise, a map
not distinguishable from a random one or a model at chance is said so, never rounded up into a
recommendation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from robustxai.metrics import get_metric
from robustxai.report._numbers import difference_interval, fmt_number, fmt_percent, wilson_interval
from robustxai.report._tables import (
    HEADLINE_METRIC,
    RANDOM_EXPLAINER,
    ReportTables,
    condition_label,
    select_condition,
)
from robustxai.report._verdicts import ChanceLevel, chance_levels, class_names, manipulation_outcome
from robustxai.results._metric_keys import reference_key
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN, Condition

__all__ = ["AnswerLine", "reviewer_answer"]

#: Fewer images than this behind a figure makes the evidence "thin" (intervals of ± 10 points or more).
THIN_EVIDENCE = 100


@dataclass(frozen=True)
class AnswerLine:
    """One line of the answer: a short label (``"Model"``) and its sentence."""

    label: str
    text: str


@dataclass
class _Facts:
    """What the trust line weighs, collected while the other lines are written."""

    at_chance: bool = False
    attacked: bool = True
    clean_map: str | None = None  # "above", "level" or "below" the random map; None: unknown
    attacked_map: str | None = None
    manipulated: float | None = None  # share of images manipulated
    sizes: tuple[int, ...] = ()


def _versus(low: float, high: float) -> str | None:
    if math.isnan(low) or math.isnan(high):
        return None
    return "above" if low > 0.0 else "below" if high < 0.0 else "level"


def _gap(tables: ReportTables, model: str, explainer: str, cond: Condition) -> pd.Series | None:
    """The paired explainer − random-map difference at the headline metric (``None``: under 2 images)."""
    gaps = tables.random_gaps
    if gaps.empty:
        return None
    hit = select_condition(gaps, cond)
    hit = hit[(hit["model"] == model) & (hit["explainer"] == explainer)]
    return None if hit.empty or int(hit.iloc[0]["n"]) < 2 else hit.iloc[0]


def _gap_text(g: pd.Series) -> str:
    return (
        f"{fmt_number(g['gap'], 1, 100.0, sign=True)} points, 95 % CI {fmt_number(g['ci_low'], 1, 100.0)} to "
        f"{fmt_number(g['ci_high'], 1, 100.0)}, n = {int(g['n'])}"
    )


def _model_line(
    tables: ReportTables, chance: dict[str, ChanceLevel], facts: _Facts
) -> tuple[str | None, str]:
    """The model to look at (the most robust under the primary attack) and why, with its uncertainty."""
    if tables.primary is None:
        clean = tables.clean.sort_values(["accuracy", "model"], ascending=[False, True], kind="mergesort")
        facts.attacked = False
        if clean.empty:
            return None, "No model has predictions in this run."
        best = clean.iloc[0]
        model, n = str(best["model"]), int(best["n"])
        facts.sizes += (n,)
        text = (
            f"'{model}' has the highest clean accuracy, {fmt_percent(float(best['accuracy']))} (n = {n} "
            "images), but no attack was run, so how it holds up under perturbation is unknown."
        )
    else:
        label = condition_label(*tables.primary)
        rows = select_condition(tables.robustness, tables.primary, column="attack")
        rows = rows.sort_values(["adversarial_accuracy", "model"], ascending=[False, True], kind="mergesort")
        if rows.empty:
            return None, f"No model was evaluated under {label}."
        best = rows.iloc[0]
        model, acc, n = str(best["model"]), float(best["adversarial_accuracy"]), int(best["n"])
        low, high = wilson_interval(acc, n)
        facts.sizes += (n,)
        text = (
            f"'{model}', the most robust under {label}: {fmt_percent(acc)} accuracy (95 % CI "
            f"{fmt_number(low, 1, 100.0)}–{fmt_number(high, 1, 100.0)} %, n = {n} images) against "
            f"{fmt_percent(float(best['clean_accuracy']))} on clean images"
        )
        if len(rows) > 1:
            runner = rows.iloc[1]
            d_low, _ = difference_interval(acc, n, float(runner["adversarial_accuracy"]), int(runner["n"]))
            if d_low <= 0.0:
                text += f"; its lead over '{runner['model']}' is within sampling noise"
        level = chance.get(model)
        if level is not None and not math.isnan(level.chance) and low <= level.chance + 1e-12:
            text += "; under attack it is no better than always answering the most common class"
        text += "."
    level = chance.get(model)
    if level is not None and level.at_chance:
        facts.at_chance = True
        text += " It is at chance level on clean images, so nothing below can be relied on."
    return model, text


def _method_line(tables: ReportTables, model: str, facts: _Facts) -> tuple[str | None, str]:
    """The model's best map method at the headline metric on clean images, against a random map."""
    al = select_condition(tables.alignment, (CLEAN, 0.0))
    rows = al[
        (al["model"] == model)
        & (al["metric"] == HEADLINE_METRIC)
        & (al["explainer"] != RANDOM_EXPLAINER)
        & (al["n"] > 0)
    ]
    if rows.empty:
        return None, (
            f"Not assessed: the run has no alignment of '{model}''s maps with expert points (no points or no "
            "explainers)."
        )
    best = rows.sort_values(["value", "explainer"], ascending=[False, True], kind="mergesort").iloc[0]
    method, n = str(best["explainer"]), int(best["n"])
    facts.sizes += (n,)
    text = (
        f"{method}, the best of {len(rows)} on clean images: {fmt_percent(float(best['value']))} of the "
        "expert points lie in its top 15 % pixels"
    )
    g = _gap(tables, model, method, (CLEAN, 0.0))
    if g is None:
        return method, text + f" (n = {n} images; no random-map baseline to compare with)."
    facts.clean_map = _versus(float(g["ci_low"]), float(g["ci_high"]))
    if facts.clean_map == "above":
        return method, text + f", clearly above a random map ({_gap_text(g)})."
    return method, text + (
        f", yet not distinguishable from a random map ({_gap_text(g)}): no method of this model is shown to "
        "point at the finding."
    )


def _attack_line(tables: ReportTables, model: str, method: str, facts: _Facts) -> str:
    """How the chosen maps fare under the primary attack: against a random map, and SSIM to the clean map."""
    if tables.primary is None:
        return "Not tested: the run has no attack."
    label = condition_label(*tables.primary)
    parts = []
    g = _gap(tables, model, method, tables.primary)
    if g is not None:
        facts.attacked_map = _versus(float(g["ci_low"]), float(g["ci_high"]))
        where = {"above": "stay above", "level": "fall to the level of", "below": "fall below"}
        how = where.get(facts.attacked_map or "", "cannot be compared with")
        parts.append(f"its maps {how} a random map ({_gap_text(g)})")
    al = select_condition(tables.alignment, tables.primary)
    key = reference_key(get_metric("ssim"))  # map_ssim: the clean map against the attacked one
    ssim = al[(al["model"] == model) & (al["explainer"] == method) & (al["metric"] == key)]
    if not ssim.empty and int(ssim.iloc[0]["n"]) > 0:
        s = ssim.iloc[0]
        parts.append(
            f"their SSIM with the clean map is {fmt_number(s['value'])} (1 = unchanged; 95 % CI "
            f"{fmt_number(s['ci_low'])}–{fmt_number(s['ci_high'])}, n = {int(s['n'])})"
        )
    if not parts:
        return f"Not measured: the run did not explain {method} on images attacked with {label}."
    return f"Under {label}, " + " and ".join(parts) + "."


def _manipulation_line(run: RunData, model: str, method: str | None, facts: _Facts) -> str:
    """The manipulation outcome of the chosen model and method (else of the model's attacked methods)."""
    outcome = manipulation_outcome(run.metrics)
    if outcome.empty:
        return "Not tested: the run has no manipulation stage."
    mine = outcome[outcome["model"] == model]
    if mine.empty:
        return f"Not tested on '{model}'."
    hit = mine[mine["method"] == method]
    rows = hit if not hit.empty else mine
    facts.manipulated = float(rows["successes"].sum()) / max(int(rows["n"].sum()), 1)
    facts.sizes += (int(rows["n"].min()),)
    said = "; ".join(
        f"{r.method} on {r.successes} of {r.n} images (map peak inside the square on {r.peak_in_target} of "
        f"{r.n})"
        for r in rows.itertuples(index=False)
    )
    lead = "" if not hit.empty or method is None else f"{method} was not attacked. "
    return (
        f"{lead}The attack that moves the map of '{model}' onto a chosen square while keeping the prediction "
        f"succeeded (SSIM(target, map) ≥ 0.6) for {said}."
    )


def _trust_line(facts: _Facts) -> str:
    """The verdict, the reasons behind it and how much evidence there is."""
    reasons = []
    if facts.at_chance:
        verdict = "not at all"
        reasons.append("the model has not learned the task")
    elif facts.clean_map in ("level", "below"):
        verdict = "not for locating findings"
        reasons.append("its best map does no better than a random one")
    elif not facts.attacked:
        verdict = "unknown under attack"
        reasons.append("no attack was run")
    else:
        verdict = "with care"
        if facts.clean_map == "above":
            reasons.append("its maps beat a random map on clean images")
        if facts.attacked_map in ("level", "below"):
            verdict = "only on images known not to be tampered with"
            reasons.append("under attack they drop to chance")
        if facts.manipulated is not None and facts.manipulated >= 0.5:
            verdict = "only on images known not to be tampered with"
            reasons.append("an attacker can steer them")
    n = min(facts.sizes) if facts.sizes else 0
    evidence = (
        f" The evidence is thin (as few as {n} images behind a figure): intervals are wide and the claims "
        "above say which findings this run can decide."
        if n < THIN_EVIDENCE
        else ""
    )
    why = f": {'; '.join(reasons)}." if reasons else "."
    return f"{verdict[0].upper()}{verdict[1:]}{why}{evidence}"


def reviewer_answer(tables: ReportTables, run: RunData) -> list[AnswerLine]:
    """The five-line answer (model, map method, under attack, manipulation, trust); ``[]`` without models."""
    chance = {c.model: c for c in chance_levels(run.predictions, class_names(run.meta))}
    facts = _Facts()
    model, model_text = _model_line(tables, chance, facts)
    if model is None:
        return []
    method, method_text = _method_line(tables, model, facts)
    attack_text = (
        _attack_line(tables, model, method, facts) if method else "Not assessed: no map method to follow."
    )
    return [
        AnswerLine("Model", model_text),
        AnswerLine("Map method", method_text),
        AnswerLine("Under attack", attack_text),
        AnswerLine("Manipulation", _manipulation_line(run, model, method, facts)),
        AnswerLine("How far to trust it", _trust_line(facts)),
    ]
