"""Image folders on disk: the portable format for any data set, built-in or the user's own.

Why: a clinician's data usually arrives as a folder of PNG/JPEG/DICOM files sorted into one sub-folder per
class, or listed in a CSV; :func:`write_folder` exports any :class:`ImageDataset` (e.g. the synthetic
benchmark) to the same layout so that it can be inspected, annotated or shared, and :class:`FolderDataset`
reads it back.

Layout written by :func:`write_folder` (and read by :class:`FolderDataset`)::

    out/
      <class_name>/<id>.png          images, 8-bit PNG (grayscale for 1 channel, RGB for 3)
      masks/<class_name>/<id>.png    ground-truth masks, 8-bit PNG, 0 = background, non-zero = finding
      manifest.csv                   columns ``path,label,split``
      annotations.json               points and mask references

``manifest.csv``: one row per image; ``path`` is relative to the folder (POSIX separators), ``label`` is a
class name and ``split`` is a free split name (``train``, ``test``, …) or empty. Multi-label (CheXpert-style)
manifests have one 0/1 column per label instead of ``label``: see :mod:`robustxai.data._manifest` for the
layout and the policy for uncertain (``-1``) and blank cells.

``annotations.json``::

    {"format": "robustxai-annotations/1",
     "class_names": ["normal", "fracture"],
     "images": {"<image path>": {"points": [[x, y], ...], "mask": "<mask path>" | null}}}

Points are ``(x, y)`` pixels (column, row) in the coordinates of the stored image; ``mask`` is the relative
path of a mask PNG of the same size as the image, or ``null`` when the image has no mask. ``class_names``
fixes the order of class indices (otherwise class names are sorted). An image missing from ``images`` has
no annotation (its :class:`Truth` holds neither mask nor points). Other ground-truth files (point CSV, box
JSON, mask folders, YOLO, COCO) are read with ``FolderDataset(annotations=...)``.

When reading, images may be 8-bit (divided by 255) or 16-bit PNG (divided by 65535), grayscale or colour,
JPEG, or DICOM (``.dcm``/``.dicom``, or files without an extension that carry the DICOM marker; see
:mod:`robustxai.data._dicom` for windowing and for how patient identifiers are kept out of ids and logs).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from robustxai._errors import DataError
from robustxai._types import JsonValue
from robustxai.data._annotation_formats import finite_numbers
from robustxai.data._base import ImageDataset, Sample
from robustxai.data._files import (
    DEFAULT_MAX_PIXELS,
    check_regular,
    outside_checker,
    outside_notice,
    read_text,
)
from robustxai.data._imageio import IMAGE_EXTENSIONS, image_size, is_image_file, read_image
from robustxai.data._manifest import check_policies, norm_path, read_manifest
from robustxai.data._transforms import TransformSpec, apply_transforms, build_transforms, resize
from robustxai.data._truth import Truth
from robustxai.data._writer import ANNOTATION_FORMAT, MASK_DIR, write_folder

logger = logging.getLogger(__name__)

__all__ = ["ANNOTATION_FORMAT", "IMAGE_EXTENSIONS", "FolderDataset", "write_folder"]


class FolderDataset(ImageDataset):
    """Images from class sub-folders or a CSV manifest, with optional points and masks.

    Args:
        root: The folder (layout in the module docstring).
        manifest: CSV file (``path,label[,split]`` or multi-label), relative to ``root`` or absolute; by
            default ``root/manifest.csv`` when present, otherwise class sub-folders are scanned.
        size: If given, images are resized to ``size`` x ``size`` (bilinear, antialiased) and the truth moves
            with them.
        channels: 1 (grayscale) or 3 (RGB; a gray image is repeated, e.g. for ImageNet backbones).
        split: Keep only the manifest rows of this split.
        class_names: Order of the classes (or, multi-label, the label columns); by default
            ``annotations.json``'s, otherwise sorted names (multi-label: the manifest's label columns).
        transforms: Intensity transforms applied after resizing, in order: a registered name such as
            ``"highpass"`` (:data:`robustxai.data._transforms.TRANSFORMS`), a callable on ``[C, H, W]``, or a
            list of them. Each must keep the shape and the [0, 1] range.
        uncertain: Multi-label policy for uncertain (``-1``) cells: ``"zero"``, ``"one"`` or ``"ignore"``
            (leave the row out); see :mod:`robustxai.data._manifest`.
        blank: Multi-label policy for blank cells: ``"zero"`` (not mentioned = negative) or ``"uncertain"``.
        annotations: A ground-truth file or folder read with
            :func:`robustxai.data.read_annotations` (relative to the working directory, or else to
            ``root``); it replaces ``annotations.json`` as the source of truth.
        annotation_format: Format of ``annotations`` (``"auto"`` detects it).
        max_pixels: Largest image (rows x columns) read; an image (or mask) whose header declares more is
            left out with a notice before any pixel is decoded (a decompression bomb costs nothing).
        allow_outside_root: Read images that resolve outside ``root`` (manifest paths with ``../`` or
            absolute ones, symlinked class folders or files), with one notice naming where; ``False``
            refuses them with a :class:`DataError`.

    Attributes:
        task: ``"multiclass"`` or ``"multilabel"`` (from the manifest's header).
        warnings: One line per problem met so far (left-out rows, dropped masks or points); each is also
            logged once. Truth problems of an image are found when it is first loaded.
        notices: Data-set-level lines, each also logged once: images left out because their file cannot be
            read (not a regular file, larger than ``max_pixels``, not an image), duplicate manifest rows,
            images listed in two splits (leakage), images outside ``root``.

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
        *,
        transforms: TransformSpec = None,
        uncertain: str = "zero",
        blank: str = "zero",
        annotations: str | Path | None = None,
        annotation_format: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        allow_outside_root: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data folder not found: {self.root}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise DataError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.max_pixels = max_pixels
        self.allow_outside_root = bool(allow_outside_root)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise DataError(f"size must be a positive integer or None, got {size!r}")
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels!r}")
        check_policies(uncertain, blank)
        self.size = size
        self.channels = channels
        self.split = split
        self.transforms = build_transforms(transforms)
        self.task = "multiclass"
        self.warnings: list[str] = []
        self.notices: list[str] = []
        self._warned: set[str] = set()
        self._annotations: dict[str, dict[str, JsonValue]] = {}
        self._truths: dict[str, Truth] | None = None
        self._targets: torch.Tensor | None = None
        self._uncertain: list[tuple[str, ...]] = []
        ann_classes = self._read_annotations()
        names = list(class_names) if class_names is not None else ann_classes
        manifest_path = self._manifest_path(manifest)
        if manifest_path is not None:
            rows = self._read_manifest(manifest_path, names, uncertain, blank)
        else:
            if split is not None:
                raise DataError(
                    f"split={split!r} needs a manifest.csv with a 'split' column under {self.root}"
                )
            rows = self._scan_folders(names)
        self._paths = [r[0] for r in rows]
        self._labels = [self.class_names.index(r[1]) if isinstance(r[1], str) else -1 for r in rows]
        self._splits = [r[2] for r in rows]
        self._sizes = self._check_images()
        if not self._paths:
            raise DataError(f"no images found under {self.root} (expected class sub-folders or manifest.csv)")
        if annotations is not None:
            self._read_external_annotations(annotations, annotation_format)

    # ---- discovery ---------------------------------------------------------------------------------------

    def _read_annotations(self) -> list[str] | None:
        path = self.root / "annotations.json"
        if not os.path.lexists(path):
            return None
        try:
            doc = json.loads(read_text(path, "annotations file"))
        except (ValueError, RecursionError) as exc:
            raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != ANNOTATION_FORMAT:
            raise DataError(f'{path}: expected "format": "{ANNOTATION_FORMAT}"')
        images = doc.get("images", {})
        if not isinstance(images, dict):
            raise DataError(f'{path}: "images" must be an object keyed by image path')
        self._annotations = {norm_path(k): v for k, v in images.items() if isinstance(v, dict)}
        names = doc.get("class_names")
        if names is None or names == []:
            return None
        if (
            not isinstance(names, list)
            or not all(isinstance(c, str) and c for c in names)
            or len(set(names)) != len(names)
        ):
            raise DataError(f'{path}: "class_names" must be a list of distinct non-empty strings')
        return list(names)

    def _manifest_path(self, manifest: str | None) -> Path | None:
        if manifest is None:
            default = self.root / "manifest.csv"
            return default if default.is_file() else None
        path = Path(manifest)
        path = path if path.is_absolute() else self.root / path
        if not os.path.lexists(path):
            raise DataError(f"manifest not found: {path}")
        check_regular(path, "manifest")
        return path

    def _read_manifest(
        self, path: Path, names: list[str] | None, uncertain: str, blank: str
    ) -> list[tuple[str, str | None, str]]:
        parsed = read_manifest(
            path, self.root, names, self.split, uncertain, blank, allow_outside_root=self.allow_outside_root
        )
        self.class_names = parsed.class_names
        self.task = parsed.task
        for message in parsed.warnings:
            self._warn(message)
        for message in parsed.notices:
            self._notice(message)
        if self.task == "multilabel":
            values = [r.label for r in parsed.rows]
            self._targets = torch.tensor(values, dtype=torch.float32).reshape(
                len(values), len(self.class_names)
            )
            self._uncertain = [r.uncertain for r in parsed.rows]
            return [(r.path, None, r.split) for r in parsed.rows]
        return [(r.path, str(r.label), r.split) for r in parsed.rows]

    def _scan_folders(self, names: list[str] | None) -> list[tuple[str, str | None, str]]:
        try:
            entries = list(self.root.iterdir())
        except OSError as exc:
            raise DataError(f"cannot list the data folder {self.root}: {exc}") from None
        found = sorted(
            d.name for d in entries if d.is_dir() and not d.name.startswith(".") and d.name != MASK_DIR
        )
        self.class_names = names if names is not None else found
        rows: list[tuple[str, str | None, str]] = []
        outside: list[tuple[str, Path]] = []
        resolves_outside = outside_checker(self.root)
        for cls in self.class_names:
            folder = self.root / cls
            if not os.path.isdir(folder):  # a name no file system holds (too long, NUL) is no folder either
                continue
            files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
            rows.extend((p.relative_to(self.root).as_posix(), cls, "") for p in files)
            links = ((p.relative_to(self.root).as_posix(), resolves_outside(p)) for p in files)
            outside += [(rel, real) for rel, real in links if real is not None]
        for line in outside_notice("class folders", self.root, outside, self.allow_outside_root):
            self._notice(line)
        return rows

    def _check_images(self) -> dict[str, tuple[int, int]]:
        """Read every image's header once; leave out (with a notice) the ones that cannot be read.

        Catches what would otherwise stop a run halfway: non-regular files, images larger than
        ``max_pixels``, files that are no image. Returns the ``(H, W)`` of the images kept.
        """
        sizes: dict[str, tuple[int, int]] = {}
        keep: list[int] = []
        for i, rel in enumerate(self._paths):
            try:
                sizes[rel] = image_size(self.root / rel, self.max_pixels)
            except DataError as exc:
                self._notice(f"{rel}: left out: {exc}")
                continue
            keep.append(i)
        if len(keep) < len(self._paths):
            self._paths = [self._paths[i] for i in keep]
            self._labels = [self._labels[i] for i in keep]
            self._splits = [self._splits[i] for i in keep]
            if self._targets is not None:
                self._targets = self._targets[torch.tensor(keep, dtype=torch.long)]
                self._uncertain = [self._uncertain[i] for i in keep]
        return sizes

    def _read_external_annotations(self, annotations: str | Path, fmt: str) -> None:
        """Read a ground-truth file for every image (sizes from the file headers, not the pixels)."""
        from robustxai.data._annotations import read_annotations

        path = Path(annotations)
        if not path.exists() and not path.is_absolute() and (self.root / path).exists():
            path = self.root / path
        if not path.exists():
            raise DataError(f"annotations not found: {annotations}")
        sizes = {rel: self._sizes[rel] for rel in self._paths}
        result = read_annotations(path, sizes, fmt=fmt, max_pixels=self.max_pixels)
        self._truths = {norm_path(k): v for k, v in result.truths.items()}
        for message in result.warnings:
            self._warn(message)

    # ---- access ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def labels(self) -> list[int]:
        """All class indices in order, from the manifest or folder names (no image is read).

        Raises:
            DataError: For a multi-label data set (use :meth:`targets`).
        """
        if self.task == "multilabel":
            return super().labels()
        return list(self._labels)

    def targets(self) -> torch.Tensor:
        """Labels as long ``[N]`` or, multi-label, float 0/1 ``[N, K]`` (no image is read)."""
        if self._targets is not None:
            return self._targets.clone()
        return torch.tensor(self._labels, dtype=torch.long)

    @property
    def paths(self) -> list[str]:
        """Relative POSIX path of every image, in order (also the sample ids)."""
        return list(self._paths)

    @property
    def splits(self) -> list[str]:
        """The manifest's split name of every image, in order (empty strings without a split column)."""
        return list(self._splits)

    def _load(self, i: int) -> Sample:
        """Read image ``i`` with its truth; the id is the relative path (never a header value)."""
        rel = self._paths[i]
        arr = read_image(self.root / rel, self.channels, self.max_pixels)
        h, w = arr.shape[1:]
        truth = self._truth(rel, h, w)
        image = torch.from_numpy(np.ascontiguousarray(arr))
        if self.size is not None:
            image, truth = resize(image, truth, (self.size, self.size))
        image = apply_transforms(image, self.transforms, rel)
        meta: dict[str, object] = {"split": self._splits[i], "source_hw": (h, w)}
        label: int | torch.Tensor
        if self._targets is not None:
            label = self._targets[i].clone()
            meta["uncertain"] = list(self._uncertain[i])
        else:
            label = self._labels[i]
        return Sample(image=image, label=label, truth=truth, id=rel, meta=meta)

    def _warn(self, message: str) -> None:
        """Log ``message`` once and keep it in :attr:`warnings`."""
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)
            logger.warning("%s", message)

    def _notice(self, message: str) -> None:
        """Log ``message`` once and keep it in :attr:`notices` (data-set-level, not about ground truth)."""
        if message not in self._warned:
            self._warned.add(message)
            self.notices.append(message)
            logger.warning("%s", message)

    def _truth(self, rel: str, h: int, w: int) -> Truth:
        """The truth of one image in its stored pixel coordinates, dropping what does not fit the image."""
        if self._truths is not None:
            truth = self._truths.get(rel, Truth())
            if truth.mask is not None and truth.mask.shape != (h, w):
                size = truth.mask.shape[::-1]
                self._warn(f"{rel}: mask dropped: its size {size} differs from the image's {(w, h)}")
                truth = Truth(points=truth.points if truth.points is not None else np.zeros((0, 2)))
            return truth
        entry = self._annotations.get(rel)
        if entry is None:
            return Truth()
        mask = None
        mask_rel = entry.get("mask")
        if mask_rel is not None and not isinstance(mask_rel, str):
            self._warn(f"{rel}: mask dropped: expected a mask path (string), got {type(mask_rel).__name__}")
        elif mask_rel:
            try:
                m = read_image(self.root / norm_path(mask_rel), 1, self.max_pixels)[0] > 0
            except DataError as exc:
                self._warn(f"{rel}: mask dropped: {exc}")
            else:
                if m.shape == (h, w):
                    mask = m
                else:
                    self._warn(
                        f"{rel}: mask dropped: its size {m.shape[::-1]} differs from the image's {(w, h)}"
                    )
        raw = entry.get("points")
        flat = finite_numbers(raw if raw is not None else [])
        if flat is None or flat.size % 2:
            self._warn(f"{rel}: points dropped: expected a list of [x, y] pairs of finite numbers")
            flat = np.zeros(0)
        pts = flat.reshape(-1, 2)
        inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
        if not inside.all():
            self._warn(f"{rel}: {int((~inside).sum())} point(s) outside the {w}x{h} image dropped")
        return Truth(mask=mask, points=pts[inside])
