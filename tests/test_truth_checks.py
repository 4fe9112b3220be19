"""Per-sample ground-truth warnings of the audit: which unannotated images are named; how lists cap them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robustxai.audit._plan import AuditData, truth_kind
from robustxai.audit._truth_checks import loader_warnings, missing_truth
from robustxai.data import ImageDataset, Sample, SubsetDataset, SyntheticFracture, Truth
from robustxai.results._store import TRUTH_CODE, warning_lines

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._plan, robustxai.audit._truth_checks, robustxai.data._folder, "
    "robustxai.results._store"
)


class _Listed(ImageDataset):
    """Samples given as (label, truth) pairs, with loader warnings of its own."""

    def __init__(self, rows: list[tuple[int | list[float], Truth]], class_names: list[str]) -> None:
        self.rows = rows
        self.class_names = class_names
        self.task = "multilabel" if isinstance(rows[0][0], list) else "multiclass"
        self.warnings = ["a.png: mask dropped: its size (3, 3) differs from the image's (8, 8)"]

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, i: int) -> Sample:
        label, truth = self.rows[i]
        y = torch.tensor(label, dtype=torch.float32) if isinstance(label, list) else label
        return Sample(image=torch.zeros(1, 8, 8), label=y, truth=truth, id=f"img{i}.png")


FINDING = Truth(points=np.array([[2.0, 3.0]]))
NONE = Truth(points=np.zeros((0, 2)))  # annotated: no finding
MISSING = Truth()  # not annotated at all


def test_truth_kind() -> None:
    assert truth_kind(FINDING) == "finding"
    assert truth_kind(Truth(mask=np.eye(4, dtype=bool))) == "finding"
    assert truth_kind(NONE) == "none" and truth_kind(Truth(mask=np.zeros((4, 4), dtype=bool))) == "none"
    assert truth_kind(MISSING) == "missing"


def test_missing_truth_names_unannotated_images_of_classes_with_findings(tmp_path) -> None:
    rows = [(1, FINDING), (1, MISSING), (1, NONE), (0, MISSING), (0, NONE), (2, MISSING)]
    ds = _Listed(rows, ["normal", "fracture", "other"])
    data = AuditData(ds, n_images=10, run_dir=tmp_path)
    assert data.truth_kinds == ["finding", "missing", "none", "missing", "none", "missing"]
    # only img1: class 'fracture' has a finding elsewhere; img3 (normal) and img5 (other) have no annotated
    # finding in their class, and img2 is annotated as having none
    assert missing_truth(data, ds.class_names) == [
        "img1.png: no ground truth, although other images with class 'fracture' are annotated; "
        "left out of the alignment metrics"
    ]


def test_missing_truth_multilabel_uses_positive_rows(tmp_path) -> None:
    rows = [([1.0, 0.0], FINDING), ([0.0, 1.0], MISSING), ([0.0, 0.0], MISSING)]
    ds = _Listed(rows, ["effusion", "nodule"])
    data = AuditData(ds, n_images=10, run_dir=tmp_path)
    lines = missing_truth(data, ds.class_names)
    assert lines == [
        "img1.png: no ground truth, although other images with a positive label are annotated; "
        "left out of the alignment metrics"
    ]


def test_synthetic_benchmark_has_no_missing_truth(tmp_path) -> None:
    ds = SyntheticFracture(24, size=32, seed=3)
    data = AuditData(ds, n_images=5, run_dir=tmp_path)
    assert "finding" in data.truth_kinds and set(data.truth_kinds) - {"finding"}  # both kinds occur
    assert missing_truth(data, list(ds.class_names)) == []
    assert loader_warnings(ds) == []


def test_loader_warnings_reach_through_subsets() -> None:
    ds = _Listed([(0, NONE)], ["normal"])
    assert loader_warnings(SubsetDataset(SubsetDataset(ds, [0]), [0])) == ds.warnings


def _rows(n_truth: int) -> pd.DataFrame:
    rows = [("", TRUTH_CODE, f"img{i:02d}.png: mask dropped") for i in range(n_truth)]
    rows += [("", "masking", "run-wide"), ("m", "deeplift_summation", "sums miss"), ("", "a_first", "first")]
    return pd.DataFrame(rows, columns=["model", "code", "message"])


def test_warning_lines_list_the_first_truth_lines_and_count_the_rest() -> None:
    lines = warning_lines(_rows(13), truth_shown=10)
    assert lines[0] == "first" and lines[1] == "run-wide"
    assert lines[2:12] == [f"img{i:02d}.png: mask dropped" for i in range(10)]
    assert lines[12].startswith("… and 3 more ground-truth warnings (13 in all")
    assert lines[13] == "m: sums miss" and len(lines) == 14


def test_warning_lines_all_or_few_truth_lines() -> None:
    assert len(warning_lines(_rows(13), truth_shown=None)) == 16
    few = warning_lines(_rows(4))
    assert len(few) == 7 and not any(line.startswith("…") for line in few)


def test_only_test_images_are_named_and_a_dropped_sample_once(tmp_path) -> None:
    """A folder split into train and test: a bad point on a training image stays out of the run's warnings,
    and a test image whose every point is dropped is reported by the loader, not again as unannotated."""
    from robustxai.audit._truth_checks import truth_warnings
    from robustxai.data._folder import FolderDataset, write_folder

    write_folder(SyntheticFracture(16, size=32, seed=4), tmp_path / "data")
    paths = FolderDataset(tmp_path / "data").paths
    fractures = [p for p in paths if p.startswith("fracture/")]
    assert len(fractures) >= 4
    train_img, test_bad, test_good = fractures[0], fractures[1], fractures[2]
    lines = ["image,x,y", f"{train_img},40,3", f"{test_bad},50,50"]
    lines += [f"{test_good},10,10", f"{test_good},12,12"]
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")
    full = FolderDataset(tmp_path / "data", annotations=tmp_path / "points.csv")
    test_idx = [i for i, p in enumerate(paths) if p != train_img]
    data = AuditData(SubsetDataset(full, test_idx), n_images=10, run_dir=tmp_path)
    assert any(train_img in w for w in full.warnings)  # the loader saw it ...
    out = truth_warnings(data)
    assert not any(train_img in line for line in out)  # ... but it is not a test image
    about_bad = [line for line in out if test_bad in line]
    assert len(about_bad) == 1 and "left out" in about_bad[0] and "no ground truth" not in about_bad[0]
    # the other fracture test images have no annotation at all: named as missing, once each
    others = fractures[3:]
    assert others
    for p in others:
        assert sum(p in line for line in out) == 1
        assert any(line.startswith(f"{p}: no ground truth") for line in out)
    assert not any(test_good in line for line in out)


def test_replace_warnings_drops_the_old_lines_of_that_code(tmp_path) -> None:
    from robustxai.results import Store

    with Store(tmp_path / "results.sqlite") as store:
        store.add_warnings([("m", TRUTH_CODE, "model-level: kept"), ("", "masking", "kept too")])
        store.replace_warnings(TRUTH_CODE, ["a.png: mask dropped", "b.png: mask dropped"])
        store.replace_warnings(TRUTH_CODE, ["b.png: mask dropped"])  # a resumed run after a.png was fixed
        rows = store.warnings()
    assert sorted(rows["message"]) == ["b.png: mask dropped", "kept too", "model-level: kept"]
