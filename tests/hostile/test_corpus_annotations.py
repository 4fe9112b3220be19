"""Hostile corpus: ground truth in every format the loaders read (robustxai JSON, points CSV, generic JSON,
COCO with polygons and RLE, mask PNG folders, YOLO)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cases import TARGET, Case, Workspace, params, png_header_only, run_case, unblock_fifo_after
from PIL import Image

NAME = Path(TARGET).name
BLOCK_S = 5.0  # a FIFO is released after this long; a reader that waited for it has blocked


def entry(change: Callable[[dict[str, Any]], Any]) -> Callable[[Workspace], None]:
    """annotations.json with the target's entry replaced by ``change(entry)``."""

    def build(ws: Workspace) -> None:
        doc = ws.annotations()
        doc["images"][TARGET] = change(doc["images"][TARGET])
        ws.write_annotations(doc)

    return build


def document(change: Callable[[dict[str, Any]], Any]) -> Callable[[Workspace], None]:
    """annotations.json replaced by ``change(document)``."""

    def build(ws: Workspace) -> None:
        ws.write_annotations(change(ws.annotations()))

    return build


def text(name: str, content: str | bytes) -> Callable[[Workspace], None]:
    """The data folder's file ``name`` holds exactly ``content``."""

    def build(ws: Workspace) -> None:
        (ws.data / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return build


def mask_file(make: Callable[[Path], None]) -> Callable[[Workspace], None]:
    """The target's mask file replaced: ``make(path)`` writes (or makes) it."""

    def build(ws: Workspace) -> None:
        path = ws.data / ws.annotations()["images"][TARGET]["mask"]
        path.unlink()
        make(path)
        if make is fifo:
            ws.max_seconds = BLOCK_S

    return build


def fifo(path: Path) -> None:
    os.mkfifo(path)
    unblock_fifo_after(path, BLOCK_S)


def png(size: tuple[int, int]) -> Callable[[Path], None]:
    return lambda p: Image.fromarray(np.full(size[::-1], 255, dtype=np.uint8)).save(p)


def external(fmt: str, name: str, content: Any) -> Callable[[Workspace], None]:
    """Ground truth from the file (or folder) ``name`` in format ``fmt``; ``content(ws)`` writes it."""

    def build(ws: Workspace) -> None:
        content(ws.data / name)
        ws.cfg["data"].update(annotations=str(ws.data / name), annotation_format=fmt)

    return build


def write(text_: str | bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(text_ if isinstance(text_, bytes) else text_.encode())


def coco(images: Any, annotations: Any) -> Callable[[Path], None]:
    import json

    return lambda p: p.write_text(json.dumps({"images": images, "annotations": annotations}))


def folder(files: dict[str, bytes | Callable[[Path], None]]) -> Callable[[Path], None]:
    """A folder of files named relative to it (bytes, or a writer of the path)."""

    def make(root: Path) -> None:
        for rel, content in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (root / rel).write_bytes(content)
            else:
                content(root / rel)

    return make


IMG = {"id": 1, "file_name": NAME, "width": 16, "height": 16}
GOOD_BOX = {"image_id": 1, "bbox": [2, 2, 6, 6]}
STEM = Path(TARGET).with_suffix("").as_posix()

JSON_CASES = [
    Case("ann-not-json", text("annotations.json", "{not json"), "error", "annotations.json"),
    Case("ann-top-level-list", text("annotations.json", "[1, 2]"), "error", "annotations.json"),
    Case("ann-wrong-format-tag", document(lambda d: {**d, "format": "v9"}), "error", "format"),
    Case("ann-images-list", document(lambda d: {**d, "images": [1]}), "error", '"images" must be an object'),
    Case("ann-not-utf8", text("annotations.json", b'{"format": "\xff"}'), "error", "annotations.json"),
    Case(
        "ann-class-names-other",
        document(lambda d: {**d, "class_names": ["a", "b"]}),
        "error",
        "unknown label",
    ),
    Case("ann-points-string", entry(lambda e: {**e, "points": "abc"}), "warn", "points dropped"),
    Case("ann-points-triples", entry(lambda e: {**e, "points": [[1, 2, 3]]}), "warn", "points dropped"),
    Case("ann-points-dict", entry(lambda e: {**e, "points": {"x": 1}}), "warn", "points dropped"),
    Case("ann-points-null-pair", entry(lambda e: {**e, "points": [[None, 1]]}), "warn", "dropped"),
    Case(
        "ann-points-outside",
        entry(lambda e: {**e, "points": [[99, 99]]}),
        "warn",
        "outside the 16x16 image",
        full_report=True,
    ),
    Case("ann-points-huge", entry(lambda e: {**e, "points": [[1e308, -1e308]]}), "warn", "outside the 16x16"),
    Case("ann-mask-missing", entry(lambda e: {**e, "mask": "masks/none.png"}), "warn", "mask dropped"),
    Case("ann-mask-number", entry(lambda e: {**e, "mask": 5}), "warn", "mask dropped"),
    Case("ann-mask-list", entry(lambda e: {**e, "mask": ["a"]}), "warn", "mask dropped"),
    Case("ann-mask-wrong-size", mask_file(png((8, 8))), "warn", "differs from the image's"),
    Case("ann-mask-truncated", mask_file(write(b"\x89PNG\r\n\x1a\n")), "warn", "mask dropped"),
    Case("ann-mask-directory", mask_file(lambda p: p.mkdir()), "warn", "mask dropped"),
    Case("ann-mask-fifo", mask_file(fifo), "warn", "mask dropped"),
    Case("ann-entry-null", entry(lambda e: None), "ok"),
]

EXTERNAL_CASES = [
    Case("csv-bad-header", external("points_csv", "p.csv", write("a,b\n1,2\n")), "error", "header must name"),
    Case("csv-not-utf8", external("points_csv", "p.csv", write(b"image,x,y\n\xff,1,2\n")), "error", "p.csv"),
    Case(
        "csv-bad-number", external("points_csv", "p.csv", write(f"image,x,y\n{NAME},a,1\n")), "warn", "finite"
    ),
    Case(
        "csv-outside", external("points_csv", "p.csv", write(f"image,x,y\n{NAME},-40,3\n")), "warn", "outside"
    ),
    Case(
        "csv-unknown-image",
        external("points_csv", "p.csv", write("image,x,y\nnobody.png,1,1\n")),
        "warn",
        "no image",
    ),
    Case("csv-nul", external("points_csv", "p.csv", write(f"image,x,y\n{NAME}\0,1,1\n")), "ok"),
    Case(
        "json-boxes-dict",
        external("json", "b.json", write(f'{{"images": {{"{NAME}": {{"boxes": {{"a": 1}}}}}}}}')),
        "warn",
        "boxes must be a list",
    ),
    Case(
        "json-polygon-bad",
        external("json", "b.json", write(f'{{"images": {{"{NAME}": {{"polygons": [[1]]}}}}}}')),
        "warn",
        "polygon",
    ),
    Case(
        "json-box-inverted",
        external("json", "b.json", write(f'{{"images": {{"{NAME}": {{"boxes": [[9, 9, 1, 1]]}}}}}}')),
        "warn",
        "negative width",
    ),
    Case(
        "json-key-list",
        external("json", "b.json", write('{"images": {"' + NAME + '": []}}')),
        "warn",
        "its entry is not an object",
    ),
    Case("coco-not-lists", external("coco", "c.json", coco({}, {})), "error", "COCO needs"),
    Case(
        "coco-rle",
        external(
            "coco",
            "c.json",
            coco([IMG], [{"image_id": 1, "segmentation": {"counts": "x"}, "bbox": [1, 1, 4, 4]}]),
        ),
        "warn",
        "RLE segmentation not decoded",
    ),
    Case(
        "coco-rle-no-bbox",
        external("coco", "c.json", coco([IMG], [{"image_id": 1, "segmentation": {"counts": [1, 2]}}])),
        "warn",
        "RLE",
    ),
    Case(
        "coco-bbox-strings",
        external("coco", "c.json", coco([IMG], [{"image_id": 1, "bbox": ["a", "b", "c", "d"]}])),
        "warn",
        "no usable bbox",
    ),
    Case(
        "coco-null-segmentation",
        external("coco", "c.json", coco([IMG], [{"image_id": 1, "segmentation": None, "bbox": None}])),
        "warn",
        "no usable bbox",
    ),
    Case(
        "coco-size-mismatch",
        external("coco", "c.json", coco([{**IMG, "width": "16"}], [GOOD_BOX])),
        "warn",
        "sample left out",
    ),
    Case("coco-ann-not-object", external("coco", "c.json", coco([IMG], [7])), "warn", "no usable image"),
    Case(
        "coco-image-not-object",
        external("coco", "c.json", coco([3], [GOOD_BOX])),
        "warn",
        "needs 'id'",
    ),
    Case(
        "coco-file-name-list",
        external("coco", "c.json", coco([{**IMG, "file_name": [NAME]}], [GOOD_BOX])),
        "warn",
        "ignored",
    ),
    Case(
        "coco-id-list",
        external("coco", "c.json", coco([{**IMG, "id": [1]}], [GOOD_BOX])),
        "warn",
        "id",
    ),
    Case(
        "coco-image-id-dict",
        external("coco", "c.json", coco([IMG], [{**GOOD_BOX, "image_id": {"a": 1}}])),
        "warn",
        "image_id",
    ),
    Case(
        "coco-polygon-strings",
        external(
            "coco", "c.json", coco([IMG], [{"image_id": 1, "segmentation": [["a", "b", "c", "d", "e", "f"]]}])
        ),
        "warn",
        "polygon",
    ),
    Case(
        "masks-truncated",
        external("mask_png", "m", folder({f"{STEM}.png": b"\x89PNG\r\n\x1a\n"})),
        "warn",
        "cannot read mask",
    ),
    Case(
        "masks-wrong-size",
        external("mask_png", "m", folder({f"{STEM}.png": png((4, 4))})),
        "warn",
        "differs from the image's",
    ),
    Case(
        "masks-bomb",
        external("mask_png", "m", folder({f"{STEM}.png": write(png_header_only(30000, 30000))})),
        "warn",
        NAME,
    ),
    Case(
        "yolo-garbage",
        external("yolo", "y", folder({f"{STEM}.txt": b"0 a b c d\n"})),
        "warn",
        "is not 'class cx cy w h'",
    ),
    Case(
        "yolo-not-utf8",
        external("yolo", "y", folder({f"{STEM}.txt": b"\xff\xfe\n"})),
        "warn",
        "not valid UTF-8",
    ),
    Case(
        "yolo-nan",
        external("yolo", "y", folder({f"{STEM}.txt": b"0 nan 0.5 0.1 0.1\n"})),
        "warn",
        "is not 'class cx cy w h'",
    ),
    Case("format-mismatch", external("yolo", "p.csv", write("image,x,y\n")), "error", "expects a folder"),
    Case(
        "annotations-missing",
        lambda ws: ws.cfg["data"].update(annotations="nope.json"),
        "error",
        "annotations not found",
    ),
]


@pytest.mark.parametrize("case", params(JSON_CASES + EXTERNAL_CASES))
def test_annotations(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    run_case(case, ws, caplog)
