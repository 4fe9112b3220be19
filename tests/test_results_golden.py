"""The run tables of a fixed store, byte for byte: a refactoring of the store, the loading or the report's
aggregation must not change one character of ``tables/*.csv``.

The store is written from fixed numbers (no model, no torch computation), so the CSVs depend only on the
results layer, the report's aggregation (pandas, NumPy's seeded bootstrap) and the CSV writer — not on torch's
kernels. The golden files in ``tests/golden/run_tables/`` were written by the code before the results layer
existed (the store in ``audit/store.py``, the loading in ``report/_tables.py``) and are unchanged since.
To re-create them after an intended change of the tables: ``ROBUSTXAI_UPDATE_GOLDEN=1 pytest`` this file,
and say why in the commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.report._run_tables"

GOLDEN = Path(__file__).parent / "golden" / "run_tables"
MODELS = ("adversarial", "attention", "standard")
SAMPLES = [f"s{i}" for i in range(8)]
EPS = 4 / 255
CONDITIONS = (("clean", 0.0), ("fgsm", EPS), ("pgd", EPS), ("pgd", 8 / 255))
EXPLAINERS = ("gradcam", "random", "saliency")
MAP_METRICS = ("point_coverage@5", "point_coverage@15", "mask_area@15", "topk_iou@15", "pointing_game")
STABILITY = ("map_ssim", "map_mse", "map_pearson")
#: Tables without a golden file: ``claims`` is decided by the claim plug-ins, which have their own tests on
#: constructed stores (a table that is new, not a refactoring of one the golden files pin).
NOT_GOLDEN = frozenset({"claims"})


def write_store(store: Any) -> None:
    """Fill ``store`` (a run store opened for writing) with fixed rows: 3 models, 4 conditions, manipulation.

    Only the store's writing methods are used, with plain tuples, so the same function fills the store of
    any version of robustxai that has them.
    """
    rng = np.random.default_rng(2024)
    store.set_meta("run_name", "golden")
    store.set_meta("primary_attack", {"attack": "pgd", "epsilon": EPS})
    store.set_meta("config", {"models": [{"name": m, "reference_rank": i + 1} for i, m in enumerate(MODELS)]})
    store.add_samples((sid, i, i % 2, 1, 2) for i, sid in enumerate(SAMPLES))
    predictions, metrics = [], []
    for k, model in enumerate(MODELS):
        store.add_model(model, "smallcnn", "standard", {})
        for c, (cond, eps) in enumerate(CONDITIONS):
            for i, sid in enumerate(SAMPLES):
                pred = int((i + k + c) % 3 != 0) if cond != "clean" else int(i % 4 != 0)
                predictions.append((model, cond, eps, sid, i % 2, pred, int(pred == i % 2)))
            for explainer in EXPLAINERS:
                names = MAP_METRICS + (STABILITY if cond != "clean" else ())
                for metric in names:
                    for i, sid in enumerate(SAMPLES):
                        value = float(rng.uniform(0, 1))
                        if i == 7 and metric.startswith("point_coverage"):
                            value = float("nan")  # an image without points
                        metrics.append((model, cond, eps, explainer, metric, sid, value))
        for via in ("saliency", "gradcam"):
            cond = f"manipulate:{via}"
            for i, sid in enumerate(SAMPLES[:4]):
                for metric in ("image_ssim", "prediction_unchanged"):
                    metrics.append((model, cond, 0.0, "", metric, sid, float(rng.uniform(0, 1))))
                for metric in ("target_ssim", "map_ssim", "map_mse", "map_pearson", "unsuccessful"):
                    metrics.append((model, cond, 0.0, via, metric, sid, float(rng.uniform(0, 1))))
                metrics.append((model, cond, 0.0, via, "peak_in_target", sid, float(i % 2)))
    store.add_predictions(predictions)
    store.add_metrics(metrics)


def test_run_tables_are_byte_identical_to_the_golden_files(tmp_path: Path) -> None:
    """Every table of ``tables/*.csv`` of the fixed store equals its golden file, byte for byte."""
    from robustxai.report._run_tables import run_tables, write_tables
    from robustxai.results import Store, load_run

    with Store(tmp_path) as store:
        write_store(store)
    paths = write_tables(run_tables(load_run(tmp_path)), tmp_path)
    if os.environ.get("ROBUSTXAI_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            if name not in NOT_GOLDEN:
                (GOLDEN / f"{name}.csv").write_bytes(path.read_bytes())
    expected = sorted(p.stem for p in GOLDEN.glob("*.csv"))
    assert sorted(set(paths) - NOT_GOLDEN) == expected
    for name in expected:
        assert paths[name].read_bytes() == (GOLDEN / f"{name}.csv").read_bytes(), f"tables/{name}.csv changed"
