"""A tiny run store for the studio's tests, written through the Store API as the audit writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustxai.audit import load_config
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._pipeline"

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


TINY_AUDIT: dict[str, Any] = {
    "seed": 3,
    "batch_size": 4,
    "data": {"n_train": 40, "n_test": 20, "size": 24, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [{"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}}],
    "attacks": [{"name": "pgd", "epsilons": [4 / 255], "params": {"steps": 2, "random_start": True}}],
    "explain": {"methods": ["saliency", "smoothgrad"], "n_images": 4, "batch_size": 2},
    "report": {"n_figure": 3, "primary_attack": "pgd"},
    "sanity": {"enabled": False},
    "manipulation": {"models": []},
}


def make_audited_run(tmp: Path) -> Path:
    """A real tiny audit in ``tmp/run`` (model cache in ``tmp/cache``): 20 test images, 4 explained, 3 stored.

    One model, PGD with a random start and a stochastic explainer (SmoothGrad), so recomputing a map exactly
    needs the audit's seeds. About 5 s on one thread.
    """
    from robustxai._pipeline import run_audit  # the audit, then its report

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(profile="smoke", **{**TINY_AUDIT, "cache_dir": str(tmp / "cache")})
        run_audit(cfg, tmp / "run")
    finally:
        torch.set_num_threads(threads)
    return tmp / "run"
