"""Tests of the on-disk folder format: writer, reader and their round trip."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustxai import DataError
from robustxai.data import SyntheticFracture
from robustxai.data._folder import FolderDataset, write_folder
from robustxai.data._truth import resize_mask

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._annotations, robustxai.data._folder, robustxai.data._truth"


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_round_trip_synthetic(tmp_path: Path) -> None:
    src = SyntheticFracture(12, size=32, seed=1)
    calls: list[int] = []
    root = write_folder(src, tmp_path / "ds", progress=calls.append)
    assert calls == [1] * 12
    assert (root / "manifest.csv").is_file() and (root / "annotations.json").is_file()
    doc = json.loads((root / "annotations.json").read_text())
    assert doc["format"] == "robustxai-annotations/1" and doc["class_names"] == ["normal", "fracture"]
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == [src.class_names[y] for y in src.labels()]
    assert all(r["path"].startswith(r["label"] + "/") for r in rows)

    back = FolderDataset(root)
    assert back.class_names == src.class_names
    assert back.labels() == src.labels()
    for i in range(len(src)):
        a, b = src[i], back[i]
        assert b.image.shape == a.image.shape and b.image.dtype == torch.float32
        assert float((a.image - b.image).abs().max()) <= 0.5 / 255 + 1e-6
        assert b.label == a.label
        assert a.truth.mask is not None and b.truth.mask is not None
        assert np.array_equal(a.truth.mask, b.truth.mask)
        assert a.truth.points is not None and b.truth.points is not None
        np.testing.assert_allclose(b.truth.points, a.truth.points)
        assert b.truth.empty == a.truth.empty
        assert Path(b.id).stem == a.id


def test_split_column_and_filter(tmp_path: Path) -> None:
    src = SyntheticFracture(6, size=16, seed=0)
    splits = ["train", "train", "test", "train", "test", "test"]
    root = write_folder(src, tmp_path, split=splits)
    test = FolderDataset(root, split="test")
    assert len(test) == 3
    assert test.labels() == [src.labels()[i] for i in (2, 4, 5)]
    assert test.class_names == ["normal", "fracture"]
    with pytest.raises(DataError):
        FolderDataset(root, split="val")


def test_resize_moves_truth(tmp_path: Path) -> None:
    src = SyntheticFracture(8, size=32, seed=2, fracture_rate=1.0)
    back = FolderDataset(write_folder(src, tmp_path), size=64)
    s = back[0]
    assert s.image.shape == (1, 64, 64)
    assert s.truth.mask is not None and s.truth.mask.shape == (64, 64)
    assert s.truth.points is not None
    np.testing.assert_allclose(s.truth.points, (src[0].truth.points + 0.5) * 2 - 0.5)  # type: ignore[operator]
    assert FolderDataset(tmp_path, channels=3)[0].image.shape == (3, 32, 32)


def test_class_subfolders_without_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 2), ("ant", 3)):
        for k in range(n):
            _png(tmp_path / cls / f"{k}.png", rng.integers(0, 256, (10, 12), dtype=np.uint8))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(tmp_path / "cat" / "rgb.jpg")
    ds = FolderDataset(tmp_path)
    assert ds.class_names == ["ant", "cat"]
    assert ds.labels() == [0, 0, 0, 1, 1, 1]
    s = ds[3]
    assert s.image.shape == (1, 10, 12)
    assert s.truth.empty and s.truth.mask is None
    assert ds[5].image.shape == (1, 10, 12)  # the RGB JPEG converted to gray
    with pytest.raises(DataError):
        FolderDataset(tmp_path, split="test")


def test_sixteen_bit_png(tmp_path: Path) -> None:
    a = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    _png(tmp_path / "x" / "a.png", a)
    with Image.open(tmp_path / "x" / "a.png") as im:
        assert im.mode.startswith("I")
    img = FolderDataset(tmp_path)[0].image
    assert img.dtype == torch.float32
    np.testing.assert_allclose(img[0].numpy(), a / 65535.0, atol=1e-7)


def test_empty_folder_error(tmp_path: Path) -> None:
    (tmp_path / "normal").mkdir()
    with pytest.raises(DataError, match="no images found under"):
        FolderDataset(tmp_path)
    with pytest.raises(DataError, match="not found"):
        FolderDataset(tmp_path / "missing")


def test_unknown_label_in_manifest_names_the_row(tmp_path: Path) -> None:
    root = write_folder(SyntheticFracture(3, size=16), tmp_path)
    lines = (root / "manifest.csv").read_text().splitlines()
    lines[2] = lines[2].replace("normal", "zebra").replace("fracture", "zebra")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="row 3"):
        FolderDataset(root)


def test_manifest_missing_file(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("path,label\nnope.png,a\n")
    with pytest.raises(DataError, match="row 2"):
        FolderDataset(tmp_path, manifest="list.csv")


def test_wrong_size_mask_and_outside_points_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _png(tmp_path / "pos" / "a.png", np.full((8, 10), 128, dtype=np.uint8))
    _png(tmp_path / "masks" / "a.png", np.full((5, 5), 255, dtype=np.uint8))
    doc = {
        "format": "robustxai-annotations/1",
        "images": {"pos/a.png": {"points": [[1, 2], [50, 3], [-3, 1]], "mask": "masks/a.png"}},
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    ds = FolderDataset(tmp_path)
    assert ds.class_names == ["pos"]  # the masks folder is not a class
    with caplog.at_level(logging.WARNING, logger="robustxai.data._folder"):
        s = ds[0]
    assert s.truth.mask is None
    assert s.truth.points is not None
    np.testing.assert_array_equal(s.truth.points, [[1.0, 2.0]])
    text = caplog.text
    assert "mask dropped" in text and "outside" in text


def test_bad_arguments(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DataError):
        FolderDataset(tmp_path, channels=2)
    with pytest.raises(DataError):
        FolderDataset(tmp_path, size=0)
    with pytest.raises(DataError):
        FolderDataset(tmp_path, manifest="missing.csv")
    (tmp_path / "annotations.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError):
        FolderDataset(tmp_path)


def test_sixteen_bit_full_range_ramp_and_three_channels(tmp_path: Path) -> None:
    ramp = (np.arange(32 * 32, dtype=np.uint32) * 64).astype(np.uint16).reshape(32, 32)  # 1024 levels
    ramp[-1, -1] = 65535
    _png(tmp_path / "x" / "ramp.png", ramp)
    gray = FolderDataset(tmp_path)[0].image
    assert torch.unique(gray).numel() == 1024  # more levels than 8 bits could hold survive
    assert float(gray.min()) == 0.0 and float(gray.max()) == 1.0
    np.testing.assert_allclose(gray[0].numpy(), ramp / 65535.0, atol=1e-7)
    rgb = FolderDataset(tmp_path, channels=3)[0].image
    assert rgb.shape == (3, 32, 32) and bool((rgb == gray.expand(3, -1, -1)).all())
    _png(tmp_path / "y" / "g.png", np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    rgb8 = FolderDataset(tmp_path, channels=3)[1].image
    assert bool((rgb8[0] == rgb8[1]).all()) and bool((rgb8[1] == rgb8[2]).all())


def test_external_annotations_move_with_the_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("robustxai.data._annotations")
    _png(tmp_path / "pos" / "a.png", np.full((8, 10), 100, dtype=np.uint8))
    _png(tmp_path / "neg" / "b.png", np.full((8, 10), 50, dtype=np.uint8))
    (tmp_path / "points.csv").write_text("image,x,y\na.png,2,3\na.png,40,3\nghost.png,1,1\n")
    with caplog.at_level(logging.WARNING, logger="robustxai.data._folder"):
        ds = FolderDataset(tmp_path, size=20, annotations="points.csv")
    s = next(s for s in ds if s.id == "pos/a.png")
    assert s.truth.points is not None
    np.testing.assert_allclose(s.truth.points, [[(2 + 0.5) * 2 - 0.5, (3 + 0.5) * 2.5 - 0.5]])
    assert next(s for s in ds if s.id == "neg/b.png").truth.empty
    assert any("ghost" in w for w in ds.warnings) and any("a.png" in w for w in ds.warnings)
    assert all(caplog.text.count(w) == 1 for w in ds.warnings)  # each warning logged once
    masks = tmp_path / "masks"  # not scanned as a class folder
    mask = np.zeros((8, 10), dtype=np.uint8)
    mask[2:6, 4:8] = 255
    _png(masks / "a.png", mask)
    ds2 = FolderDataset(tmp_path, size=16, annotations=masks, annotation_format="mask_png")
    m = next(s for s in ds2 if s.id == "pos/a.png").truth.mask
    assert m is not None and m.shape == (16, 16)
    np.testing.assert_array_equal(m, resize_mask(mask > 0, (16, 16)))
    with pytest.raises(DataError, match="annotations not found"):
        FolderDataset(tmp_path, annotations="missing.csv")
