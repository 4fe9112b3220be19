"""The path a real data set takes: a folder on disk (written by `data synth`) audited with a checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape as html_escape
from PIL import Image
from typer.testing import CliRunner

import robustxai as rx
from robustxai.cli import app
from robustxai.data import SubsetDataset, SyntheticFracture, split_indices
from robustxai.data._folder import FolderDataset, write_folder
from robustxai.data._writer import ANNOTATION_FORMAT
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._config, robustxai.audit._progress, "
    "robustxai.audit._stages_data, robustxai.data._folder, robustxai.data._writer"
)

runner = CliRunner()


def test_split_indices_is_deterministic_and_disjoint() -> None:
    train, test = split_indices(50, 0.2, seed=3)
    assert (train, test) == split_indices(50, 0.2, seed=3)
    assert len(test) == 10 and not set(train) & set(test) and sorted(train + test) == list(range(50))


def test_subset_dataset(tmp_path: Path) -> None:
    base = SyntheticFracture(10, size=32)
    sub = SubsetDataset(base, [3, 1])
    assert len(sub) == 2 and sub[0].id == base[3].id and sub.labels() == [base[3].label, base[1].label]


@pytest.mark.slow
def test_folder_audit_with_checkpoint_and_random_split(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_folder(SyntheticFracture(60, size=32, seed=7), data)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=FolderDataset(data).class_names)
    rx.save_model(model, tmp_path / "ckpt")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'name = "folder"\n[data]\nsource = "folder"\npath = "{data}"\nsize = 32\nn_test = 20\n'
        f'[[models]]\nname = "mine"\ncheckpoint = "{tmp_path / "ckpt"}"\n'
        '[[models]]\nname = "tuned"\narch = "smallcnn"\ninit_from = "mine"\nepochs = 1\n'
        "arch_kwargs = { widths = [4, 8, 8, 8] }\n"
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["audit", str(cfg), "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rob = pd.read_csv(out / "tables" / "robustness.csv")
    assert set(rob["model"]) == {"mine", "tuned"} and (rob["n"] == 20).all()
    with Store(out) as store:
        dataset = store.get_meta("dataset")
        models = store.table("models")
    assert dataset["split"] == "random 33% hold-out (seed 0)" and dataset["n_test"] == 20
    assert '"init_from": "mine"' in models.set_index("model").loc["tuned", "info"]


def test_checkpoint_with_other_classes_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_folder(SyntheticFracture(12, size=32), data)
    rx.save_model(rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["a", "b"]), tmp_path / "ckpt")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[data]\nsource = "folder"\npath = "{data}"\nsize = 32\nn_test = 4\n'
        f'[[models]]\nname = "mine"\ncheckpoint = "{tmp_path / "ckpt"}"\n'
    )
    result = runner.invoke(app, ["audit", str(cfg), "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "predicts ['a', 'b']" in result.output


def test_separate_test_folder_uses_the_training_class_order(tmp_path: Path) -> None:
    from robustxai.audit import load_config
    from robustxai.audit._progress import LogProgress
    from robustxai.audit._stages_data import build_datasets

    write_folder(SyntheticFracture(12, size=32, seed=1), tmp_path / "train")
    test = tmp_path / "test"
    write_folder(SyntheticFracture(12, size=32, seed=2), test)
    (test / "annotations.json").unlink()  # without it, class folders would sort as [fracture, normal]
    (test / "manifest.csv").unlink()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[data]\nsource = "folder"\npath = "{tmp_path / "train"}"\ntest_path = "{test}"\nsize = 32\n'
    )
    train_ds, test_ds, info = build_datasets(
        load_config(cfg, profile="smoke"), tmp_path / "cache", LogProgress()
    )
    assert test_ds.class_names == train_ds.class_names == ["normal", "fracture"]
    truth = SyntheticFracture(12, size=32, seed=2)
    by_id = {s.id.rsplit("/", 1)[-1]: s.label for s in test_ds}
    assert all(by_id[f"{truth[i].id}.png"] == truth[i].label for i in range(12))
    assert info["fingerprint"]


def test_manifest_split_column_is_used(tmp_path: Path) -> None:
    from robustxai.audit import load_config
    from robustxai.audit._progress import LogProgress
    from robustxai.audit._stages_data import build_datasets

    splits = ["test" if i % 4 == 0 else "train" for i in range(16)]
    write_folder(SyntheticFracture(16, size=32, seed=4), tmp_path / "d", split=splits)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nsource = "folder"\npath = "{tmp_path / "d"}"\nsize = 32\n')
    train_ds, test_ds, info = build_datasets(
        load_config(cfg, profile="smoke"), tmp_path / "cache", LogProgress()
    )
    assert info["split"] == "manifest split column" and (len(train_ds), len(test_ds)) == (12, 4)
    assert not {s.id for s in train_ds} & {s.id for s in test_ds}


def _write_bad_truth(test: Path) -> dict[str, str]:
    """Replace the test folder's truth by a hand-made one with bad samples; return the role of each image.

    Roles: ``good`` (8x8 mask, two points), ``none`` (no entry, or an entry without any finding: a negative
    case), ``big_mask`` (a 20x20 mask PNG for a 32x32 image, plus two valid points), ``points_out`` (a valid
    mask, every point outside the image) and ``one_out`` (good, plus one point outside).
    """
    paths = FolderDataset(test).paths
    roles = dict(
        zip(paths, ["good", "none", "big_mask", "points_out", "none", "good", "one_out", "none"], strict=True)
    )
    square = np.zeros((32, 32), dtype=np.uint8)
    square[8:16, 8:16] = 255
    images: dict[str, dict[str, object]] = {}
    for i, (rel, role) in enumerate(roles.items()):
        if role == "none":
            if i == 4:
                images[rel] = {"points": [], "mask": None}  # annotated, no finding
            continue
        mask_rel = f"masks/{rel}"
        (test / mask_rel).parent.mkdir(parents=True, exist_ok=True)
        mask = np.full((20, 20), 255, dtype=np.uint8) if role == "big_mask" else square
        Image.fromarray(mask).save(test / mask_rel)
        points = {"points_out": [[40.0, 5.0], [-3.0, 10.0]], "one_out": [[10.0, 10.0], [33.0, 1.0]]}
        images[rel] = {"points": points.get(role, [[10.0, 10.0], [12.0, 14.0]]), "mask": mask_rel}
    doc = {"format": ANNOTATION_FORMAT, "class_names": ["normal", "fracture"], "images": images}
    (test / "annotations.json").write_text(json.dumps(doc))
    return roles


def test_audit_with_bad_ground_truth_leaves_samples_out_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from robustxai._pipeline import run_audit
    from robustxai.audit._config import profile_dict, validate_config
    from robustxai.audit._progress import LogProgress

    write_folder(SyntheticFracture(8, size=32, seed=1), tmp_path / "train")
    test = tmp_path / "test"
    write_folder(SyntheticFracture(8, size=32, seed=2), test)
    roles = _write_bad_truth(test)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["normal", "fracture"])
    rx.save_model(model, tmp_path / "ckpt")
    raw = profile_dict("smoke")
    raw.pop("manipulation")
    raw.update(name="bad-truth", cache_dir=str(tmp_path / "cache"), batch_size=8)
    raw["data"] = {"source": "folder", "path": str(tmp_path / "train"), "test_path": str(test), "size": 32}
    raw["models"] = [{"name": "mine", "checkpoint": str(tmp_path / "ckpt")}]
    raw["attacks"] = [{"name": "pgd", "epsilons": [2 / 255], "params": {"steps": 2, "step_size": 1 / 255}}]
    raw["explain"].update(methods=["saliency"], attacks=["pgd"], n_images=8)
    raw["sanity"] = {"enabled": False}
    with caplog.at_level(logging.WARNING):
        result = run_audit(validate_config(raw), tmp_path / "run", progress=LogProgress())

    # The run completes, and each bad sample is reported once by name with what was dropped.
    assert result.report.is_file()
    by_role = {role: [rel for rel, r in roles.items() if r == role] for role in set(roles.values())}
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    (big,), (out,), (one,) = by_role["big_mask"], by_role["points_out"], by_role["one_out"]
    expected = {
        f"{big}: mask dropped: its size (20, 20) differs from the image's (32, 32)",
        f"{out}: 2 point(s) outside the 32x32 image dropped",
        f"{one}: 1 point(s) outside the 32x32 image dropped",
    }
    assert expected <= set(logged)
    assert all(sum(line == e for line in logged) == 1 for e in expected)
    # An image without any annotation is named when images of its class have findings (a forgotten
    # annotation); the one annotated as having no finding is a negative case and is not.
    good = {rel for rel, r in roles.items() if r == "good"}
    with_findings = {rel.split("/")[0] for rel, r in roles.items() if r != "none"}
    unannotated = [rel for i, (rel, r) in enumerate(roles.items()) if r == "none" and i != 4]
    missing = {rel for rel in unannotated if rel.split("/")[0] in with_findings}
    assert missing  # the data set has such an image, so the rule is exercised
    for rel in missing:
        cls = rel.split("/")[0]
        expected.add(
            f"{rel}: no ground truth, although other images with class {cls!r} are annotated; "
            "left out of the alignment metrics"
        )
    assert expected <= set(logged)
    assert all(sum(line == e for line in logged) == 1 for e in expected)
    quiet = good | (set(by_role["none"]) - missing)
    assert not any(rel in line for rel in quiet for line in logged)
    # ... and they are part of the run's record: the store, the returned warnings and the report
    with Store(tmp_path / "run") as store:
        recorded = store.warnings()
    assert set(recorded.loc[recorded["code"] == "truth", "message"]) == expected
    assert expected <= set(result.warnings)

    # Only annotated images are explained; the undefined values are NaN for exactly the bad samples.
    with Store(tmp_path / "run") as store:
        metrics = store.table("metrics")
    maps = metrics[metrics["explainer"] != ""]
    assert set(maps["sample_id"]) == set(good) | {big, out, one}
    nan = maps[maps["value"].isna()]
    point_metrics = {f"point_coverage@{k}" for k in (5, 15, 25, 85)}
    mask_metrics = {"topk_iou@15", "rmse@15", "relevance_mass"}
    assert set(zip(nan["sample_id"], nan["metric"], strict=True)) == {(out, m) for m in point_metrics} | {
        (big, m) for m in mask_metrics
    }

    # alignment.csv: the left-out samples are not in n, and the means are over the defined values only.
    ali = pd.read_csv(tmp_path / "run" / "tables" / "alignment.csv")
    assert set(ali["condition"]) == {"clean", "pgd"} and set(ali["explainer"]) == {"saliency", "random"}
    n_expected = {m: 4 for m in point_metrics | mask_metrics}
    n_expected |= {"pointing_game": 5, **{f"mask_area@{k}": 5 for k in (5, 15, 25, 85)}}
    assert set(ali["metric"]) == set(n_expected)
    wrong_n = ali[ali["n"] != ali["metric"].map(n_expected)]
    assert wrong_n.empty, wrong_n[["condition", "explainer", "metric", "n"]].to_string()
    means = maps.groupby(["condition", "explainer", "metric"])["value"].mean()  # pandas skips NaN
    for row in ali.itertuples():
        assert row.value == pytest.approx(means[(row.condition, row.explainer, row.metric)], abs=1e-12)
    stab = pd.read_csv(tmp_path / "run" / "tables" / "stability.csv")
    assert (stab["n"] == 5).all()

    # The report counts them: 7 undefined values in each of 2 conditions x 2 explainers.
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "28 per-image metric values were undefined" in html
    # ... with where they are and why: 4 point-coverage values and 3 mask metrics per condition × explainer
    assert "saliency / point_coverage 8 (no expert point)" in html
    assert "random / rmse 2 (no expert mask)" in html and "8 more in 4 other pairs" in html
    assert all(html_escape(line) in html for line in expected)
    assert "n = 4 images (1 undefined, left out)" in html and 'title="n = 5 images"' in html
