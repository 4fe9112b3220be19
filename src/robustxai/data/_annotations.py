"""Ground-truth annotation files: one reader for the formats experts and tools export.

Why: expert truth arrives as whatever the annotation tool wrote — a CSV of clicked points, a JSON of boxes,
a folder of mask PNGs, YOLO or COCO files. :func:`read_annotations` turns any of them into one
:class:`~robustxai.data._truth.Truth` per image, in the pixel coordinates of the stored image, so that the
data sets (e.g. ``FolderDataset``) resize image and truth together afterwards. A bad sample never stops the
reading: it is reported as one line in :attr:`AnnotationResult.warnings` and left out (or the bad part of
it dropped); only an unreadable or unrecognisable file raises :class:`~robustxai._errors.DataError`.

Formats (``fmt``; ``"auto"`` picks by extension and content):

- ``points_csv``: header ``image,x,y`` (``path``/``file_name`` also name the image column), one row per
  point; a row with empty ``x`` and ``y`` marks an image annotated without any point.
- ``json`` / ``robustxai``: ``{"images": {"<key>": {"points": [[x, y], ...], "boxes": [[x0, y0, x1, y1],
  ...], "polygons": [[[x, y], ...], ...], "mask": "<png path>"}}}``; with ``"format":
  "robustxai-annotations/1"`` it is the file :func:`robustxai.data._folder.write_folder` writes. Mask paths
  are relative to the JSON file's folder.
- ``mask_png``: a folder of PNGs named like the images (sub-folders allowed); non-zero = finding.
- ``yolo``: a folder of ``<stem>.txt`` files with ``class cx cy w h`` lines normalised to [0, 1] (or YOLO
  segmentation lines ``class x1 y1 x2 y2 …``); every class counts as the finding; ``classes.txt`` is skipped.
- ``coco``: ``images`` (``id``, ``file_name``, ``width``, ``height``) and ``annotations`` (``image_id``,
  ``bbox`` ``[x, y, w, h]``, ``segmentation`` polygons). RLE segmentations are not decoded: a warning is
  given and the annotation's ``bbox`` is used instead.

Coordinates. Points keep the :class:`Truth` convention: ``(x, y)`` = (column, row) with integer values at
pixel centres; a point is inside the image when ``-0.5 ≤ x ≤ W − 0.5`` (and likewise y). Boxes and polygons
use the continuous convention of COCO and YOLO, in which the image spans ``[0, W] × [0, H]`` and pixel
``(r, c)`` is the unit square with its centre at ``(c + 0.5, r + 0.5)``: a pixel belongs to a box or polygon
when its centre lies inside (borders included), so a box ``[x, y, w, h]`` with integer values covers exactly
``w × h`` pixels; regions are clipped to the image, and one entirely outside is dropped with a warning.
Polygons are rasterised with ``skimage.draw.polygon`` (pixel centres inside), not PIL's ``ImageDraw``,
which also fills every pixel the outline touches. A region too thin to contain any pixel centre keeps the
one pixel at its centre, so an annotation never vanishes silently. An image with boxes, polygons or a mask
gets a mask (the union); one annotated with an empty list gets an empty one.

Keys. Files name images by relative path, file name or stem; :func:`match_key` maps them onto the keys of
``image_sizes`` (relative POSIX paths, e.g. ``"fracture/img_001.png"``), and :attr:`AnnotationResult.truths`
is keyed by those image keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from robustxai._errors import DataError, RobustXAIError
from robustxai.data import _annotation_readers  # noqa: F401  (registers mask_png, yolo and coco)
from robustxai.data._annotation_formats import READERS, Collector, load_json
from robustxai.data._files import DEFAULT_MAX_PIXELS
from robustxai.data._truth import Truth

logger = logging.getLogger(__name__)

__all__ = ["AnnotationResult", "detect_format", "list_formats", "match_key", "read_annotations"]


@dataclass
class AnnotationResult:
    """What :func:`read_annotations` found.

    Attributes:
        truths: One :class:`Truth` per annotated image, keyed by the image key of ``image_sizes``, in the
            pixel coordinates of the stored image (before any resizing).
        warnings: One line per problem: an annotation for an unknown image, or a sample that was left out or
            lost part of its annotation.
    """

    truths: dict[str, Truth]
    warnings: list[str] = field(default_factory=list)


def _norm(key: str) -> str:
    p = str(key).strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _strip_ext(key: str) -> str:
    p = PurePosixPath(key)
    return str(p.with_suffix("")) if p.suffix else key


class KeyIndex:
    """Image keys indexed by path, path without extension, file name and stem (see ``match_key``)."""

    def __init__(self, image_keys: Iterable[str]) -> None:
        self.keys = [str(k) for k in image_keys]
        self._levels: list[dict[str, list[str]]] = [{}, {}, {}, {}]
        for key in self.keys:
            for level, k in enumerate(self._forms(key)):
                bucket = self._levels[level].setdefault(k, [])
                if key not in bucket:
                    bucket.append(key)

    @staticmethod
    def _forms(key: str) -> tuple[str, str, str, str]:
        n = _norm(key)
        name = PurePosixPath(n).name
        return (n, _strip_ext(n), name, _strip_ext(name))

    def candidates(self, file_key: str) -> list[str]:
        """Image keys that ``file_key`` names, from the most specific level that matches any."""
        if not _norm(file_key):
            return []
        for level, k in enumerate(self._forms(file_key)):
            found = self._levels[level].get(k)
            if found:
                return list(found)
        tail = "/" + _norm(file_key)
        return [k for k in self.keys if _norm(k).endswith(tail)]


def match_key(file_key: str, image_keys: Iterable[str]) -> str | None:
    """The image key that an annotation file's key names, or ``None`` if none or several do.

    Tried in order, the first level with a match deciding: the same relative path; the same path with
    another extension (``img_001.png`` mask for ``img_001.jpg``); the same file name; the same stem; an
    image path that ends with the given path. Backslashes and a leading ``./`` are ignored.

    Args:
        file_key: The image as the annotation file names it (path, file name or stem).
        image_keys: Keys of the images, relative POSIX paths.

    Returns:
        The matching image key, or ``None`` when no key matches or the match is ambiguous (e.g. a bare
        stem shared by images in two class folders).
    """
    found = KeyIndex(image_keys).candidates(file_key)
    return found[0] if len(found) == 1 else None


def list_formats() -> list[str]:
    """Names accepted by ``fmt`` besides ``"auto"``."""
    return READERS.names()


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its extension and content (see the module docstring).

    Raises:
        DataError: If the path does not exist or its format cannot be recognised.
    """
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")]
        txt = [f for f in files if f.suffix.lower() == ".txt" and f.name != "classes.txt"]
        png = [f for f in files if f.suffix.lower() == ".png"]
        if txt and png:
            raise DataError(f"{p}: holds both .txt and .png files; pass fmt='yolo' or fmt='mask_png'")
        if txt:
            return "yolo"
        if png:
            return "mask_png"
        raise DataError(f"{p}: no YOLO .txt files or mask .png files found")
    if not p.is_file():
        raise DataError(f"annotation file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "points_csv"
    if suffix == ".json":
        doc = load_json(p)
        if isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list):
            return "coco"
        if isinstance(doc.get("images"), dict):
            return "json"
        raise DataError(
            f'{p}: JSON is neither COCO ("images" and "annotations" lists) nor keyed by image '
            '("images" object)'
        )
    raise DataError(f"{p}: cannot tell the annotation format from the extension {suffix!r}; pass fmt")


def _check_sizes(image_sizes: object) -> dict[str, tuple[int, int]]:
    if not isinstance(image_sizes, Mapping):
        raise RobustXAIError(f"image_sizes must map image keys to (H, W), got {type(image_sizes).__name__}")
    sizes: dict[str, tuple[int, int]] = {}
    for key, hw in image_sizes.items():
        try:
            h, w = (int(v) for v in hw)
            ok = all(float(v) == int(v) for v in hw) and h > 0 and w > 0
        except (TypeError, ValueError):
            ok = False
        if not isinstance(key, str) or not ok:
            raise RobustXAIError(
                f"image_sizes[{key!r}] must be a (H, W) pair of positive integers, got {hw!r}"
            )
        sizes[key] = (h, w)
    return sizes


def read_annotations(
    path: str | Path,
    image_sizes: Mapping[str, tuple[int, int]],
    fmt: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AnnotationResult:
    """Read expert ground truth for the given images from an annotation file or folder.

    Args:
        path: The annotation file (CSV, JSON) or folder (mask PNGs, YOLO text files).
        image_sizes: ``(H, W)`` of each stored image, keyed by its relative POSIX path; used to match the
            file's keys, to check coordinates and to rasterise boxes and polygons.
        fmt: ``"auto"`` or one of :func:`list_formats` (``points_csv``, ``json``, ``robustxai``,
            ``mask_png``, ``yolo``, ``coco``).
        max_pixels: Largest mask image (rows x columns) decoded; a larger one is dropped with a warning.

    Returns:
        An :class:`AnnotationResult`: a :class:`Truth` per annotated image (original pixel coordinates)
        and one warning line per problem sample.

    Raises:
        robustxai._errors.UnknownNameError: For an unknown ``fmt`` (the message lists the known ones).
        RobustXAIError: If ``image_sizes`` is malformed.
        DataError: If the file is missing, unreadable, or not in the requested format at all.
    """
    sizes = _check_sizes(image_sizes)
    name = detect_format(path) if fmt == "auto" else str(fmt)
    reader = READERS.get(name)
    p = Path(path)
    if name in ("yolo", "mask_png") and not p.is_dir():
        raise DataError(f"fmt={name!r} expects a folder, got {p}")
    if name not in ("yolo", "mask_png") and not p.is_file():
        raise DataError(f"annotation file not found: {p}")
    collector = Collector(sizes, KeyIndex(sizes), p.name, max_pixels)
    reader(p, collector)
    truths, warnings = collector.finish()
    for line in warnings:
        logger.debug("%s", line)
    logger.info("%s: read %d annotated images (%d warnings) as %s", p, len(truths), len(warnings), name)
    return AnnotationResult(truths=truths, warnings=warnings)
