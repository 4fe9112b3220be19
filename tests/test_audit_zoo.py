"""A user's own backbone in the audit: zoo names in the config, evaluation as built, a linear probe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from robustxai import ConfigError, UnknownNameError
from robustxai._pipeline import run_audit
from robustxai.audit._config import AuditConfig, profile_dict, validate_config
from robustxai.audit._progress import LogProgress
from robustxai.audit._runner import check_config
from robustxai.audit._stages_data import build_datasets
from robustxai.audit._stages_models import get_models
from robustxai.data import SyntheticFracture
from robustxai.data._folder import write_folder
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._config, robustxai.audit._progress, "
    "robustxai.audit._runner, robustxai.audit._stages_data, robustxai.audit._stages_models, "
    "robustxai.data._folder"
)


def _checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised torchvision ResNet-18 (ImageNet head) saved as safetensors."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _config(tmp_path: Path, models: list[dict[str, Any]], **data: Any) -> AuditConfig:
    """The smoke profile on a small folder of 32 px images, FGSM + PGD-2, two explainers, no manipulation."""
    raw = profile_dict("smoke")
    raw.pop("manipulation")
    raw["name"] = "zoo"
    raw["cache_dir"] = str(tmp_path / "cache")
    raw["data"] = {"source": "folder", "path": str(tmp_path / "data"), "size": 32, "n_test": 8, **data}
    raw["models"] = models
    raw["attacks"] = [
        {"name": "fgsm", "epsilons": [2 / 255]},
        {"name": "pgd", "epsilons": [2 / 255], "params": {"steps": 2, "step_size": 1 / 255}},
    ]
    raw["explain"].update(methods=["saliency", "gradcam"], n_images=4, attacks=["pgd"])
    raw["training"].update(epochs=1, batch_size=16)
    raw["sanity"] = {"n_images": 4}
    raw["batch_size"] = 16
    return validate_config(raw)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(SyntheticFracture(24, size=32, seed=3), tmp_path / "data")


def test_zoo_names_pass_check_config(tmp_path: Path, folder: Path) -> None:
    ckpt = _checkpoint(tmp_path / "r18.safetensors")
    kwargs = {"head": "linear", "freeze_backbone": True, "checkpoint": str(ckpt), "trust_checkpoint": False}
    cfg = _config(tmp_path, [{"name": "r18", "arch": "torchvision:resnet18", "arch_kwargs": kwargs}])
    assert check_config(cfg) == []
    bad = _config(tmp_path, [{"name": "r18", "arch": "torchvision:resnet18", "arch_kwargs": {"hed": "x"}}])
    with pytest.raises(UnknownNameError, match="unknown keyword.*hed.*it accepts: .*freeze_backbone"):
        check_config(bad)
    with pytest.raises(UnknownNameError, match="model family"):
        check_config(_config(tmp_path, [{"name": "x", "arch": "nozoo:resnet18"}]))
    missing = {"checkpoint": str(tmp_path / "missing.pt")}
    with pytest.raises(ConfigError, match="checkpoint not found"):
        check_config(_config(tmp_path, [{"name": "x", "arch": "timm:resnet10t", "arch_kwargs": missing}]))
    for key in ("task", "num_classes"):
        reserved = {"name": "x", "arch": "torchvision:resnet18", "arch_kwargs": {key: 2}}
        with pytest.raises(ConfigError, match=f"may not set {key}"):
            check_config(_config(tmp_path, [reserved]))
    warned = check_config(_config(tmp_path, [{"name": "x", "arch": "smallcnn", "training": "none"}]))
    assert any("evaluates random weights" in w for w in warned)


@pytest.mark.slow
def test_training_none_key_follows_the_checkpoint_bytes(tmp_path: Path, folder: Path) -> None:
    ckpt = _checkpoint(tmp_path / "r18.safetensors", seed=0)
    model_cfg = {
        "name": "r18",
        "arch": "torchvision:resnet18",
        "training": "none",
        "arch_kwargs": {"head": "linear", "checkpoint": str(ckpt)},
    }
    cfg = _config(tmp_path, [model_cfg])
    train_ds, _, info = build_datasets(cfg, tmp_path / "cache", LogProgress())
    models, infos = get_models(cfg, train_ds, info, tmp_path / "cache", LogProgress())
    first = infos["r18"]
    assert first["source"] == "checkpoint file" and first["training"] == "none"
    assert len(first["weights_sha256"]) == 64
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    got = models["r18"].net.state_dict()
    torch.testing.assert_close(got["conv1.weight"], net.state_dict()["conv1.weight"])
    assert models["r18"].in_channels == 1 and models["r18"].class_names == ["normal", "fracture"]
    # Same bytes, new modification time: the same key. New bytes: a new key.
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _, again = get_models(cfg, train_ds, info, tmp_path / "cache", LogProgress())
    assert again["r18"]["cache_key"] == first["cache_key"]
    _checkpoint(ckpt, seed=1)
    _, changed = get_models(cfg, train_ds, info, tmp_path / "cache", LogProgress())
    assert changed["r18"]["cache_key"] != first["cache_key"]
    assert changed["r18"]["weights_sha256"] != first["weights_sha256"]


@pytest.mark.slow
def test_audit_of_a_zoo_checkpoint_as_built_and_as_a_linear_probe(tmp_path: Path, folder: Path) -> None:
    ckpt = _checkpoint(tmp_path / "r18.safetensors")
    backbone: dict[str, Any] = {"head": "linear", "checkpoint": str(ckpt)}
    models: list[dict[str, Any]] = [
        {"name": "as-built", "arch": "torchvision:resnet18", "training": "none", "arch_kwargs": backbone},
        {
            "name": "probe",
            "arch": "torchvision:resnet18",
            "training": "standard",
            "epochs": 1,
            "arch_kwargs": {**backbone, "freeze_backbone": True},
        },
    ]
    cfg = _config(tmp_path, models)
    result = run_audit(cfg, tmp_path / "run")
    rob = pd.read_csv(result.run_dir / "tables" / "robustness.csv")
    assert set(rob["model"]) == {"as-built", "probe"} and (rob["n"] == 8).all()
    align = pd.read_csv(result.run_dir / "tables" / "alignment.csv")
    assert {"saliency", "gradcam"} <= set(align["explainer"])
    with Store(result.run_dir, readonly=True) as store:
        info = {r["model"]: json.loads(r["info"]) for r in store.table("models").to_dict("records")}
    assert info["as-built"]["source"] == "checkpoint file" and info["probe"]["source"] == "trained"
    assert (
        info["probe"]["epochs_run"] == 1
        and info["probe"]["weights_sha256"] == info["as-built"]["weights_sha256"]
    )
    # The linear probe changed the head only: its backbone is the checkpoint's.
    probe_dir = Path(info["probe"]["path"])
    from robustxai.models import load_model

    probe = load_model(probe_dir)
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).state_dict()
    torch.testing.assert_close(probe.net.state_dict()["layer4.1.conv2.weight"], ref["layer4.1.conv2.weight"])
    assert "zoo" in result.report.read_text()


def test_data_options_reach_the_folder_loader(tmp_path: Path, folder: Path) -> None:
    """channels, transforms, manifest and an external annotations file are applied by build_datasets."""
    from robustxai.data import FolderDataset, create_transform

    base = FolderDataset(folder)
    first = base.paths[0]
    (folder / "points.csv").write_text(f"image,x,y\n{first},5,7\n")
    (tmp_path / "mine.csv").write_text((folder / "manifest.csv").read_text())
    options = {
        "channels": 3,
        "transforms": [{"name": "highpass", "sigma": 2.0}],
        "manifest": str(tmp_path / "mine.csv"),
        "annotations": "points.csv",
        "annotation_format": "points_csv",
        "n_test": 12,
    }
    model = {"name": "m", "arch": "smallcnn"}
    cfg = _config(tmp_path, [model], **options)
    assert check_config(cfg) == []
    train_ds, test_ds, info = build_datasets(cfg, tmp_path / "cache", LogProgress())
    assert info["channels"] == 3 and info["task"] == "multiclass"
    samples = {s.id: s for s in [*train_ds, *test_ds]}
    s = samples[first]
    assert s.image.shape == (3, 32, 32)
    expected = create_transform("highpass", sigma=2.0)(base[0].image.expand(3, -1, -1).clone())
    torch.testing.assert_close(s.image, expected)
    assert s.truth.points.tolist() == [[5.0, 7.0]] and s.truth.mask is None  # points.csv replaced the JSON
    assert all(t.truth.empty for k, t in samples.items() if k != first)
    # The manifest outside the folder is part of the fingerprint that keys cached models.
    before = info["fingerprint"]
    (tmp_path / "mine.csv").write_text((folder / "manifest.csv").read_text() + "\n")
    assert build_datasets(cfg, tmp_path / "cache", LogProgress())[2]["fingerprint"] != before
    with pytest.raises(ConfigError, match="data.transforms: unknown transform 'lowpass'"):
        check_config(_config(tmp_path, [model], transforms=["lowpass"]))
    with pytest.raises(Exception, match="need.*data.source = 'folder'"):
        validate_config({**profile_dict("smoke"), "data": {"manifest": "x.csv"}})
