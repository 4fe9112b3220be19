"""Multi-label (CheXpert-style) audits: exact-match predictions, per-label scores, per-label AUC/accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import robustxai as rx
from robustxai._pipeline import run_audit
from robustxai.audit._config import profile_dict, validate_config
from robustxai.audit._stages_eval import label_code, robustness_shard
from robustxai.data import SyntheticFracture
from robustxai.data._folder import FolderDataset, write_folder
from robustxai.metrics import auc, label_accuracy
from robustxai.report._multilabel import MULTILABEL_COLUMNS
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._config, robustxai.audit._progress, "
    "robustxai.audit._stages_data, robustxai.audit._stages_eval, robustxai.data._folder, "
    "robustxai.report._multilabel"
)

LABELS = ["A", "B", "C"]


def multilabel_folder(root: Path, n: int = 48, seed: int = 5) -> Path:
    """Synthetic radiographs as a multi-label folder: A = fracture, B = bright image, C = coin flip."""
    ds = SyntheticFracture(n, size=32, seed=seed)
    write_folder(ds, root)
    means = [float(ds[i].image.mean()) for i in range(n)]
    bright = float(np.median(means))
    flips = np.random.default_rng(seed).integers(0, 2, n)
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        old = list(csv.DictReader(f))
    rows = []
    for i, r in enumerate(old):
        a = int(r["label"] == "fracture")
        b = int(means[i] > bright)
        rows.append([r["path"], a, b, int(flips[i]), "test" if i % 3 == 0 else "train"])
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *LABELS, "split"])
        writer.writerows(rows)
    doc = json.loads((root / "annotations.json").read_text())
    doc.pop("class_names")  # the label columns name the outputs now
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def test_label_code() -> None:
    assert label_code(3) == 3 and label_code([1.0, 0.0, 1.0]) == 5 and label_code(torch.tensor([0, 1])) == 2
    assert label_code([0.5, 1.0]) == -1 and label_code([1.0] * 63) == -1


def test_smallcnn_task_keyword_round_trips(tmp_path: Path) -> None:
    model = rx.create_model("smallcnn", num_classes=3, widths=(4, 8, 8, 8), task="multilabel")
    assert model.task == "multilabel"
    rx.save_model(model, tmp_path / "m")
    assert rx.load_model(tmp_path / "m").task == "multilabel"
    assert rx.create_model("smallcnn-attention", widths=(4, 8, 8, 8), task="multilabel").task == "multilabel"


def test_robustness_shard_of_a_multilabel_model() -> None:
    torch.manual_seed(0)
    model = rx.create_model(
        "smallcnn", num_classes=3, class_names=LABELS, widths=(4, 8, 8, 8), task="multilabel"
    ).eval()
    raw = profile_dict("smoke")
    raw["batch_size"] = 4
    cfg = validate_config(raw)
    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]]).float()
    ids = [f"s{i}" for i in range(6)]
    for cond in (("clean", 0.0), ("pgd", 4 / 255)):
        rows, adv, metrics = robustness_shard("m", model, cfg, cond, images, labels, ids)
        with torch.no_grad():
            logits = model(adv)
        pred = (logits > 0).float()
        assert [r[4] for r in rows] == [label_code(y) for y in labels]
        assert [r[5] for r in rows] == [label_code(p) for p in pred]
        assert [r[6] for r in rows] == (pred == labels).all(dim=1).int().tolist()
        assert len(metrics) == 6 * 3 * 2 and all(r[3] == "" for r in metrics)
        scores = {(r[4], r[5]): r[6] for r in metrics}
        assert scores[("score@B", "s3")] == pytest.approx(float(logits[3, 1]), abs=1e-5)
        assert scores[("label@C", "s5")] == 1.0 and scores[("label@A", "s1")] == 0.0


@pytest.mark.slow
def test_multilabel_audit_end_to_end(tmp_path: Path) -> None:
    data = multilabel_folder(tmp_path / "data")
    ds = FolderDataset(data, size=32)
    assert ds.task == "multilabel" and ds.class_names == LABELS
    raw = profile_dict("smoke")  # every smoke attack (APGD on BCE too), explainer and the manipulation stage
    raw["name"] = "multilabel"
    raw["data"] = {"source": "folder", "path": str(data), "size": 32}
    raw["models"] = [
        {"name": "ml", "arch": "smallcnn", "training": "standard", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
    ]
    raw["training"].update(epochs=1)
    raw["explain"]["n_images"] = 4
    cfg = validate_config(raw)
    result = run_audit(cfg, tmp_path / "run")
    out = result.run_dir
    with Store(out, readonly=True) as store:
        pred = store.table("predictions")
        metrics = store.table("metrics")
        samples = store.table("samples")
        info = json.loads(store.table("models")["info"][0])
    assert info["source"] == "trained"
    assert rx.load_model(info["path"]).task == "multilabel"
    n_test = 16
    clean = pred[pred["condition"] == "clean"]
    assert len(clean) == n_test and clean["label"].between(0, 7).all() and clean["pred"].between(0, 7).all()
    expected = ds.targets()[[i for i, s in enumerate(ds.splits) if s == "test"]]
    by_id = dict(zip(samples["sample_id"], samples["label"], strict=True))
    assert sorted(by_id.values()) == sorted(label_code(y) for y in expected)
    # Exact match = every bit of the bitmask right.
    assert (clean["correct"] == (clean["label"] == clean["pred"]).astype(int)).all()
    # Per-label rows: the CSV's AUC and accuracy equal the metric functions on the stored scores.
    table = pd.read_csv(out / "tables" / "multilabel.csv")
    assert list(table.columns) == MULTILABEL_COLUMNS
    conditions = {("clean", 0.0)} | {(a.name, e) for a in cfg.attacks for e in a.epsilons}
    assert len(table) == len(conditions) * 3 and (table["n"] == n_test).all()
    assert list(table["label"][:3]) == LABELS and table["condition"][0] == "clean"
    rows = metrics[(metrics["explainer"] == "") & (metrics["condition"] == "pgd")]
    wide = rows.pivot_table(index="sample_id", columns="metric", values="value")
    s = torch.tensor(wide[[f"score@{x}" for x in LABELS]].to_numpy())
    y = torch.tensor(wide[[f"label@{x}" for x in LABELS]].to_numpy())
    got = table[table["condition"] == "pgd"].set_index("label").loc[LABELS]
    np.testing.assert_allclose(got["auc"], auc(s, y).numpy(), equal_nan=True)
    np.testing.assert_allclose(got["accuracy"], label_accuracy(s, y).numpy())
    # Exact-match accuracy matches the per-label predictions.
    exact = ((s > 0).double() == y).all(dim=1).double().mean()
    pgd = pred[pred["condition"] == "pgd"]
    assert float(pgd["correct"].mean()) == pytest.approx(float(exact))
    # Explanations ran (target = the highest logit) and the report shows the per-label table.
    align = pd.read_csv(out / "tables" / "alignment.csv")
    assert set(cfg.explain.methods) <= set(align["explainer"])
    html = result.report.read_text()
    assert 'id="multilabel"' in html and "Per-label AUC" in html
    assert "Explanation manipulation" in html


def test_uncertain_and_blank_policies_reach_the_loader(tmp_path: Path) -> None:
    from robustxai.audit._progress import LogProgress
    from robustxai.audit._stages_data import build_datasets

    data = multilabel_folder(tmp_path / "data", n=12)
    lines = (data / "manifest.csv").read_text().splitlines()
    path = lines[1].split(",")[0]
    lines[1] = f"{path},-1,,1,test"  # A uncertain, B blank
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    raw = profile_dict("smoke")
    for uncertain, blank, row in (("zero", "zero", [0, 0, 1]), ("one", "uncertain", [1, 1, 1])):
        raw["data"] = {
            "source": "folder",
            "path": str(data),
            "size": 32,
            "uncertain": uncertain,
            "blank": blank,
        }
        _, test_ds, info = build_datasets(validate_config(raw), tmp_path / "cache", LogProgress())
        assert info["task"] == "multilabel" and info["class_names"] == LABELS
        sample = next(s for s in test_ds if s.id == path)
        assert torch.as_tensor(sample.label).tolist() == row
    raw["data"]["uncertain"] = "ignore"
    _, test_ds, _ = build_datasets(validate_config(raw), tmp_path / "cache", LogProgress())
    assert path not in {s.id for s in test_ds}
