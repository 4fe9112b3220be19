"""The path a real data set takes: a folder on disk (written by `data synth`) audited with a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import robustxai as rx
from robustxai.audit.store import Store
from robustxai.cli import app
from robustxai.data.base import SubsetDataset, split_indices
from robustxai.data.folder import FolderDataset, write_folder
from robustxai.data.synthetic import SyntheticFracture

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
    from robustxai.audit.config import load_config
    from robustxai.audit.progress import LogProgress
    from robustxai.audit.stages_data import build_datasets

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
    from robustxai.audit.config import load_config
    from robustxai.audit.progress import LogProgress
    from robustxai.audit.stages_data import build_datasets

    splits = ["test" if i % 4 == 0 else "train" for i in range(16)]
    write_folder(SyntheticFracture(16, size=32, seed=4), tmp_path / "d", split=splits)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nsource = "folder"\npath = "{tmp_path / "d"}"\nsize = 32\n')
    train_ds, test_ds, info = build_datasets(
        load_config(cfg, profile="smoke"), tmp_path / "cache", LogProgress()
    )
    assert info["split"] == "manifest split column" and (len(train_ds), len(test_ds)) == (12, 4)
    assert not {s.id for s in train_ds} & {s.id for s in test_ds}
