"""A tiny run store for the studio's tests, written through the Store API as the audit writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustxai.audit.config import load_config
from robustxai.results.store import Store

IDS = [f"img{i}.png" for i in range(6)]
MODELS = ("m1", "m2")
METHODS = ("saliency", "gradcam")
CONDS = (("clean", 0.0), ("pgd", 4 / 255))
METRICS = ("point_coverage@15", "topk_iou@15", "pointing_game", "relevance_mass")
PIXELS = IDS[:3]


def make_run(out: Path) -> Path:
    """Six images (three with pixels), two models × two methods × clean/PGD, four map metrics."""
    rng = np.random.default_rng(0)
    with Store(out / "results.sqlite") as store:
        store.set_meta("config", load_config(profile="smoke").model_dump())
        store.add_samples((sid, i, i % 2, 1, 2) for i, sid in enumerate(IDS))
        for m in MODELS:
            store.add_model(m, "smallcnn", "standard", {})
        rows = [
            (m, c, e, x, metric, sid, float(rng.random()))
            for m in MODELS
            for c, e in CONDS
            for x in METHODS
            for metric in METRICS
            for sid in IDS
        ]
        store.add_metrics(rows)
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": 4 / 255})
        store.add_predictions(
            (m, c, e, sid, i % 2, (i + (c != "clean")) % 2, int(c == "clean"))
            for m in MODELS
            for c, e in CONDS
            for i, sid in enumerate(IDS)
        )
        for sid in PIXELS:
            mask = np.zeros((16, 16), dtype=bool)
            mask[4:9, 5:11] = True
            store.add_figure_sample(sid, rng.random((1, 16, 16)), mask, np.array([[7.0, 6.0], [8.0, 5.0]]))
        store.add_figure_maps(
            (m, c, e, x, sid, rng.random((16, 16)))
            for m in MODELS
            for c, e in CONDS
            for x in METHODS
            for sid in PIXELS
        )
    return out
