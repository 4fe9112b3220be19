"""Run stores with planted answers for the claims tests, written through the results layer's real writer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robustxai.results import RunData, Store, load_run
from robustxai.results._schema import MetricRow, PredictionRow, SampleRow

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.results._schema"

EPS = 4 / 255
PGD = ("pgd", EPS)
FGSM = ("fgsm", EPS)
BIM = ("bim", EPS)
CLEAN = ("clean", 0.0)


@dataclass
class Planted:
    """What to write: models, per-image 0/1 correct per model × condition, and metric rows."""

    n: int
    models: list[dict[str, object]] = field(default_factory=list)
    correct: dict[tuple[str, tuple[str, float]], Sequence[float]] = field(default_factory=dict)
    metrics: list[MetricRow] = field(default_factory=list)
    primary: tuple[str, float] = PGD

    @property
    def ids(self) -> list[str]:
        return [f"s{i:03d}" for i in range(self.n)]

    def model(self, name: str, arch: str = "smallcnn", training: str = "standard", **extra: object) -> None:
        self.models.append({"name": name, "arch": arch, "training": training, **extra})

    def accuracy(self, model: str, condition: tuple[str, float], share: float, seed: int = 0) -> None:
        """Correct on a random ``share`` of the images (exactly round(share * n) of them)."""
        k = round(share * self.n)
        order = np.random.default_rng(seed).permutation(self.n)
        values = np.zeros(self.n)
        values[order[:k]] = 1.0
        self.correct[(model, condition)] = values.tolist()

    def metric(
        self, model: str, condition: tuple[str, float], explainer: str, metric: str, values: Iterable[float]
    ) -> None:
        self.metrics += [
            MetricRow(model, condition[0], condition[1], explainer, metric, sid, float(v))
            for sid, v in zip(self.ids, values, strict=False)
        ]


def write_run(tmp_path: Path, planted: Planted) -> RunData:
    """Write ``planted`` into a fresh store under ``tmp_path`` and load it as the report would."""
    labels = [i % 2 for i in range(planted.n)]
    with Store(tmp_path) as store:
        store.set_meta("run_name", "planted")
        store.set_meta("primary_attack", {"attack": planted.primary[0], "epsilon": planted.primary[1]})
        store.set_meta("config", {"models": planted.models})
        store.add_samples(SampleRow(sid, i, labels[i], 1, 2) for i, sid in enumerate(planted.ids))
        for m in planted.models:
            store.add_model(str(m["name"]), str(m["arch"]), str(m["training"]), {})
        rows = []
        for (model, (cond, eps)), values in planted.correct.items():
            for sid, y, c in zip(planted.ids, labels, values, strict=True):
                pred = y if c else 1 - y
                rows.append(PredictionRow(model, cond, eps, sid, y, pred, int(c)))
        store.add_predictions(rows)
        store.add_metrics(planted.metrics)
    return load_run(tmp_path)


def manipulation(
    planted: Planted,
    model: str,
    method: str,
    *,
    unsuccessful: float,
    peak: float,
    image_ssim: float,
    unchanged: float,
    map_ssim: float,
    evaluated: Sequence[str] = (),
    n: int | None = None,
) -> None:
    """Manipulation rows of ``method`` on ``n`` images: shares as exact counts, SSIMs near a mean."""
    n = planted.n if n is None else n
    cond = (f"manipulate:{method}", 0.0)
    rng = np.random.default_rng(7)

    def share(p: float) -> list[float]:
        k = round(p * n)
        return [1.0] * k + [0.0] * (n - k)

    def near(mean: float) -> list[float]:
        return list(np.clip(mean + rng.normal(0, 0.002, n), 0, 1))

    for explainer in (method, *evaluated):
        planted.metric(model, cond, explainer, "unsuccessful", share(unsuccessful)[:n])
        planted.metric(model, cond, explainer, "peak_in_target", share(peak)[:n])
        planted.metric(model, cond, explainer, "map_ssim", near(map_ssim))
        planted.metric(model, cond, explainer, "target_ssim", near(0.7))
    planted.metric(model, cond, "", "image_ssim", near(image_ssim))
    planted.metric(model, cond, "", "prediction_unchanged", share(unchanged))
