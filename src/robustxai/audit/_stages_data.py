"""Audit stage 1: the data sets (built-in synthetic benchmark or a user's image folder)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TypedDict

from robustxai._errors import DataError
from robustxai.audit._cache import is_complete, key_of, mark_complete
from robustxai.audit._config import AuditConfig
from robustxai.audit._progress import Progress
from robustxai.data._base import ImageDataset, SubsetDataset, split_indices
from robustxai.data._folder import FolderDataset, write_folder
from robustxai.data._synthetic import SyntheticFracture
from robustxai.data._transforms import Transform, create_transform


class DataInfo(TypedDict, total=False):
    """The description of the audited data: what model cache keys depend on and the run records.

    Synthetic data name their ``size`` and ``shortcut``; a folder its ``split`` rule and a ``fingerprint`` of
    its files. Both end with the counts, the class names, the task and the channels of the test images.
    """

    name: str
    path: str
    size: int
    shortcut: float
    split: str
    fingerprint: str
    n_train: int
    n_test: int
    class_names: list[str]
    task: str
    channels: int


class _FolderOptions(TypedDict, total=False):
    """Keywords of :class:`FolderDataset` that the config decides."""

    size: int
    channels: int
    transforms: list[Transform]
    uncertain: str
    blank: str
    max_pixels: int
    allow_outside_root: bool


class _TruthOptions(TypedDict):
    """Keywords of :class:`FolderDataset` that point it at the test images' ground truth."""

    annotations: str | None
    annotation_format: str


def _synthetic_on_disk(
    ds: SyntheticFracture, root: Path, progress: Progress, label: str, options: _FolderOptions
) -> FolderDataset:
    """Write ``ds`` to ``root`` once (cached) and read it back through the folder loader."""
    if not is_complete(root):
        if root.exists():
            shutil.rmtree(root)
        task = progress.start(f"writing {label} images", len(ds))
        write_folder(ds, root, progress=lambda n: progress.advance(task, n))
        progress.finish(task)
        mark_complete(root)
    return FolderDataset(root, **options)


def folder_fingerprint(roots: list[Path]) -> str:
    """A hash of every file's relative path, size and modification time under ``roots`` (files: their own)."""
    entries = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            stat = path.stat()
            rel = path.name if path == root else str(path.relative_to(root))
            entries.append((rel, stat.st_size, stat.st_mtime_ns))
    return key_of("folder", entries)


def build_transform_list(specs: list[str | dict[str, object]]) -> list[Transform]:
    """The configured intensity transforms: names, or tables ``{name = ..., <keyword> = ...}``."""
    out = []
    for spec in specs:
        if isinstance(spec, str):
            out.append(create_transform(spec))
        else:
            kwargs = {k: v for k, v in spec.items() if k != "name"}
            out.append(create_transform(str(spec["name"]), **kwargs))
    return out


def _outside(path: str | None, root: Path) -> list[Path]:
    """``path`` (resolved as the folder loader does) when it lies outside ``root``, for fingerprints."""
    if path is None:
        return []
    p = Path(path)
    if not p.exists() and not p.is_absolute():
        p = root / p
    if not p.exists():
        return []
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError:
        return [p]
    return []


def synthetic_root(cfg: AuditConfig, cache: Path) -> Path:
    """Where the synthetic data set of ``cfg`` is written when ``data.write_to_disk`` (one cache entry)."""
    d = cfg.data
    key = key_of("synthetic-fracture", d.n_train, d.n_test, d.size, d.shortcut, cfg.seed)
    return cache / "data" / f"synthetic-fracture-{key}"


def build_datasets(
    cfg: AuditConfig, cache: Path, progress: Progress
) -> tuple[ImageDataset, ImageDataset, DataInfo]:
    """Return (train, test, description) for the configured data source."""
    d = cfg.data
    transforms = build_transform_list(d.transforms)
    if d.source == "synthetic-fracture":
        train_syn = SyntheticFracture(d.n_train, size=d.size, seed=cfg.seed, shortcut=d.shortcut)
        test_syn = SyntheticFracture(d.n_test, size=d.size, seed=cfg.seed + 1_000_003, shortcut=d.shortcut)
        train_ds: ImageDataset = train_syn
        test_ds: ImageDataset = test_syn
        info: DataInfo = {"name": "synthetic-fracture", "size": d.size, "shortcut": d.shortcut}
        if d.write_to_disk:
            root = synthetic_root(cfg, cache)
            opts: _FolderOptions = {"channels": d.channels, "transforms": transforms}
            train_ds = _synthetic_on_disk(train_syn, root / "train", progress, "training", opts)
            test_ds = _synthetic_on_disk(test_syn, root / "test", progress, "test", opts)
            info["path"] = str(root)
    else:
        assert d.path is not None  # checked by the config
        root = Path(d.path)
        if not root.exists():
            raise DataError(f"data folder not found: {root}")
        options: _FolderOptions = {
            "size": d.size,
            "channels": d.channels,
            "transforms": transforms,
            "uncertain": d.uncertain,
            "blank": d.blank,
            "max_pixels": d.max_pixels,
            "allow_outside_root": d.allow_outside_root,
        }
        truth: _TruthOptions = {"annotations": d.annotations, "annotation_format": d.annotation_format}
        if d.test_path:
            train_ds = FolderDataset(root, manifest=d.manifest, **options)
            # The test folder must use the training folder's class order, or labels would silently flip.
            # Its own manifest.csv (if any) is read; the ground truth only matters for the test images.
            test_ds = FolderDataset(Path(d.test_path), class_names=train_ds.class_names, **options, **truth)
            how = "separate test folder"
        else:
            full = FolderDataset(root, manifest=d.manifest, **options, **truth)
            if {"train", "test"} <= set(full.splits):
                train_ds, test_ds = (
                    SubsetDataset(full, [i for i, s in enumerate(full.splits) if s == name])
                    for name in ("train", "test")
                )
                how = "manifest split column"
            else:
                frac = min(0.5, d.n_test / len(full))
                train_idx, test_idx = split_indices(len(full), frac, cfg.seed)
                train_ds, test_ds = SubsetDataset(full, train_idx), SubsetDataset(full, test_idx)
                how = f"random {frac:.0%} hold-out (seed {cfg.seed})"
        info = {"name": "folder", "path": str(root), "size": d.size, "split": how}
        # Content fingerprint, so a cached model is never reused after the images or labels change.
        roots = [root] + ([Path(d.test_path)] if d.test_path else [])
        extra = _outside(d.manifest, root) + _outside(d.annotations, roots[-1])
        info["fingerprint"] = folder_fingerprint(roots + extra)
    if train_ds.task != test_ds.task:
        raise DataError(f"the training set is {train_ds.task} but the test set is {test_ds.task}")
    if len(train_ds) == 0:
        raise DataError("the training data set is empty")
    if len(test_ds) == 0:
        raise DataError("the test data set is empty")
    info.update(
        {
            "n_train": len(train_ds),
            "n_test": len(test_ds),
            "class_names": list(test_ds.class_names),
            "task": test_ds.task,
            "channels": int(test_ds[0].image.shape[0]),
        }
    )
    return train_ds, test_ds, info
