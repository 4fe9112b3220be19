"""Image folders on disk: the portable format for any data set, built-in or the user's own.

Why: a clinician's data usually arrives as a folder of PNG/JPEG files sorted into one sub-folder per class,
or listed in a CSV; :func:`write_folder` exports any :class:`ImageDataset` (e.g. the synthetic benchmark) to
the same layout so that it can be inspected, annotated or shared, and :class:`FolderDataset` reads it back.

Layout written by :func:`write_folder` (and read by :class:`FolderDataset`)::

    out/
      <class_name>/<id>.png          images, 8-bit PNG (grayscale for 1 channel, RGB for 3)
      masks/<class_name>/<id>.png    ground-truth masks, 8-bit PNG, 0 = background, non-zero = finding
      manifest.csv                   columns ``path,label,split``
      annotations.json               points and mask references

``manifest.csv``: one row per image; ``path`` is relative to the folder (POSIX separators), ``label`` is a
class name and ``split`` is a free split name (``train``, ``test``, …) or empty.

``annotations.json``::

    {"format": "robustxai-annotations/1",
     "class_names": ["normal", "fracture"],
     "images": {"<image path>": {"points": [[x, y], ...], "mask": "<mask path>" | null}}}

Points are ``(x, y)`` pixels (column, row) in the coordinates of the stored image; ``mask`` is the relative
path of a mask PNG of the same size as the image, or ``null`` when the image has no mask. ``class_names``
fixes the order of class indices (otherwise class names are sorted). An image missing from ``images`` has
no annotation (its :class:`Truth` holds neither mask nor points).

When reading, images may be 8-bit (divided by 255) or 16-bit PNG (divided by 65535), grayscale or colour.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robustxai.data.base import ImageDataset, Sample
from robustxai.data.truth import Truth
from robustxai.errors import DataError

logger = logging.getLogger(__name__)

ANNOTATION_FORMAT = "robustxai-annotations/1"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_MASK_DIR = "masks"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_folder(
    dataset: ImageDataset,
    out: Path,
    progress: Callable[[int], None] | None = None,
    split: str | Sequence[str] | None = None,
) -> Path:
    """Write ``dataset`` as PNG files with a manifest and annotations (layout in the module docstring).

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
    rows: list[tuple[str, str, str]] = []
    images: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for i in range(n):
        sample = dataset[i]
        cls = dataset.class_names[sample.label]
        stem = _SAFE.sub("_", sample.id).strip("._") or f"image-{i:06d}"
        rel = f"{_SAFE.sub('_', cls)}/{stem}.png"
        if rel in seen:
            raise DataError(f"write_folder: two images map to the same file {rel!r} (ids must be unique)")
        seen.add(rel)
        _save_png(_to_uint8(sample.image, sample.id), out / rel)
        entry: dict[str, Any] = {"points": [], "mask": None}
        if sample.truth.points is not None:
            entry["points"] = [[float(x), float(y)] for x, y in sample.truth.points]
        if sample.truth.mask is not None:
            mask_rel = f"{_MASK_DIR}/{rel}"
            _save_png(sample.truth.mask.astype(np.uint8) * 255, out / mask_rel)
            entry["mask"] = mask_rel
        images[rel] = entry
        rows.append((rel, cls, splits[i]))
        if progress is not None:
            progress(1)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    doc = {"format": ANNOTATION_FORMAT, "class_names": list(dataset.class_names), "images": images}
    (out / "annotations.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    logger.info("wrote %d images to %s", n, out)
    return out


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
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _read_image(path: Path, channels: int) -> np.ndarray:
    """Read an image as float32 ``[C, H, W]`` in [0, 1]; 16-bit files are scaled by 65535."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if a.max(initial=0) <= 65535 and a.min(initial=0) >= 0 else None
                if scale is None:
                    raise DataError(f"{path}: integer pixel values outside 0..65535 are not supported")
                gray = (a / scale).astype(np.float32)
                arr = gray[None] if channels == 1 else np.repeat(gray[None], 3, axis=0)
                return arr
            if im.mode == "F":
                raise DataError(f"{path}: floating-point images are not supported (use 8- or 16-bit PNG)")
            conv = im.convert("L" if channels == 1 else "RGB")
            a8 = np.asarray(conv, dtype=np.float32) / 255.0
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return a8[None] if channels == 1 else np.moveaxis(a8, -1, 0)


class FolderDataset(ImageDataset):
    """Images from class sub-folders or a CSV manifest, with optional points and masks.

    Args:
        root: The folder (layout in the module docstring).
        manifest: CSV file (``path,label[,split]``), relative to ``root`` or absolute; by default
            ``root/manifest.csv`` when present, otherwise class sub-folders are scanned.
        size: If given, images are resized to ``size`` x ``size`` (bilinear, antialiased) and the truth moves
            with them.
        channels: 1 (grayscale) or 3 (RGB); images are converted as needed.
        split: Keep only the manifest rows of this split.
        class_names: Order of the classes; by default ``annotations.json``'s, otherwise sorted names.

    Raises:
        DataError: If the folder holds no images, a label is unknown, a file is missing or an argument is bad.
    """

    def __init__(
        self,
        root: str | Path,
        manifest: str | None = None,
        size: int | None = None,
        channels: int = 1,
        split: str | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data folder not found: {self.root}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise DataError(f"size must be a positive integer or None, got {size!r}")
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels!r}")
        self.size = size
        self.channels = channels
        self.split = split
        self._annotations: dict[str, dict[str, Any]] = {}
        ann_classes = self._read_annotations()
        names = list(class_names) if class_names is not None else ann_classes
        manifest_path = self._manifest_path(manifest)
        if manifest_path is not None:
            rows = self._read_manifest(manifest_path, names)
        else:
            if split is not None:
                raise DataError(
                    f"split={split!r} needs a manifest.csv with a 'split' column under {self.root}"
                )
            rows = self._scan_folders(names)
        if not rows:
            raise DataError(f"no images found under {self.root} (expected class sub-folders or manifest.csv)")
        self._paths = [r[0] for r in rows]
        self._labels = [self.class_names.index(r[1]) for r in rows]
        self._splits = [r[2] for r in rows]
        self._warned: set[str] = set()

    # ---- discovery ---------------------------------------------------------------------------------------

    def _read_annotations(self) -> list[str] | None:
        path = self.root / "annotations.json"
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != ANNOTATION_FORMAT:
            raise DataError(f'{path}: expected "format": "{ANNOTATION_FORMAT}"')
        images = doc.get("images", {})
        if not isinstance(images, dict):
            raise DataError(f'{path}: "images" must be an object keyed by image path')
        self._annotations = {_norm(k): v for k, v in images.items() if isinstance(v, dict)}
        names = doc.get("class_names")
        return [str(c) for c in names] if isinstance(names, list) and names else None

    def _manifest_path(self, manifest: str | None) -> Path | None:
        if manifest is None:
            default = self.root / "manifest.csv"
            return default if default.is_file() else None
        path = Path(manifest)
        path = path if path.is_absolute() else self.root / path
        if not path.is_file():
            raise DataError(f"manifest not found: {path}")
        return path

    def _read_manifest(self, path: Path, names: list[str] | None) -> list[tuple[str, str, str]]:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or []]
            if "path" not in fields or "label" not in fields:
                raise DataError(f"{path}: header must contain 'path' and 'label', got {fields}")
            if self.split is not None and "split" not in fields:
                raise DataError(
                    f"{path}: split={self.split!r} requested but the manifest has no 'split' column"
                )
            reader.fieldnames = fields
            all_rows = []
            for lineno, row in enumerate(reader, start=2):
                rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if not rel or not label:
                    raise DataError(f"{path}: row {lineno}: empty path or label")
                if names is not None and label not in names:
                    raise DataError(
                        f"{path}: row {lineno} ({rel}): unknown label {label!r}; classes: {names}"
                    )
                all_rows.append((lineno, _norm(rel), label, (row.get("split") or "").strip()))
        self.class_names = names if names is not None else sorted({r[2] for r in all_rows})
        rows = []
        for lineno, rel, label, split in all_rows:
            if self.split is not None and split != self.split:
                continue
            if not (self.root / rel).is_file():
                raise DataError(f"{path}: row {lineno}: image file not found: {rel}")
            rows.append((rel, label, split))
        return rows

    def _scan_folders(self, names: list[str] | None) -> list[tuple[str, str, str]]:
        found = sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and d.name != _MASK_DIR
        )
        self.class_names = names if names is not None else found
        rows: list[tuple[str, str, str]] = []
        for cls in self.class_names:
            folder = self.root / cls
            if not folder.is_dir():
                continue
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            rows.extend((p.relative_to(self.root).as_posix(), cls, "") for p in files)
        return rows

    # ---- access ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def labels(self) -> list[int]:
        """All labels in order, from the manifest or folder names (no image is read)."""
        return list(self._labels)

    @property
    def splits(self) -> list[str]:
        """The manifest's split name of every image, in order (empty strings without a split column)."""
        return list(self._splits)

    def _load(self, i: int) -> Sample:
        """Read image ``i`` with its truth."""
        rel = self._paths[i]
        arr = _read_image(self.root / rel, self.channels)
        h, w = arr.shape[1:]
        truth = self._truth(rel, h, w)
        image = torch.from_numpy(np.ascontiguousarray(arr))
        if self.size is not None and (h, w) != (self.size, self.size):
            dst = (self.size, self.size)
            image = F.interpolate(
                image[None], size=dst, mode="bilinear", antialias=True, align_corners=False
            )[0]
            image = image.clamp(0.0, 1.0)
            truth = truth.resized((h, w), dst)
        meta: dict[str, object] = {"split": self._splits[i], "source_hw": (h, w)}
        return Sample(image=image, label=self._labels[i], truth=truth, id=rel, meta=meta)

    def _warn(self, rel: str, message: str) -> None:
        key = f"{rel}:{message}"
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s: %s", rel, message)

    def _truth(self, rel: str, h: int, w: int) -> Truth:
        """Build the truth of one image from ``annotations.json``, dropping what does not fit the image."""
        entry = self._annotations.get(rel)
        if entry is None:
            return Truth()
        mask = None
        mask_rel = entry.get("mask")
        if mask_rel:
            try:
                m = _read_image(self.root / _norm(str(mask_rel)), 1)[0] > 0
            except DataError as exc:
                self._warn(rel, f"mask dropped: {exc}")
            else:
                if m.shape == (h, w):
                    mask = m
                else:
                    self._warn(
                        rel, f"mask dropped: its size {m.shape[::-1]} differs from the image's {(w, h)}"
                    )
        try:
            pts = np.asarray(entry.get("points") or [], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            self._warn(rel, "points dropped: expected a list of [x, y] pairs")
            pts = np.zeros((0, 2))
        inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
        if not inside.all():
            self._warn(rel, f"{int((~inside).sum())} point(s) outside the {w}x{h} image dropped")
        return Truth(mask=mask, points=pts[inside])


def _norm(rel: str) -> str:
    """Normalise a relative path to POSIX form without a leading ``./``."""
    p = rel.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p
