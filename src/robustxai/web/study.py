"""Blinded rating studies: sampling the items, and the results computed from the answers.

A study is a list of items — one map (Likert 1–5: "does the highlighted region correspond to the finding?")
or two maps of the same image, model and condition by different methods (which is more useful?) — drawn from
the maps the run stores, stratified by model × method. Each rater gets a secret token and the items in an
own random order; identifiers never reach the rater's pages.
"""

from __future__ import annotations

import json
import math
import secrets
import warnings
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from robustxai.errors import RobustXAIError
from robustxai.metrics.statistics import bootstrap_ci
from robustxai.web.db import StudioDB
from robustxai.web.runview import MapKey, RunView
from robustxai.web.stats import bradley_terry, krippendorff_alpha, spearman_ci

#: Automatic metrics compared with the ratings (the first stored name with each prefix).
AUTO_METRICS = ("point_coverage@15", "topk_iou@15", "pointing_game", "relevance_mass")


def _round_robin(groups: dict[Any, list[Any]], n: int) -> list[Any]:
    """Take ``n`` elements from the groups in turn (stratified), each group already shuffled."""
    queues = [list(g) for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    out: list[Any] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def sample_items(
    view: RunView, n_items: int, n_pairs: int, methods: list[str] | None, rng: np.random.Generator
) -> list[tuple[str, str, str, str | None]]:
    """Likert and pairwise items ``(kind, sample_id, map_a, map_b)`` stratified by model × method."""
    keys = [k for k in view.map_keys if methods is None or k.explainer in methods]
    if not keys:
        raise RobustXAIError(
            "the run stores no maps"
            + (f" of methods {', '.join(methods)}" if methods else "")
            + " to rate (maps are stored for the report's figure images: raise [report] n_figure)"
        )
    strata: dict[tuple[str, str], list[MapKey]] = defaultdict(list)
    for k in keys:
        strata[(k.model, k.explainer)].append(k)
    for g in strata.values():
        rng.shuffle(g)
    likert = _round_robin(dict(strata), n_items)
    by_view: dict[tuple[str, str, float, str], list[MapKey]] = defaultdict(list)
    for k in keys:
        by_view[(k.sample_id, k.model, k.epsilon, k.condition)].append(k)
    pair_strata: dict[str, list[tuple[MapKey, MapKey]]] = defaultdict(list)
    for ks in by_view.values():
        for i in range(len(ks)):
            for j in range(i + 1, len(ks)):
                a, b = (ks[i], ks[j]) if rng.random() < 0.5 else (ks[j], ks[i])
                pair_strata[a.model].append((a, b))
    for g2 in pair_strata.values():
        rng.shuffle(g2)
    pairs = _round_robin(dict(pair_strata), n_pairs)
    items: list[tuple[str, str, str, str | None]] = [
        ("likert", k.sample_id, json.dumps(asdict(k)), None) for k in likert
    ]
    items += [("pair", a.sample_id, json.dumps(asdict(a)), json.dumps(asdict(b))) for a, b in pairs]
    return items


def create_study(
    run_dir: str | Path,
    raters: int,
    images: int,
    methods: list[str] | None = None,
    pairs: int | None = None,
    seed: int | None = None,
) -> tuple[str, list[str]]:
    """Create a study in the run's ``studio.sqlite``; return its id and one secret token per rater.

    Args:
        run_dir: The run directory.
        raters: Number of raters (1–100).
        images: Number of single-map (Likert) items.
        methods: Only maps of these explainers (default: every stored one).
        pairs: Number of two-map items (default ``images // 2``).
        seed: Sampling seed (default: random).

    Raises:
        RobustXAIError: For bad counts or a run without stored maps.
    """
    if (
        not 1 <= raters <= 100
        or not 1 <= images <= 10_000
        or (pairs is not None and not 0 <= pairs <= 10_000)
    ):
        raise RobustXAIError("--raters must be 1–100, --images 1–10000 and --pairs 0–10000")
    view = RunView(Path(run_dir))
    if methods:
        known = sorted({k.explainer for k in view.map_keys})
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise RobustXAIError(
                f"no stored maps of {', '.join(unknown)}; stored methods: {', '.join(known)}"
            )
    rng = np.random.default_rng(seed)
    items = sample_items(view, images, images // 2 if pairs is None else pairs, methods, rng)
    tokens = [secrets.token_urlsafe(18) for _ in range(raters)]
    orders = [[int(i) for i in rng.permutation(len(items))] for _ in tokens]
    study_id = "study-" + secrets.token_hex(4)
    settings = {"raters": raters, "images": images, "methods": methods, "n_items": len(items)}
    StudioDB(Path(run_dir)).add_study(study_id, settings, items, list(zip(tokens, orders, strict=True)))
    return study_id, tokens


def _key(item_map: dict[str, Any]) -> tuple[str, str, float, str, str]:
    return (
        item_map["model"],
        item_map["condition"],
        float(item_map["epsilon"]),
        item_map["explainer"],
        item_map["sample_id"],
    )


def _metric_lookup(view: RunView) -> dict[str, dict[tuple[str, str, float, str, str], float]]:
    m = view.metrics
    out: dict[str, dict[tuple[str, str, float, str, str], float]] = {}
    for name in AUTO_METRICS:
        sel = m[m["metric"] == name]
        out[name] = {
            (a, b, float(c), d, e): float(v)
            for a, b, c, d, e, v in zip(
                sel["model"],
                sel["condition"],
                sel["epsilon"],
                sel["explainer"],
                sel["sample_id"],
                sel["value"],
                strict=True,
            )
        }
    return out


def _ranking(labels: list[str], wins: np.ndarray) -> list[dict[str, Any]]:
    """Bradley–Terry strengths of every compared map kind, strongest first."""
    strengths = bradley_terry(wins) if wins.sum() > 0 else np.full(len(labels), np.nan)
    rows: list[dict[str, Any]] = []
    for i, (label, strength) in enumerate(zip(labels, strengths, strict=True)):
        n = int(wins[i].sum() + wins[:, i].sum())
        if n > 0:
            rows.append(
                {"map": label, "strength": float(strength), "wins": int(wins[i].sum()), "comparisons": n}
            )
    return sorted(rows, key=lambda r: -float(r["strength"]))


def _label(item_map: dict[str, Any]) -> str:
    return f"{item_map['model']} / {item_map['explainer']}"


def study_results(view: RunView, db: StudioDB, study_id: str) -> dict[str, Any]:
    """Per model × method mean rating with bootstrap CI, Bradley–Terry ranking, α and metric↔rating ρ."""
    items, answers = db.study_rows(study_id)
    by_no = {it["item_no"]: it for it in items}
    raters = sorted({r for r, _, _ in answers})
    likert_nos = [it["item_no"] for it in items if it["kind"] == "likert"]
    col = {n: i for i, n in enumerate(likert_nos)}
    matrix = np.full((max(len(raters), 1), len(likert_nos)), np.nan)
    rank = {r: i for i, r in enumerate(raters)}
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
            matrix[rank[rater], col[no]] = value
            per_stratum[(it["map_a"]["model"], it["map_a"]["explainer"])].append(float(value))
        else:
            win, lose = (it["map_a"], it["map_b"]) if value == 0 else (it["map_b"], it["map_a"])
            wins[labels.index(_label(win)), labels.index(_label(lose))] += 1
    means = []
    for (model, method), vals in sorted(per_stratum.items()):
        mean, lo, hi = bootstrap_ci(np.asarray(vals))
        means.append({"model": model, "method": method, "n": len(vals), "mean": mean, "low": lo, "high": hi})
    with warnings.catch_warnings():  # an item nobody rated yet has no mean: NaN, dropped from ρ
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_rating = np.nanmean(matrix, axis=0) if answers else np.array([])
    correlations = []
    for name, table in _metric_lookup(view).items():
        auto = np.array([table.get(_key(by_no[n]["map_a"]), math.nan) for n in likert_nos])
        if table and auto.size and mean_rating.size:
            rho, lo, hi, n = spearman_ci(auto, mean_rating)
            correlations.append({"metric": name, "rho": rho, "low": lo, "high": hi, "n": n})
    return {
        "n_items": len(items),
        "n_answers": len(answers),
        "n_raters": len(raters),
        "means": means,
        "ranking": _ranking(labels, wins),
        "alpha_interval": krippendorff_alpha(matrix, "interval") if answers else math.nan,
        "alpha_ordinal": krippendorff_alpha(matrix, "ordinal") if answers else math.nan,
        "correlations": correlations,
    }
