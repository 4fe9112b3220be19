"""Tests of multi-label (CheXpert-style) manifests, the uncertain-label policy and multi-label batches."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustxai import DataError
from robustxai._validate import check_multilabel
from robustxai.data import Sample, SubsetDataset, Truth, stack_images
from robustxai.data._folder import FolderDataset, write_folder

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._validate, robustxai.data._folder"

LABELS = ["Atelectasis", "Cardiomegaly", "Effusion"]
CSV = """path,Atelectasis,Cardiomegaly,Effusion,split
img/a.png,1,0,-1,train
img/b.png,0,,1.0,train
img/c.png,-1.0,1,0,test
img/d.png,0.0,0,,test
"""


def _folder(root: Path, csv: str = CSV, names: tuple[str, ...] = ("a", "b", "c", "d")) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(names):
        Image.fromarray(np.full((6, 8), 40 * k, dtype=np.uint8)).save(root / "img" / f"{n}.png")
    (root / "manifest.csv").write_text(csv)
    return root


def test_default_policy_uncertain_is_zero(tmp_path: Path) -> None:
    ds = FolderDataset(_folder(tmp_path))
    assert ds.task == "multilabel" and ds.class_names == LABELS and len(ds) == 4
    expected = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(ds.targets(), expected)
    s = ds[0]
    assert isinstance(s.label, torch.Tensor) and s.label.dtype == torch.float32 and s.label.shape == (3,)
    assert s.meta["uncertain"] == ["Effusion"] and ds[1].meta["uncertain"] == []  # blank = not mentioned
    images, labels = stack_images(ds[0:4])
    assert images.shape == (4, 1, 6, 8)
    torch.testing.assert_close(check_multilabel(labels, 4, num_labels=3), expected)
    assert ds.warnings == []
    with pytest.raises(DataError, match="targets"):
        ds.labels()


def test_uncertain_one_and_blank_policy(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    one = FolderDataset(root, uncertain="one").targets()
    torch.testing.assert_close(one, torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]]).float())
    blank_too = FolderDataset(root, uncertain="one", blank="uncertain").targets()
    torch.testing.assert_close(blank_too, torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]]).float())


def test_uncertain_ignore_leaves_rows_out_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="robustxai.data._folder"):
        ds = FolderDataset(root, uncertain="ignore")
    assert [s.id for s in ds] == ["img/b.png", "img/d.png"]
    assert len(ds.warnings) == 2 and all("uncertain='ignore'" in w for w in ds.warnings)
    assert "img/a.png" in ds.warnings[0] and "Effusion" in ds.warnings[0]
    assert caplog.text.count("left out") == 2
    test = FolderDataset(root, uncertain="ignore", split="test")
    assert [s.id for s in test] == ["img/d.png"] and len(test.warnings) == 1  # other splits do not warn


def test_split_subset_and_class_name_order(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    test = FolderDataset(root, split="test")
    torch.testing.assert_close(test.targets(), torch.tensor([[0, 1, 0], [0, 0, 0]]).float())
    sub = SubsetDataset(FolderDataset(root), [2, 0])
    assert sub.task == "multilabel"
    torch.testing.assert_close(sub.targets(), torch.tensor([[0, 1, 0], [1, 0, 0]]).float())
    reordered = FolderDataset(root, class_names=["Effusion", "Atelectasis"])
    assert reordered.class_names == ["Effusion", "Atelectasis"]
    torch.testing.assert_close(reordered.targets()[:2], torch.tensor([[0, 1], [1, 0]]).float())


def test_chexpert_style_csv_needs_label_columns(tmp_path: Path) -> None:
    csv = "Path,Sex,Age,Atelectasis,Effusion\nimg/a.png,Female,68,1.0,-1.0\nimg/b.png,Male,41,,0.0\n"
    root = _folder(tmp_path, csv, ("a", "b"))
    with pytest.raises(DataError, match=r"row 2 \(img/a.png\): column 'Sex'.*class_names="):
        FolderDataset(root)
    ds = FolderDataset(root, class_names=["Atelectasis", "Effusion"])
    torch.testing.assert_close(ds.targets(), torch.tensor([[1, 0], [0, 0]]).float())
    with pytest.raises(DataError, match=r"label column\(s\) \['Cardiomegaly'\] not in the header"):
        FolderDataset(root, class_names=["Atelectasis", "Cardiomegaly"])


def test_bad_multilabel_manifests(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    with pytest.raises(DataError, match="uncertain must be one of zero, one, ignore"):
        FolderDataset(root, uncertain="maybe")
    with pytest.raises(DataError, match="blank must be one of"):
        FolderDataset(root, blank="one")
    (root / "manifest.csv").write_text("path,Atelectasis\nimg/a.png,2\n")
    with pytest.raises(DataError, match="row 2 .*must hold 1, 0, -1 or nothing"):
        FolderDataset(root)
    (root / "manifest.csv").write_text("path,split\nimg/a.png,train\n")
    with pytest.raises(DataError, match="'label' column .* or one column per label"):
        FolderDataset(root)
    (root / "manifest.csv").write_text("path,Atelectasis\n,1\n")
    with pytest.raises(DataError, match="row 2: empty path"):
        FolderDataset(root)
    (root / "manifest.csv").write_text("path,Atelectasis\nimg/zz.png,1\n")
    with pytest.raises(DataError, match="row 2: image file not found"):
        FolderDataset(root)
    (root / "manifest.csv").write_text("file,label\nimg/a.png,x\n")
    with pytest.raises(DataError, match="'path' column"):
        FolderDataset(root)


def test_stack_images_label_kinds() -> None:
    img = torch.zeros(1, 2, 2)
    a = Sample(img, torch.tensor([1.0, 0.0]), Truth(), "a")
    b = Sample(img, 1, Truth(), "b")
    c = Sample(img, torch.tensor([1.0, 0.0, 1.0]), Truth(), "c")
    _, y = stack_images([b, b])
    assert y.dtype == torch.long and y.tolist() == [1, 1]
    with pytest.raises(DataError, match="mix"):
        stack_images([a, b])
    with pytest.raises(DataError, match="different label counts"):
        stack_images([a, c])
    with pytest.raises(DataError, match="no samples"):
        stack_images([])


def test_write_folder_round_trip_multilabel(tmp_path: Path) -> None:
    src = FolderDataset(_folder(tmp_path / "src"), uncertain="one")
    out = write_folder(src, tmp_path / "out", split=["train", "train", "test", "test"])
    header = (out / "manifest.csv").read_text().splitlines()[0]
    assert header == "path,Atelectasis,Cardiomegaly,Effusion,split"
    back = FolderDataset(out)
    assert back.task == "multilabel" and back.class_names == LABELS
    torch.testing.assert_close(back.targets(), src.targets())
    torch.testing.assert_close(back[3].image, src[3].image)
    assert len(FolderDataset(out, split="test")) == 2
