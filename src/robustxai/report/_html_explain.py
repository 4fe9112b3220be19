"""HTML tables of the explanation side beyond Table 2: localisation, impact, stability and correlation.

Which metric goes in which table is the metric registry's ``table`` (:mod:`robustxai.metrics._builtin`):
localisation is the pointing game and relevance mass; impact is the explainability-impact paper's IoU and RMSE
under attack; stability compares clean and attacked maps; correlation tests robustness against alignment.

Each builder returns ``None`` when the run holds none of its metrics, so a small audit's report simply omits
the section instead of printing an empty table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robustxai.metrics import MetricInfo
from robustxai.report._explain_tables import ROBUSTNESS_FIGURES
from robustxai.report._html_tables import DASH, Cell, HtmlTable, Lookup, metric_names, metric_table
from robustxai.report._numbers import fmt_number
from robustxai.report._tables import ReportTables, attacked_conditions, condition_label
from robustxai.results._metric_keys import metric_of, reference_key, table_metrics
from robustxai.results._schema import CLEAN, Condition


def _explained_conditions(look: Lookup, metric: str, conditions: list[Condition]) -> list[Condition]:
    """The conditions (in order) for which some model × explainer has ``metric``."""
    return [c for c in conditions if any(look.get(m, c, e, metric) for m, e in look.pairs)]


def impact_conditions(tables: ReportTables, look: Lookup, metric: str) -> list[Condition]:
    """Clean, then each explained attack at the primary ε (or, failing that, its largest explained ε).

    The explainability-impact paper compares maps under no attack, FGSM and BIM at one budget; this picks the
    same shape of comparison from whatever attacks the run explained.
    """
    attacked = _explained_conditions(look, metric, attacked_conditions(tables.robustness))
    chosen: list[Condition] = []
    for attack in sorted({a for a, _ in attacked}):
        eps = [e for a, e in attacked if a == attack]
        target = tables.primary[1] if tables.primary else max(eps)
        chosen.append((attack, min(eps, key=lambda e: (abs(e - target), -e))))
    return [(CLEAN, 0.0), *chosen]


def _present(tables: ReportTables, infos: list[MetricInfo]) -> list[MetricInfo]:
    """The metrics of ``infos`` whose stored names occur in the run's alignment table."""
    present = {info.name for m in set(tables.alignment["metric"].astype(str)) if (info := metric_of(m))}
    return [i for i in infos if i.name in present]


def _header(info: MetricInfo) -> str:
    """A column header: the metric's label, with ``(%)`` when it is shown in per cent."""
    return f"{info.display} (%)" if info.scale == 100.0 else info.display


def localisation_html(tables: ReportTables, look: Lookup) -> HtmlTable | None:
    """Table 3: the registry's localisation metrics, clean and under the primary attack, with the baseline.

    The built-in ones are the pointing game and relevance mass; a metric registered with
    ``table="localisation"`` gets its own column.
    """
    infos = _present(tables, table_metrics("localisation"))
    if not infos:
        return None
    metrics = [(reference_key(i), _header(i), i.scale, i.digits) for i in infos]
    conds = [(CLEAN, 0.0)] + ([tables.primary] if tables.primary else [])
    groups, columns, rows = metric_table(tables, look, metrics, conds)
    labels = [i.display for i in infos]
    named = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    readings = " ".join(f"{i.display[:1].upper()}{i.display[1:]}: {i.reading}." for i in infos)
    return HtmlTable(
        "localisation",
        f"Table 3 — Localisation: {named}",
        columns,
        rows,
        f"{readings} ↑ marks a higher-is-better column and ↓ a lower-is-better one; compare each with the "
        "random-map row, which is what chance gives (about the mask's share of the image).",
        groups,
    )


def impact_html(tables: ReportTables, look: Lookup) -> list[HtmlTable]:
    """Tables 1–2 of the explainability-impact paper: top-k IoU and RMSE, clean and under each attack."""
    out = []
    for number, info in enumerate(table_metrics("impact"), start=4):
        prefix, label, meaning = info.name, info.display, info.reading
        names = metric_names(tables.alignment, prefix)
        if not names:
            continue
        metrics = [(n, f"{label} top {n.split('@')[1]} %", info.scale, info.digits) for n in names]
        conds = impact_conditions(tables, look, names[0])
        groups, columns, rows = metric_table(tables, look, metrics, conds)
        out.append(
            HtmlTable(
                f"impact_{prefix}",
                f"Table {number} — {label} with the expert mask under attack (explainability-impact paper, "
                f"Table {number - 3})",
                columns,
                rows,
                f"{meaning}, on clean images and on adversarial images of each attack at the primary budget. "
                "Means over images with a 95 % bootstrap interval; images without a mask are left out.",
                groups,
            )
        )
    return out


def stability_html(tables: ReportTables, look: Lookup) -> HtmlTable | None:
    """SSIM / MSE / Pearson between clean and attacked maps per model × explainer × attack × ε."""
    metrics = [
        (reference_key(i), i.display, i.scale, i.digits) for i in _present(tables, table_metrics("stability"))
    ]
    if not metrics:
        return None
    pairs = _explained_conditions(look, metrics[0][0], attacked_conditions(tables.robustness))
    if not pairs:
        return None
    groups, columns, rows = metric_table(tables, look, metrics, pairs)
    return HtmlTable(
        "stability",
        "Table 6 — Explanation stability under attack (trustworthiness paper's similarity measures)",
        columns,
        rows,
        "Similarity between the map of the clean image and the map of its adversarial version, same model, "
        "explainer and image, both min-max normalised: SSIM (1 = identical), MSE (0 = identical) and Pearson "
        "r (1 = identical ranking of importance). Low SSIM / high MSE mean an attacker changes what the "
        "explanation shows. The random-map row is the similarity of two unrelated maps.",
        groups,
    )


def smallest_p(n_models: int) -> float:
    """The smallest two-sided permutation p-value Spearman's ρ can reach with ``n_models`` models (2/n!)."""
    return min(1.0, 2.0 / math.factorial(n_models)) if n_models >= 1 else 1.0


def _correlation_note(frame: pd.DataFrame) -> str:
    """Why the table cannot (or can) show significance with this many models."""
    n = int(frame["n_models"].max())
    floor = smallest_p(n)
    if floor > 0.05:
        return (
            f"With n = {n} models the smallest attainable two-sided permutation p is 2/{n}! = "
            f"{fmt_number(floor, 2)}, so no ρ here can be significant at 0.05 whatever the data: read them "
            "as a description of these models, not as evidence for or against the claim."
        )
    return (
        f"With n = {n} models the smallest attainable two-sided permutation p is {fmt_number(floor, 3)}; "
        "with this many tests, expect some p below 0.05 by chance."
    )


def _no_correlation(frame: pd.DataFrame) -> HtmlTable:
    """Table 7 when no ρ is defined: one line that says so and why, instead of a grid of dashes."""
    n = int(frame["n_models"].max())
    explainers = ", ".join(sorted({str(e) for e in frame["explainer"]}))
    why = (
        "Spearman's ρ needs at least 3 models"
        if n < 3
        else "robustness or alignment is the same for every model, so ranks cannot be compared"
    )
    return HtmlTable(
        "correlation",
        "Table 7 — Does robustness go with better explanations? (Secure Diagnostics' claim: not testable)",
        ["explainers", "models", "why no ρ"],
        [[Cell(explainers), Cell(str(n)), Cell(why)]],
        f"The claim is tested with Spearman's rank correlation across models; with these {n} models it is "
        "undefined for every explainer and alignment metric.",
    )


def correlation_html(tables: ReportTables) -> HtmlTable | None:
    """Spearman's ρ across models between robustness and clean alignment: one row per explainer.

    Columns are robustness figure × alignment metric; each cell is ρ with its permutation p. The reading guide
    says whether the number of models allows significance at all (with 3 models it does not).
    """
    frame: pd.DataFrame = tables.correlation
    if frame.empty:
        return None
    if not np.isfinite(frame["rho"].astype(np.float64)).any():
        return _no_correlation(frame)
    figures = list(dict.fromkeys(str(f) for f in frame["robustness_figure"]))
    metrics = list(dict.fromkeys(str(m) for m in frame["alignment_metric"]))
    cells = {
        (str(r["explainer"]), str(r["robustness_figure"]), str(r["alignment_metric"])): r
        for r in frame.to_dict("records")
    }
    rows = []
    for explainer in sorted({str(e) for e in frame["explainer"]}):
        row = [Cell(explainer)]
        for figure in figures:
            for metric in metrics:
                r = cells.get((explainer, figure, metric))
                if r is None:
                    row.append(Cell(DASH))
                    continue
                n = int(r["n_models"])
                defined = math.isfinite(float(r["rho"]))
                row.append(
                    Cell(
                        fmt_number(r["rho"], 2),
                        f"p = {fmt_number(r['p_value'], 2)}" if defined else "",
                        f"n = {n} models, {int(r['n_permutations'])} permutations (or exact)"
                        + ("; too few models to test (need ≥ 3)" if n < 3 else ""),
                    )
                )
        rows.append(row)
    primary = condition_label(*tables.primary) if tables.primary else "the primary attack"
    n = int(frame["n_models"].max())
    groups = [("", 1)] + [(ROBUSTNESS_FIGURES.get(f, f), len(metrics)) for f in figures]
    return HtmlTable(
        "correlation",
        f"Table 7 — Does robustness go with better explanations? (Secure Diagnostics' claim, tested on {n} "
        "models)",
        ["explainer"] + [f"{m} (clean)" for _ in figures for m in metrics],
        rows,
        f"Spearman rank correlation ρ across the {n} audited models between robustness under {primary} "
        "(column "
        "groups) and the explainer's alignment on clean images (columns: the alignment metric), with its "
        "two-sided permutation p-value. A dash: ρ is undefined (a constant column, or too few models). "
        + _correlation_note(frame)
        + " ΔAcc is lower-is-better, so a negative ρ there means robust models align better.",
        groups,
    )
