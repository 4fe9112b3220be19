"""Readers behind :func:`robustxai.data.read_annotations`, one per file format.

Each reader parses its format and hands points, boxes, polygons and masks to a :class:`Collector`, which
checks them against the image sizes, rasterises regions, and turns every problem into a warning line
instead of an exception. Conventions (coordinates, key matching) are documented in ``_annotations.py``.
The points CSV and JSON readers live here; mask folders, YOLO and COCO in ``_annotation_readers.py``.

Values are type-checked, not coerced: a coordinate must be a JSON number (a string such as ``"12"``, a
boolean, ``null``, NaN or infinity is a bad value), an id a string or an integer, a mask a path string.
A bad value costs its record a warning; only a file whose top level is the wrong type is an error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

from robustxai._errors import DataError
from robustxai._registry import Registry
from robustxai._types import JsonValue
from robustxai.data._files import DEFAULT_MAX_PIXELS, read_text
from robustxai.data._imageio import open_image
from robustxai.data._truth import Truth

ROBUSTXAI_FORMAT = "robustxai-annotations/1"
_IMAGE_COLUMNS = ("image", "path", "file_name", "filename", "file")
_JSON_FIELDS = {"points", "boxes", "polygons", "mask"}

Reader = Callable[[Path, "Collector"], None]
READERS: Registry[None] = Registry("annotation format")


def load_json(path: Path) -> dict[str, JsonValue]:
    """Parse a JSON file (UTF-8, a regular file) whose top level must be an object."""
    try:
        doc = json.loads(read_text(path, "annotation file"))
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object at the top level, got {type(doc).__name__}")
    return doc


class KeyMatcher(Protocol):
    """Maps an annotation file's image key onto image keys (``annotations.KeyIndex``)."""

    def candidates(self, file_key: str) -> list[str]: ...


@dataclass
class _Entry:
    points: list[tuple[float, float]] | None = None  # None: no point annotation
    mask: np.ndarray | None = None  # None: no region annotation
    kept: int = 0
    dropped: int = 0
    left_out: str | None = None
    problems: Counter[str] = field(default_factory=Counter)


def _numeric(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is a number or a (nested) list of numbers; booleans and strings are not numbers."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Real):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if isinstance(value, list | tuple) and depth < 4:
        return all(_numeric(v, depth + 1) for v in value)
    return False


def finite_numbers(value: object, count: int | None = None) -> np.ndarray | None:
    """``value`` (numbers, or lists of them) as a flat finite float vector (of ``count`` entries), or None.

    Strict: strings, booleans, ``None``, ragged nesting, NaN and infinity give ``None``.
    """
    if not _numeric(value):
        return None
    try:
        a = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError, OverflowError):
        return None
    if (count is not None and a.size != count) or not np.isfinite(a).all():
        return None
    return a


class Collector:
    """Accumulates the truth of each image and the warnings of one annotation file."""

    def __init__(
        self,
        sizes: Mapping[str, tuple[int, int]],
        index: KeyMatcher,
        source: str,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.sizes = sizes
        self.max_pixels = max_pixels
        self.index = index
        self.source = source
        self.entries: dict[str, _Entry] = {}
        self.warnings: list[str] = []
        self._unmatched: set[str] = set()

    def warn(self, message: str) -> None:
        """A problem not tied to a known image (e.g. a malformed row)."""
        self.warnings.append(f"{self.source}: {message}")

    def image(self, file_key: object, where: str) -> str | None:
        """The image key that ``file_key`` names, or ``None`` (with one warning per unknown key)."""
        if not isinstance(file_key, str | int) or isinstance(file_key, bool):
            self.warn(f"{where}: the image name must be a string, got {type(file_key).__name__}; ignored")
            return None
        raw = str(file_key)
        found = self.index.candidates(raw)
        if len(found) == 1:
            self.entries.setdefault(found[0], _Entry())
            return found[0]
        if raw not in self._unmatched:
            self._unmatched.add(raw)
            if found:
                shown = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
                self.warn(f"{where}: {raw!r} matches several images ({shown}); annotation ignored")
            else:
                self.warn(f"{where}: no image matches {raw!r}; annotation ignored")
        return None

    def problem(self, key: str, message: str, dropped: bool = True) -> None:
        entry = self.entries[key]
        entry.problems[message] += 1
        entry.dropped += int(dropped)

    def leave_out(self, key: str, reason: str) -> None:
        self.entries[key].left_out = reason

    def points(self, key: str, items: object) -> None:
        """Add ``(x, y)`` points (Truth convention); an empty list marks an image annotated without points."""
        entry = self.entries[key]
        if entry.points is None:
            entry.points = []
        if not isinstance(items, list | tuple):
            self.problem(key, "points must be a list of [x, y] pairs; dropped")
            return
        h, w = self.sizes[key]
        for item in items:
            xy = finite_numbers(item, 2)
            if xy is None:
                self.problem(key, "a point that is not a finite (x, y) pair was dropped")
            elif -0.5 <= xy[0] <= w - 0.5 and -0.5 <= xy[1] <= h - 0.5:
                entry.points.append((float(xy[0]), float(xy[1])))
                entry.kept += 1
            else:
                self.problem(key, f"a point outside the {w}x{h} image was dropped")

    def regions(self, key: str) -> np.ndarray:
        """The image's region mask, created empty (an annotated image without findings) if needed."""
        entry = self.entries[key]
        if entry.mask is None:
            entry.mask = np.zeros(self.sizes[key], dtype=bool)
        return entry.mask

    def box(self, key: str, value: object) -> None:
        """Add a box ``[x0, y0, x1, y1]`` in continuous coordinates (image = ``[0, W] × [0, H]``)."""
        mask = self.regions(key)
        h, w = mask.shape
        b = finite_numbers(value, 4)
        if b is None:
            self.problem(key, "a box that is not 4 finite numbers [x0, y0, x1, y1] was dropped")
            return
        x0, y0, x1, y1 = (float(v) for v in b)
        if x1 < x0 or y1 < y0:
            self.problem(key, "a box with negative width or height was dropped")
        elif x1 < 0 or y1 < 0 or x0 > w or y0 > h:
            self.problem(key, f"a box outside the {w}x{h} image was dropped")
        else:
            rows = _centre_span(y0, y1, h)
            cols = _centre_span(x0, x1, w)
            mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
            self.entries[key].kept += 1

    def polygon(self, key: str, value: object) -> None:
        """Add a polygon of ``(x, y)`` vertices in continuous coordinates; pixels with centre inside."""
        mask = self.regions(key)
        h, w = mask.shape
        a = finite_numbers(value)
        if a is None or a.size < 6 or a.size % 2:
            self.problem(key, "a polygon that is not ≥ 3 finite (x, y) vertices was dropped")
            return
        xy = a.reshape(-1, 2)
        if xy[:, 0].max() < 0 or xy[:, 1].max() < 0 or xy[:, 0].min() > w or xy[:, 1].min() > h:
            self.problem(key, f"a polygon outside the {w}x{h} image was dropped")
            return
        # Pixel (r, c) has its centre at (c + 0.5, r + 0.5); skimage tests integer centres, hence −0.5.
        rr, cc = draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(h, w))
        if rr.size:
            mask[rr, cc] = True
        else:  # too thin to hold a pixel centre: keep the pixel under its mean vertex
            cx, cy = xy.mean(axis=0)
            mask[min(max(math.floor(cy), 0), h - 1), min(max(math.floor(cx), 0), w - 1)] = True
        self.entries[key].kept += 1

    def mask(self, key: str, m: np.ndarray, what: str) -> bool:
        """Add a boolean mask; one of the wrong size is refused (returns ``False``) for the caller to act."""
        h, w = self.sizes[key]
        if m.shape != (h, w):
            self.problem(key, f"{what}: size {m.shape[1]}x{m.shape[0]} differs from the image's {w}x{h}")
            return False
        self.regions(key)[...] |= m
        self.entries[key].kept += 1
        return True

    def finish(self) -> tuple[dict[str, Truth], list[str]]:
        truths: dict[str, Truth] = {}
        warnings = list(self.warnings)
        for key, e in self.entries.items():
            parts = [m if n == 1 else f"{m} (×{n})" for m, n in e.problems.items()]
            omit = e.left_out is not None or (e.dropped > 0 and e.kept == 0)
            if e.left_out is not None:
                parts.append(e.left_out)
            if omit:
                parts.append("sample left out")
            if parts:
                warnings.append(f"{self.source}: {key}: {'; '.join(parts)}")
            if not omit:
                pts = None if e.points is None else np.asarray(e.points, dtype=np.float64).reshape(-1, 2)
                truths[key] = Truth(mask=e.mask, points=pts)
        return truths, warnings


def _centre_span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """First and last pixel index whose centre ``i + 0.5`` lies in ``[lo, hi]``, clipped to ``[0, n)``."""
    first = max(math.ceil(lo - 0.5), 0)
    last = min(math.floor(hi - 0.5), n - 1)
    if last < first:  # thinner than a pixel: the pixel under the middle
        first = last = min(max(math.floor((lo + hi) / 2), 0), n - 1)
    return first, last


def read_mask_png(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask image as bool ``[H, W]``: non-zero (in any colour channel, alpha ignored) = finding.

    Raises:
        DataError: For a missing or non-regular file, one larger than ``max_pixels`` (not decoded), or one
            that is no readable image.
    """
    try:
        with open_image(path, max_pixels, "mask") as im:
            im.load()
            a = np.asarray(im)
            mode = im.mode
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read mask {path.name}: {exc}") from None
    if a.ndim == 3:
        a = a[..., :1] if mode in ("LA", "La") else a[..., :3]
        return np.asarray((a != 0).any(axis=-1))
    return np.asarray(a != 0)


def _reader(*names: str) -> Callable[[Reader], Reader]:
    def decorate(fn: Reader) -> Reader:
        for name in names:
            READERS.register(name)(fn)
        return fn

    return decorate


@_reader("points_csv")
def _read_points_csv(path: Path, col: Collector) -> None:
    reader = csv.reader(io.StringIO(read_text(path, "points CSV"), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: row {reader.line_num}: not a valid CSV row: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty file; expected a header image,x,y")
    header = [h.strip().lower() for h in rows[0]]
    image_col = next((header.index(c) for c in _IMAGE_COLUMNS if c in header), None)
    if image_col is None or "x" not in header or "y" not in header:
        raise DataError(f"{path}: header must name the image, x and y columns, got {rows[0]}")
    ix, iy = header.index("x"), header.index("y")
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [c.strip() for c in row] + [""] * len(header)
        if not cells[image_col]:
            col.warn(f"row {lineno}: empty image name; row ignored")
            continue
        key = col.image(cells[image_col], f"row {lineno}")
        if key is None:
            continue
        if not cells[ix] and not cells[iy]:
            col.points(key, [])  # annotated, no point
            continue
        try:
            col.points(key, [(float(cells[ix]), float(cells[iy]))])
        except ValueError:
            col.points(key, [None])  # counted as a malformed point


@_reader("json", "robustxai")
def _read_json(path: Path, col: Collector) -> None:
    doc = load_json(path)
    tag = doc.get("format")
    if tag is not None and tag != ROBUSTXAI_FORMAT:
        raise DataError(f'{path}: unknown "format" {tag!r}; expected "{ROBUSTXAI_FORMAT}" or none')
    images = doc.get("images")
    if not isinstance(images, dict):
        raise DataError(f'{path}: "images" must be an object keyed by image')
    for file_key, entry in images.items():
        key = col.image(file_key, "images")
        if key is None:
            continue
        if not isinstance(entry, dict):
            col.leave_out(key, "its entry is not an object")
            continue
        unknown = sorted(set(entry) - _JSON_FIELDS)
        if unknown:
            col.problem(key, f"unknown field(s) {', '.join(unknown)} ignored", dropped=False)
        if "points" in entry:
            col.points(key, [] if entry["points"] is None else entry["points"])
        for name, add in (("boxes", col.box), ("polygons", col.polygon)):
            if name not in entry:
                continue
            items = [] if entry[name] is None else entry[name]
            col.regions(key)
            if not isinstance(items, list):
                col.problem(key, f"{name} must be a list; dropped")
                continue
            for item in items:
                add(key, item)
        mask = entry.get("mask")
        if mask is not None and not isinstance(mask, str):
            col.problem(key, f"mask must be a path string, got {type(mask).__name__}; dropped")
        elif mask:
            try:
                m = read_mask_png(path.parent / mask.replace("\\", "/"), col.max_pixels)
            except DataError as exc:
                col.problem(key, f"mask dropped: {exc}")
            else:
                col.mask(key, m, f"mask {mask} dropped")
