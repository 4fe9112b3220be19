"""Data-set-level warnings of an audit: what the loaders left out or found suspicious, and class counts.

Why: some data problems do not stop a run but make its numbers mean less, and a reader of the report must
see them next to the numbers: images left out because their file could not be read (a FIFO, a
decompression bomb), duplicate manifest rows, images listed in both the training and the test split
(leakage, a classic error of medical-AI studies), images read from outside the data folder, and a test
split whose labels are all one class (clean accuracy 1.0 and ΔAcc 0 then say nothing about the model).

The lines are recorded in the store's ``warnings`` table under code :data:`DATA_CODE` (model ``""``), so the
report lists them; a resumed run replaces them with what the data say now.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from robustxai.data._base import ImageDataset, SubsetDataset

log = logging.getLogger(__name__)

#: ``warnings.code`` of the data-set-level warnings.
DATA_CODE = "data"
#: Per-image "left out" lines listed before the rest are counted in one line.
LEFT_OUT_SHOWN = 10


def _base(dataset: ImageDataset) -> ImageDataset:
    while isinstance(dataset, SubsetDataset):
        dataset = dataset.base
    return dataset


def loader_notices(*datasets: ImageDataset) -> list[str]:
    """The notices of the data sets' loaders (each underlying loader once), left-out images capped."""
    seen: list[int] = []
    lines: list[str] = []
    for ds in datasets:
        base = _base(ds)
        if id(base) in seen:
            continue
        seen.append(id(base))
        found = getattr(base, "notices", None)
        lines += [str(n) for n in found] if isinstance(found, list) else []
    left = [line for line in lines if ": left out: " in line]
    if len(left) > LEFT_OUT_SHOWN:
        drop = set(left[LEFT_OUT_SHOWN:])
        lines = [line for line in lines if line not in drop]
        lines.append(f"… and {len(drop)} more images left out (every one is named in the log)")
    return list(dict.fromkeys(lines))


def folder_leakage(train: ImageDataset, test: ImageDataset) -> list[str]:
    """Images that the training and a separate test folder both hold (the same file, after symlinks)."""
    train_base, test_base = _base(train), _base(test)
    if train_base is test_base:
        return []  # one loader: its manifest check names images listed in two splits
    files = []
    for ds in (train_base, test_base):
        root, paths = getattr(ds, "root", None), getattr(ds, "paths", None)
        if not isinstance(root, Path) or not isinstance(paths, list):
            return []
        files.append({(root / p).resolve(): p for p in paths})
    shared = sorted(set(files[0]) & set(files[1]))
    if not shared:
        return []
    names = ", ".join(files[1][f] for f in shared[:5]) + (f", … ({len(shared)} in all)" * (len(shared) > 5))
    return [
        f"LEAKAGE: {len(shared)} test image(s) are also training images (the same file): {names}; the test "
        "results on them are not independent of training"
    ]


def class_count_warnings(targets: torch.Tensor, class_names: list[str]) -> list[str]:
    """A loud line when the test labels hold fewer than two classes (multi-label ``[N, K]``: none varies)."""
    if targets.ndim == 2:
        if targets.shape[0] and not bool((targets.amax(dim=0) != targets.amin(dim=0)).any()):
            return [
                f"the test split ({targets.shape[0]} images) gives every label a single value: AUC is "
                "undefined and accuracy says nothing about the model"
            ]
        return []
    present = sorted({int(v) for v in torch.unique(targets)})
    if len(present) >= 2:
        return []
    names = list(class_names)
    shown = ", ".join(repr(names[i]) if 0 <= i < len(names) else str(i) for i in present) or "none"
    return [
        f"the test split holds only one class ({shown}, {len(targets)} images): clean accuracy and ΔAcc "
        "say nothing about the model (a constant prediction scores 1.0); add images of the other classes"
    ]


def data_warnings(train: ImageDataset, test: ImageDataset, test_labels: torch.Tensor) -> list[str]:
    """Every data-set-level warning of a run (module docstring); the audit's own lines are logged here.

    Args:
        train: The training set.
        test: The test set.
        test_labels: The test set's labels (class indices ``[N]`` or 0/1 ``[N, K]``), as the audit has them.
    """
    own = folder_leakage(train, test) + class_count_warnings(test_labels, list(test.class_names))
    for line in own:
        log.warning("%s", line)
    return loader_notices(train, test) + own
