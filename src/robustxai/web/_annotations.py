"""The annotate room's data: a data folder's images, annotations in ``studio.sqlite``, exports, agreement.

Images are found once at start (PNG, 16-bit PNG, JPEG, DICOM through :mod:`robustxai.data`'s readers) and
addressed by their index in the sorted list: no path from the client reaches the file system. Each
annotator's shapes of an image are one row (replaced on every change, in one transaction, with who and
when), so nothing but the change being sent is lost on a closed tab or a killed server.

Coordinates follow :mod:`robustxai.data._annotations`: points are ``(x, y)`` with pixel centres at integers;
boxes ``[x0, y0, x1, y1]`` and polygons ``[[x, y], …]`` are continuous (the image spans ``[0, W] × [0, H]``),
so ``annotations.json`` is read back by the audit unchanged.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from robustxai.data._imageio import is_image_file, read_image

FORMAT = "robustxai-annotations/1"


class ShapeRecord(TypedDict):
    """A saved :class:`Shape` as the store returns it (JSON: the points are lists)."""

    type: str
    points: list[list[float]]


class AnnotationRecord(TypedDict):
    """One annotator's saved annotation of one image, with who and when."""

    image: str
    annotator: str
    shapes: list[ShapeRecord]
    no_finding: bool
    note: str
    updated_at: float


SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations(image TEXT, annotator TEXT, shapes TEXT, no_finding INTEGER,
    note TEXT, updated_at REAL, PRIMARY KEY(image, annotator));
"""
MAX_SHAPES = 500
Coord = float


class Shape(BaseModel):
    """One shape: ``point`` (``points`` has one pair), ``box`` (two corners) or ``polygon`` (≥ 3 vertices)."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^(point|box|polygon)$")
    points: list[tuple[Coord, Coord]] = Field(min_length=1, max_length=1000)

    @field_validator("points")
    @classmethod
    def _finite(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if not np.isfinite(np.asarray(v, dtype=np.float64)).all():
            raise ValueError("coordinates must be finite numbers")
        return v


class ImageAnnotation(BaseModel):
    """What the annotate page sends on every change."""

    model_config = ConfigDict(extra="forbid")
    shapes: list[Shape] = Field(default_factory=list, max_length=MAX_SHAPES)
    no_finding: bool = False
    note: str = Field(default="", max_length=5000)


def scan_images(folder: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``folder`` (sorted; hidden files skipped)."""
    found = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and is_image_file(p)
    ]
    return sorted(found)


def display_png(path: Path) -> tuple[bytes, int, int]:
    """An image as an 8-bit PNG for display (1–99 % percentile window), with its width and height.

    DICOM pixels come windowed by :func:`robustxai.data._dicom.read_dicom`; none of its header is shown.
    """
    a = read_image(path, channels=3)
    lo, hi = np.percentile(a, [1, 99]) if a.size else (0.0, 1.0)
    v = np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else a
    rgb = (np.moveaxis(v, 0, -1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue(), int(a.shape[-1]), int(a.shape[-2])


class AnnotationStore:
    """Annotations in the run's ``studio.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def save(self, image: str, annotator: str, ann: ImageAnnotation) -> float:
        """Replace one annotator's annotation of one image (one transaction); return the time saved."""
        now = time.time()
        shapes = json.dumps([s.model_dump() for s in ann.shapes])
        conn = self._conn()
        try:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO annotations VALUES (?,?,?,?,?,?)",
                    (image, annotator, shapes, int(ann.no_finding), ann.note, now),
                )
        finally:
            conn.close()
        return now

    def load(self, image: str | None = None) -> list[AnnotationRecord]:
        """Every annotation (of one image when given) as dicts with who and when."""
        conn = self._conn()
        try:
            query = "SELECT image, annotator, shapes, no_finding, note, updated_at FROM annotations"
            rows = conn.execute(
                query + (" WHERE image = ?" if image else "") + " ORDER BY image, annotator",
                (image,) if image else (),
            ).fetchall()
        finally:
            conn.close()
        return [
            {
                "image": i,
                "annotator": a,
                "shapes": json.loads(s),
                "no_finding": bool(n),
                "note": note,
                "updated_at": t,
            }
            for i, a, s, n, note, t in rows
        ]


def to_annotations_json(rows: list[AnnotationRecord], annotator: str) -> dict[str, object]:
    """One annotator's work in the format the audit reads (``robustxai-annotations/1``)."""
    images: dict[str, object] = {}
    for r in rows:
        if r["annotator"] != annotator or (not r["shapes"] and not r["no_finding"]):
            continue
        kinds: dict[str, list[object]] = {"points": [], "boxes": [], "polygons": []}
        for s in r["shapes"]:
            pts = s["points"]
            if s["type"] == "point":
                kinds["points"].append(list(pts[0]))
            elif s["type"] == "box" and len(pts) == 2:
                (x0, y0), (x1, y1) = pts
                kinds["boxes"].append([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)])
            elif s["type"] == "polygon" and len(pts) >= 3:
                kinds["polygons"].append([list(p) for p in pts])
        images[r["image"]] = kinds
    return {"format": FORMAT, "annotator": annotator, "images": images}


def to_coco(
    rows: list[AnnotationRecord], annotator: str, sizes: dict[str, tuple[int, int]]
) -> dict[str, object]:
    """One annotator's boxes and polygons as COCO (points become 1 × 1 boxes around the pixel centre)."""
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    for img_id, r in enumerate(x for x in rows if x["annotator"] == annotator):
        w, h = sizes.get(r["image"], (0, 0))
        images.append({"id": img_id, "file_name": r["image"], "width": w, "height": h})
        for s in r["shapes"]:
            pts = np.asarray(s["points"], dtype=np.float64)
            if s["type"] == "point":
                x, y = pts[0]
                bbox, seg = [float(x), float(y), 1.0, 1.0], []  # the pixel whose centre is (x + .5, y + .5)
            else:
                lo, hi = pts.min(axis=0), pts.max(axis=0)
                bbox = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
                seg = [pts.ravel().tolist()] if s["type"] == "polygon" else []
            anns.append(
                {
                    "id": len(anns),
                    "image_id": img_id,
                    "category_id": 1,
                    "bbox": bbox,
                    "segmentation": seg,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "finding"}]}


def region_mask(shapes: list[ShapeRecord], width: int, height: int) -> np.ndarray:
    """The union of an annotator's boxes and polygons as a mask (pixel centres inside, like the audit)."""
    from skimage.draw import polygon as fill

    mask = np.zeros((height, width), dtype=bool)
    for s in shapes:
        pts = np.asarray(s["points"], dtype=np.float64)
        if s["type"] == "box" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif s["type"] != "polygon" or len(pts) < 3:
            continue
        rr, cc = fill(pts[:, 1] - 0.5, pts[:, 0] - 0.5, shape=mask.shape)
        mask[rr, cc] = True
    return mask


def _point_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two point sets (pixels)."""
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float((d.min(axis=1).mean() + d.min(axis=0).mean()) / 2)


def agreement(rows: list[AnnotationRecord], width: int, height: int) -> dict[str, float | int]:
    """Agreement between the annotators of one image, averaged over every pair of annotators.

    Returns:
        ``annotators``; ``point_distance`` (symmetric mean nearest-neighbour distance in pixels, pairs where
        both clicked points); ``region_iou`` (IoU of the box/polygon masks, pairs where either drew one);
        ``finding_agreement`` (share of pairs that agree whether there is a finding). NaN where undefined.
    """
    dists, ious, same = [], [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i], rows[j]
            pa = np.array([s["points"][0] for s in a["shapes"] if s["type"] == "point"], dtype=np.float64)
            pb = np.array([s["points"][0] for s in b["shapes"] if s["type"] == "point"], dtype=np.float64)
            if len(pa) and len(pb):
                dists.append(_point_distance(pa.reshape(-1, 2), pb.reshape(-1, 2)))
            if width and height:
                ma, mb = region_mask(a["shapes"], width, height), region_mask(b["shapes"], width, height)
                union = int((ma | mb).sum())
                if union:
                    ious.append(float((ma & mb).sum()) / union)
            same.append(float(bool(a["shapes"]) == bool(b["shapes"])))
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {
        "annotators": len(rows),
        "point_distance": mean(dists),
        "region_iou": mean(ious),
        "finding_agreement": mean(same),
    }
