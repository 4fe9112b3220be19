"""The folder and COCO readers behind :func:`robustxai.data.read_annotations`.

Mask PNG folders, YOLO label folders and COCO JSON; registered in ``READERS`` on import (by
``_annotations.py``). The shared machinery (:class:`Collector`, strict number parsing) lives in
``_annotation_formats.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustxai._errors import DataError
from robustxai._types import JsonValue
from robustxai.data._annotation_formats import (
    Collector,
    _reader,
    finite_numbers,
    load_json,
    read_mask_png,
)
from robustxai.data._files import decode_text, read_bytes


@_reader("mask_png")
def _read_mask_dir(path: Path, col: Collector) -> None:
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".png"):
        rel = f.relative_to(path).as_posix()
        key = col.image(rel, "masks")
        if key is None:
            continue
        try:
            m = read_mask_png(f, col.max_pixels)
        except DataError as exc:
            col.leave_out(key, str(exc))
            continue
        col.mask(key, m, f"mask {rel}")  # a mask of the wrong size leaves the sample out


@_reader("yolo")
def _read_yolo(path: Path, col: Collector) -> None:
    files = [p for p in path.rglob("*.txt") if p.is_file() and p.name != "classes.txt"]
    for f in sorted(files):
        rel = f.relative_to(path).as_posix()
        key = col.image(rel, "labels")
        if key is None:
            continue
        h, w = col.sizes[key]
        col.regions(key)
        try:
            lines = decode_text(read_bytes(f, "YOLO label file"), rel, "YOLO label file").splitlines()
        except DataError as exc:
            col.leave_out(key, str(exc))
            continue
        for lineno, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            v = _floats(parts[1:])
            if v is not None and v.size == 4:
                cx, cy, bw, bh = v * np.array([w, h, w, h])
                col.box(key, [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
            elif v is not None and v.size >= 6 and v.size % 2 == 0:
                col.polygon(key, v.reshape(-1, 2) * np.array([w, h]))
            else:
                col.problem(key, f"line {lineno} of {rel} is not 'class cx cy w h' (normalised); dropped")


def _floats(texts: list[str]) -> np.ndarray | None:
    """Numbers of a text line as a finite float vector, or ``None`` when any is not a number."""
    try:
        a = np.array([float(t) for t in texts], dtype=np.float64)
    except ValueError:
        return None
    return a if a.size and np.isfinite(a).all() else None


@_reader("coco")
def _read_coco(path: Path, col: Collector) -> None:
    doc = load_json(path)
    images, anns = doc.get("images"), doc.get("annotations")
    if not isinstance(images, list) or not isinstance(anns, list):
        raise DataError(f'{path}: COCO needs "images" and "annotations" lists')
    by_id: dict[int | str, str] = {}
    for i, im in enumerate(images):
        image_id = im.get("id") if isinstance(im, dict) else None
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or not _is_id(image_id):
            col.warn(f"images[{i}]: needs 'id' (an integer or string) and 'file_name' (a string); ignored")
            continue
        key = col.image(im["file_name"], f"images[{i}]")
        if key is None:
            continue
        by_id[image_id] = key  # type: ignore[index]  # _is_id checked it
        h, w = col.sizes[key]
        size = (im.get("height", h), im.get("width", w))
        if not all(_is_count(v) for v in size):
            col.leave_out(key, f"COCO height and width must be positive integers, got {size!r}")
        elif size != (h, w):
            col.leave_out(key, f"COCO says {size[1]}x{size[0]} but the image is {w}x{h}")
        col.regions(key)
    for j, ann in enumerate(anns):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        key = by_id.get(image_id) if _is_id(image_id) else None  # type: ignore[arg-type]
        if not isinstance(ann, dict) or key is None:
            if not _is_id(image_id) or image_id not in by_id:
                col.warn(f"annotations[{j}]: no usable image with id {image_id!r}; ignored")
            continue
        _coco_annotation(col, key, ann, j)


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _coco_annotation(col: Collector, key: str, ann: dict[str, JsonValue], j: int) -> None:
    """One COCO annotation: its polygons, or else its box (RLE masks are not decoded)."""
    seg, bbox = ann.get("segmentation"), ann.get("bbox")
    if isinstance(seg, list) and seg:
        flat = seg if not isinstance(seg[0], list) else None
        for poly in [flat] if flat is not None else seg:
            col.polygon(key, poly)
        return
    if isinstance(seg, dict):
        col.problem(key, "RLE segmentation not decoded; its bbox used instead", dropped=bbox is None)
    elif seg is not None and seg != []:
        col.problem(key, f"annotations[{j}]: segmentation must be a list of polygons", dropped=bbox is None)
    b = finite_numbers(bbox, 4)
    if b is None:
        col.problem(key, f"annotations[{j}] has no usable bbox [x, y, w, h] or polygon; dropped")
        return
    col.box(key, [b[0], b[1], b[0] + b[2], b[1] + b[3]])
