"""The "Expert ratings" section: results of the studio's blinded rating studies of a run.

The studio (``robustxai serve``, ``robustxai study create``) keeps its studies in ``studio.sqlite`` next to
the run's store. This module reads that file (read-only) and computes, per study, the mean Likert rating per
model × method with a bootstrap CI, a Bradley–Terry ranking of the pairwise preferences, Krippendorff's α
between raters, and how well each automatic metric predicts the mean rating of an item (Spearman with a
bootstrap CI). The studio's results page uses the same :func:`study_results`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustxai.metrics._agreement import bradley_terry, krippendorff_alpha, spearman_ci
from robustxai.metrics._statistics import bootstrap_ci
from robustxai.report._numbers import fmt_number
from robustxai.results._metric_keys import alignment_scores

STUDIO_FILE = "studio.sqlite"
MetricKey = tuple[str, str, float, str, str]


def _label(item_map: dict[str, Any]) -> str:
    return f"{item_map['model']} / {item_map['explainer']}"


def _key(item_map: dict[str, Any]) -> MetricKey:
    m = item_map
    return (m["model"], m["condition"], float(m["epsilon"]), m["explainer"], m["sample_id"])


def _metric_lookup(metrics: pd.DataFrame) -> dict[str, dict[MetricKey, float]]:
    out: dict[str, dict[MetricKey, float]] = {}
    for name in alignment_scores():  # the automatic metrics compared with the ratings
        sel = metrics[metrics["metric"] == name]
        cols = [sel[c] for c in ("model", "condition", "epsilon", "explainer", "sample_id", "value")]
        out[name] = {(a, b, float(c), d, e): float(v) for a, b, c, d, e, v in zip(*cols, strict=True)}
    return out


def _ranking(labels: list[str], wins: np.ndarray) -> list[dict[str, Any]]:
    """Bradley–Terry strengths of every compared model / method, strongest first."""
    strengths = bradley_terry(wins) if wins.sum() > 0 else np.full(len(labels), np.nan)
    rows: list[dict[str, Any]] = []
    for i, (label, strength) in enumerate(zip(labels, strengths, strict=True)):
        n = int(wins[i].sum() + wins[:, i].sum())
        if n > 0:
            rows.append(
                {"map": label, "strength": float(strength), "wins": int(wins[i].sum()), "comparisons": n}
            )
    return sorted(rows, key=lambda r: -float(r["strength"]))


def _correlations(
    metrics: pd.DataFrame, likert: list[dict[str, Any]], mean_rating: np.ndarray
) -> list[dict[str, Any]]:
    out = []
    for name, table in _metric_lookup(metrics).items():
        auto = np.array([table.get(_key(it["map_a"]), math.nan) for it in likert])
        if table and auto.size and mean_rating.size:
            rho, lo, hi, n = spearman_ci(auto, mean_rating)
            out.append({"metric": name, "rho": rho, "low": lo, "high": hi, "n": n})
    return out


def study_results(
    items: list[dict[str, Any]], answers: list[tuple[int, int, int]], metrics: pd.DataFrame
) -> dict[str, Any]:
    """Results of one study.

    Args:
        items: The study's items (``item_no``, ``kind`` ``"likert"``/``"pair"``, ``map_a``, ``map_b``: dicts
            with ``model, condition, epsilon, explainer, sample_id``).
        answers: ``(rater_no, item_no, value)``: 1–5 for Likert items, 0 (first map) / 1 (second) for pairs.
        metrics: The run's per-sample metric rows (``model, condition, epsilon, explainer, metric,
            sample_id, value``).

    Returns:
        Counts, ``means`` (per model × method with CI), ``ranking`` (Bradley–Terry), ``alpha_interval``,
        ``alpha_ordinal`` and ``correlations`` (Spearman of each automatic metric with the mean rating).
    """
    by_no = {it["item_no"]: it for it in items}
    raters = sorted({r for r, _, _ in answers})
    likert = [it for it in items if it["kind"] == "likert"]
    col = {it["item_no"]: i for i, it in enumerate(likert)}
    matrix = np.full((max(len(raters), 1), len(likert)), np.nan)
    per_stratum: dict[tuple[str, str], list[float]] = defaultdict(list)
    labels = sorted(
        {_label(it["map_a"]) for it in items} | {_label(it["map_b"]) for it in items if it["map_b"]}
    )
    wins = np.zeros((len(labels), len(labels)))
    for rater, no, value in answers:
        it = by_no.get(no)
        if it is None:
            continue
        if it["kind"] == "likert":
            matrix[raters.index(rater), col[no]] = value
            per_stratum[(it["map_a"]["model"], it["map_a"]["explainer"])].append(float(value))
        elif it["map_b"] is not None:
            win, lose = (it["map_a"], it["map_b"]) if value == 0 else (it["map_b"], it["map_a"])
            wins[labels.index(_label(win)), labels.index(_label(lose))] += 1
    means = []
    for (model, method), vals in sorted(per_stratum.items()):
        mean, lo, hi = bootstrap_ci(np.asarray(vals))
        means.append({"model": model, "method": method, "n": len(vals), "mean": mean, "low": lo, "high": hi})
    with warnings.catch_warnings():  # an item nobody rated yet has no mean: NaN, dropped from ρ
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_rating = np.nanmean(matrix, axis=0) if answers else np.array([])
    return {
        "n_items": len(items),
        "n_answers": len(answers),
        "n_raters": len(raters),
        "means": means,
        "ranking": _ranking(labels, wins),
        "alpha_interval": krippendorff_alpha(matrix, "interval") if answers else math.nan,
        "alpha_ordinal": krippendorff_alpha(matrix, "ordinal") if answers else math.nan,
        "correlations": _correlations(metrics, likert, mean_rating),
    }


def _maybe_json(text: str | None) -> Any:
    return json.loads(text) if text else None


def load_studies(run_dir: Path) -> list[tuple[str, list[dict[str, Any]], list[tuple[int, int, int]]]]:
    """Every study in ``studio.sqlite`` of a run as ``(study_id, items, answers)`` (``[]`` when none)."""
    path = Path(run_dir) / STUDIO_FILE
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        out = []
        for (study_id,) in conn.execute("SELECT study_id FROM studies ORDER BY created_at").fetchall():
            query = (
                "SELECT item_no, kind, sample_id, map_a, map_b FROM items WHERE study_id = ? ORDER BY item_no"
            )
            items = [
                {
                    "item_no": n,
                    "kind": k,
                    "sample_id": s,
                    "map_a": json.loads(a),
                    "map_b": _maybe_json(b),
                }
                for n, k, s, a, b in conn.execute(query, (study_id,))
            ]
            answers = conn.execute(
                "SELECT r.rater_no, a.item_no, a.value FROM answers a JOIN raters r ON a.token = r.token "
                "WHERE r.study_id = ? ORDER BY r.rater_no, a.item_no",
                (study_id,),
            ).fetchall()
            out.append((str(study_id), items, [(int(r), int(i), int(v)) for r, i, v in answers]))
        return out
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()


def ratings_section(run_dir: Path, metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's "Expert ratings" section: one entry per study with answers (``[]``: no section)."""
    out = []
    for study_id, items, answers in load_studies(run_dir):
        if not answers:
            continue
        res = study_results(items, answers, metrics)
        out.append({"study_id": study_id, **res, "fmt": fmt_number})
    return out
