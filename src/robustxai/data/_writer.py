"""Writing any :class:`~robustxai.data._base.ImageDataset` as an image folder.

The layout is documented in :mod:`robustxai.data._folder`.

Why: exporting the synthetic benchmark (or any data set) to ordinary PNG files lets people inspect, annotate
or share it, and lets the audit read every data source through one loader.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustxai._atomic import replacing, write_text
from robustxai._errors import DataError
from robustxai.data._base import ImageDataset

logger = logging.getLogger(__name__)

ANNOTATION_FORMAT = "robustxai-annotations/1"
MASK_DIR = "masks"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_folder(
    dataset: ImageDataset,
    out: Path,
    progress: Callable[[int], None] | None = None,
    split: str | Sequence[str] | None = None,
) -> Path:
    """Write ``dataset`` as PNG files with a manifest and annotations (layout: :mod:`robustxai.data._folder`).

    A multi-label data set is written to ``images/<id>.png`` with a multi-label manifest
    ``path,<label 1>,…,<label K>,split`` of 0/1 cells, which :class:`~robustxai.data._folder.FolderDataset`
    reads back as the same data set.

    Args:
        dataset: Images with 1 (grayscale) or 3 (RGB) channels, values in [0, 1].
        out: Target folder; created if needed, existing files of the same names are overwritten.
        progress: Called after each image with the number of images written since the previous call
            (always 1), so it can drive e.g. ``rich``'s ``Progress.advance`` directly.
        split: Split name written for every row, or one name per image; ``None`` leaves the column empty.

    Returns:
        The folder ``out``.

    Raises:
        DataError: If an image breaks the contract, ids collide or ``split`` has the wrong length.
    """
    out = Path(out)
    n = len(dataset)
    if split is None or isinstance(split, str):
        splits = [split or ""] * n
    else:
        splits = [str(s) for s in split]
        if len(splits) != n:
            raise DataError(f"write_folder: got {len(splits)} split names for {n} images")
    out.mkdir(parents=True, exist_ok=True)
    multi = dataset.task == "multilabel"
    rows: list[list[str]] = []
    images: dict[str, dict[str, object]] = {}
    seen: set[str] = set()
    for i in range(n):
        sample = dataset[i]
        cells = _label_cells(dataset, sample.label, sample.id)
        folder = "images" if multi else _SAFE.sub("_", cells[0])
        stem = _SAFE.sub("_", sample.id).strip("._") or f"image-{i:06d}"
        rel = f"{folder}/{stem}.png"
        if rel in seen:
            raise DataError(f"write_folder: two images map to the same file {rel!r} (ids must be unique)")
        seen.add(rel)
        _save_png(_to_uint8(sample.image, sample.id), out / rel)
        entry: dict[str, object] = {"points": [], "mask": None}
        if sample.truth.points is not None:
            entry["points"] = [[float(x), float(y)] for x, y in sample.truth.points]
        if sample.truth.mask is not None:
            mask_rel = f"{MASK_DIR}/{rel}"
            _save_png(sample.truth.mask.astype(np.uint8) * 255, out / mask_rel)
            entry["mask"] = mask_rel
        images[rel] = entry
        rows.append([rel, *cells, splits[i]])
        if progress is not None:
            progress(1)
    with replacing(out / "manifest.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *(dataset.class_names if multi else ["label"]), "split"])
        writer.writerows(rows)
    doc = {"format": ANNOTATION_FORMAT, "class_names": list(dataset.class_names), "images": images}
    write_text(out / "annotations.json", json.dumps(doc, indent=1))
    logger.info("wrote %d images to %s", n, out)
    return out


def _label_cells(dataset: ImageDataset, label: int | torch.Tensor, sid: str) -> list[str]:
    """Manifest cells of one label: the class name, or one ``0``/``1`` per label of a multi-label set."""
    if dataset.task != "multilabel":
        return [dataset.class_names[int(label)]]
    row = torch.as_tensor(label).flatten().tolist()
    if len(row) != len(dataset.class_names) or any(v not in (0, 1) for v in row):
        raise DataError(
            f"write_folder: sample {sid!r} needs {len(dataset.class_names)} labels of 0/1, got {row}"
        )
    return [str(int(v)) for v in row]


def _to_uint8(image: torch.Tensor, sid: str) -> np.ndarray:
    """Quantise a ``[C, H, W]`` image in [0, 1] to ``[H, W]`` or ``[H, W, 3]`` uint8."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"write_folder: image {sid!r} must have shape [1|3, H, W], got {tuple(image.shape)}")
    a = image.detach().cpu().float().numpy()
    if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise DataError(f"write_folder: image {sid!r} must hold finite values in [0, 1]")
    q = np.rint(a * 255.0).astype(np.uint8)
    return q[0] if q.shape[0] == 1 else np.moveaxis(q, 0, -1)


def _save_png(array: np.ndarray, path: Path) -> None:
    with replacing(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
