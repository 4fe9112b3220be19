"""Blinded rating studies: sampling the items, and the results computed from the answers.

A study is a list of items — one map (Likert 1–5: "does the highlighted region correspond to the finding?")
or two maps of the same image, model and condition by different methods (which is more useful?) — drawn from
the maps the run stores, stratified by model × method. Each rater gets a secret token and the items in an
own random order; identifiers never reach the rater's pages.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np

from robustxai._errors import RobustXAIError
from robustxai.report._ratings import study_results as ratings_results
from robustxai.web._db import StudioDB
from robustxai.web._runview import MapKey, RunView

_K = TypeVar("_K")
_T = TypeVar("_T")


def _round_robin(groups: Mapping[_K, list[_T]], n: int) -> list[_T]:
    """Take ``n`` elements from the groups in turn (stratified), each group already shuffled."""
    queues = [list(g) for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    out: list[_T] = []
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


def study_results(view: RunView, db: StudioDB, study_id: str) -> dict[str, object]:
    """A study's results (see :func:`robustxai.report._ratings.study_results`) from the studio's database."""
    items, answers = db.study_rows(study_id)
    return ratings_results([dict(item) for item in items], answers, view.metrics)
