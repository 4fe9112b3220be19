"""Ground-truth file formats: each format round-trips to the expected Truth, and every bad sample warns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from PIL import Image

from robustxai import DataError, RobustXAIError, UnknownNameError
from robustxai.data import SyntheticFracture
from robustxai.data._annotations import (
    AnnotationResult,
    detect_format,
    list_formats,
    match_key,
    read_annotations,
)
from robustxai.data._folder import write_folder

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._annotations, robustxai.data._folder"

H, W = 40, 50
SIZES = {"fracture/img_001.png": (H, W), "fracture/img_002.png": (H, W), "normal/img_003.png": (32, 32)}


def _box_mask(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def _centres_inside(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Independent rasterisation: pixel (r, c) is in when its centre (c + 0.5, r + 0.5) is in the polygon."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = np.c_[cols.ravel() + 0.5, rows.ravel() + 0.5]
    return MplPath(polygon).contains_points(centres).reshape(shape)


def _warned(result: AnnotationResult, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in result.warnings)


# --------------------------------------------------------------------------- keys


def test_match_key_levels() -> None:
    keys = ["fracture/img_001.png", "fracture/img_002.jpg", "normal/img_003.png", "a/b/deep.png"]
    assert match_key("fracture/img_001.png", keys) == "fracture/img_001.png"
    assert match_key(".\\fracture\\img_001.png", keys) == "fracture/img_001.png"
    assert match_key("img_001.png", keys) == "fracture/img_001.png"
    assert match_key("img_002", keys) == "fracture/img_002.jpg"
    assert match_key("fracture/img_002.png", keys) == "fracture/img_002.jpg"  # mask named .png for a .jpg
    assert match_key("img_003.txt", keys) == "normal/img_003.png"
    assert match_key("b/deep.png", keys) == "a/b/deep.png"
    assert match_key("img_999", keys) is None
    assert match_key("", keys) is None
    # A stem shared by two class folders is ambiguous; the full path still matches.
    both = keys + ["normal/img_001.png"]
    assert match_key("img_001", both) is None
    assert match_key("normal/img_001.png", both) == "normal/img_001.png"


# --------------------------------------------------------------------------- points CSV


def test_points_csv_round_trip_and_warnings(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(
        "image,x,y,reader\n"
        "img_001.png,10,20,A\n"
        "fracture/img_001.png,11.5,21.25,B\n"
        "img_002,49.5,-0.5,A\n"  # on the outer pixel edges: kept
        "img_002,50,3,A\n"  # just outside: dropped, sample kept
        "img_003,,,A\n"  # annotated without points
        "ghost.png,1,1,A\n"
        ",1,1,A\n"
        "img_002,abc,3,A\n"
        "\n",
        encoding="utf-8",
    )
    res = read_annotations(path, SIZES)
    assert set(res.truths) == set(SIZES)
    np.testing.assert_array_equal(res.truths["fracture/img_001.png"].points, [[10, 20], [11.5, 21.25]])
    np.testing.assert_array_equal(res.truths["fracture/img_002.png"].points, [[49.5, -0.5]])
    t3 = res.truths["normal/img_003.png"]
    assert t3.points is not None and t3.points.shape == (0, 2) and t3.mask is None
    assert _warned(res, "fracture/img_002.png", "outside the 50x40 image", "not a finite")
    assert not _warned(res, "fracture/img_002.png", "left out")
    assert _warned(res, "ghost.png", "no image matches") and _warned(res, "row 8", "empty image name")
    assert all(t.mask is None for t in res.truths.values())


def test_points_csv_all_points_outside_leaves_sample_out(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("path,x,y\nimg_001.png,100,100\nimg_002.png,3,4\n", encoding="utf-8")
    res = read_annotations(path, SIZES, fmt="points_csv")
    assert list(res.truths) == ["fracture/img_002.png"]
    assert _warned(res, "fracture/img_001.png", "outside", "sample left out")


# --------------------------------------------------------------------------- JSON points / boxes / polygons


def test_json_points_boxes_polygons(tmp_path: Path) -> None:
    triangle = [[5.2, 3.1], [30.7, 8.4], [12.3, 35.6]]
    doc = {
        "images": {
            "img_001": {"points": [[1, 2]], "boxes": [[10, 5, 20, 15], [0, 0, 1, 1]]},
            "fracture/img_002.png": {"polygons": [triangle], "points": [[60, 1]], "note": "x"},
            "img_003.png": {"boxes": [], "points": []},
            "ghost": {"points": [[1, 1]]},
        }
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert detect_format(path) == "json"
    res = read_annotations(path, SIZES)
    t1 = res.truths["fracture/img_001.png"]
    expected = _box_mask((H, W), (5, 15), (10, 20)) | _box_mask((H, W), (0, 1), (0, 1))
    np.testing.assert_array_equal(t1.mask, expected)
    assert (
        t1.mask is not None and int(t1.mask.sum()) == 10 * 10 + 1
    )  # integer box [x0, x1] covers x1 − x0 columns
    np.testing.assert_array_equal(t1.points, [[1, 2]])
    t2 = res.truths["fracture/img_002.png"]
    np.testing.assert_array_equal(t2.mask, _centres_inside(np.array(triangle), (H, W)))
    assert t2.points is not None and len(t2.points) == 0  # its only point was outside
    t3 = res.truths["normal/img_003.png"]
    assert t3.mask is not None and not t3.mask.any() and t3.mask.shape == (32, 32) and t3.empty
    assert _warned(res, "fracture/img_002.png", "unknown field(s) note", "outside")
    assert _warned(res, "'ghost'", "no image matches")


def test_json_bad_regions_warn(tmp_path: Path) -> None:
    doc = {
        "images": {
            "img_001": {"boxes": [[1, 2, 3], [30, 30, 10, 10], [60, 0, 70, 5], [4, 4, 8, 8]]},
            "img_002": {"polygons": [[[1, 1], [2, 2]], [[-9, -9], [-5, -9], [-5, -5]]]},
            "img_003": "not an object",
        }
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = read_annotations(path, SIZES, fmt="json")
    np.testing.assert_array_equal(res.truths["fracture/img_001.png"].mask, _box_mask((H, W), (4, 8), (4, 8)))
    assert _warned(res, "img_001", "not 4 finite", "negative width", "box outside")
    assert "fracture/img_002.png" not in res.truths and "normal/img_003.png" not in res.truths
    assert _warned(res, "img_002", "≥ 3 finite", "polygon outside", "sample left out")
    assert _warned(res, "img_003", "not an object", "sample left out")


def test_thin_regions_never_vanish(tmp_path: Path) -> None:
    path = tmp_path / "thin.json"
    doc = {
        "images": {
            "img_001": {"boxes": [[10.1, 5.1, 10.2, 5.2]]},
            "img_002": {"polygons": [[[3.1, 3.1], [3.3, 3.1], [3.2, 3.2]]]},
        }
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = read_annotations(path, SIZES)
    for key, pixel in (("fracture/img_001.png", (5, 10)), ("fracture/img_002.png", (3, 3))):
        m = res.truths[key].mask
        assert m is not None and int(m.sum()) == 1 and m[pixel]


def test_robustxai_format_round_trip_from_write_folder(tmp_path: Path) -> None:
    ds = SyntheticFracture(n=4, size=32, seed=1)
    write_folder(ds, tmp_path)
    rels = [line.split(",")[0] for line in (tmp_path / "manifest.csv").read_text().splitlines()[1:]]
    sizes = dict.fromkeys(rels, (32, 32))
    res = read_annotations(tmp_path / "annotations.json", sizes)
    assert res.warnings == [] and set(res.truths) == set(sizes)
    assert any(t.mask is not None and t.mask.any() for t in res.truths.values())
    for i, rel in enumerate(rels):
        truth = ds[i].truth
        got = res.truths[rel]
        for a, b in ((got.mask, truth.mask), (got.points, truth.points)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_robustxai_format_bad_mask_keeps_points(tmp_path: Path) -> None:
    Image.fromarray(np.full((10, 10), 255, dtype=np.uint8)).save(tmp_path / "m.png")
    doc = {
        "format": "robustxai-annotations/1",
        "images": {
            "fracture/img_001.png": {"points": [[3, 4]], "mask": "m.png"},
            "fracture/img_002.png": {"points": [], "mask": "missing.png"},
        },
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = read_annotations(path, SIZES, fmt="robustxai")
    t1 = res.truths["fracture/img_001.png"]
    assert t1.mask is None and t1.points is not None and t1.points.tolist() == [[3.0, 4.0]]
    assert _warned(res, "img_001", "size 10x10 differs from the image's 50x40")
    assert "fracture/img_002.png" not in res.truths and _warned(res, "img_002", "cannot read mask")
    path.write_text(json.dumps({"format": "other/2", "images": {}}), encoding="utf-8")
    with pytest.raises(DataError, match='unknown "format"'):
        read_annotations(path, SIZES)


# --------------------------------------------------------------------------- mask PNGs


def test_mask_png_folder(tmp_path: Path) -> None:
    root = tmp_path / "masks"
    (root / "fracture").mkdir(parents=True)
    m1 = _box_mask((H, W), (3, 9), (4, 30))
    Image.fromarray(m1.astype(np.uint8) * 255).save(root / "fracture" / "img_001.png")
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque alpha must not count as finding
    rgba[10:12, 5:7, 1] = 7
    Image.fromarray(rgba, mode="RGBA").save(root / "img_002.png")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(root / "img_003.png")  # wrong size
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(root / "ghost.png")
    (root / "broken.png").write_bytes(b"not a png")
    sizes = dict(SIZES, **{"broken.jpg": (4, 4)})
    assert detect_format(root) == "mask_png"
    res = read_annotations(root, sizes)
    np.testing.assert_array_equal(res.truths["fracture/img_001.png"].mask, m1)
    np.testing.assert_array_equal(
        res.truths["fracture/img_002.png"].mask, _box_mask((H, W), (10, 12), (5, 7))
    )
    assert res.truths["fracture/img_001.png"].points is None
    assert "normal/img_003.png" not in res.truths and _warned(res, "img_003", "10x10", "left out")
    assert "broken.jpg" not in res.truths and _warned(res, "broken.jpg", "cannot read mask")
    assert _warned(res, "ghost.png", "no image matches")


# --------------------------------------------------------------------------- YOLO


def test_yolo_folder(tmp_path: Path) -> None:
    root = tmp_path / "labels"
    root.mkdir()
    (root / "classes.txt").write_text("fracture\n", encoding="utf-8")
    # cx = 0.5·50 = 25, cy = 0.5·40 = 20, w = 0.2·50 = 10, h = 0.5·40 = 20 → x 20..30, y 10..30.
    (root / "img_001.txt").write_text("0 0.5 0.5 0.2 0.5\n\n3 0.1 0.1 0.04 0.05\n", encoding="utf-8")
    tri = np.array([[0.1, 0.1], [0.6, 0.2], [0.3, 0.9]])
    (root / "img_002.txt").write_text(
        "1 " + " ".join(f"{v:.6f}" for v in tri.ravel()) + "\n0 0.5\n", encoding="utf-8"
    )
    (root / "img_003.txt").write_text("", encoding="utf-8")
    (root / "other.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    assert detect_format(root) == "yolo"
    res = read_annotations(root, SIZES)
    expected = _box_mask((H, W), (10, 30), (20, 30)) | _box_mask((H, W), (3, 5), (4, 6))
    np.testing.assert_array_equal(res.truths["fracture/img_001.png"].mask, expected)
    poly = tri * np.array([W, H])
    np.testing.assert_array_equal(res.truths["fracture/img_002.png"].mask, _centres_inside(poly, (H, W)))
    assert _warned(res, "img_002", "line 2", "not 'class cx cy w h'")
    t3 = res.truths["normal/img_003.png"]
    assert t3.mask is not None and t3.mask.shape == (32, 32) and not t3.mask.any()
    assert _warned(res, "other.txt", "no image matches")


# --------------------------------------------------------------------------- COCO


def test_coco(tmp_path: Path) -> None:
    square = [12.0, 4.0, 22.0, 4.0, 22.0, 14.0, 12.0, 14.0]
    doc = {
        "images": [
            {"id": 1, "file_name": "img_001.png", "width": W, "height": H},
            {"id": 2, "file_name": "fracture/img_002.png"},
            {"id": 3, "file_name": "img_003.png", "width": 64, "height": 64},
            {"id": 4, "file_name": "ghost.png", "width": 8, "height": 8},
            {"file_name": "no_id.png"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "bbox": [2, 3, 10, 5], "segmentation": [square]},
            {"id": 11, "image_id": 1, "bbox": [30, 30, 4, 4]},
            {
                "id": 12,
                "image_id": 2,
                "bbox": [0, 0, 3, 2],
                "segmentation": {"size": [H, W], "counts": "abc"},
            },
            {"id": 13, "image_id": 3, "bbox": [0, 0, 3, 3]},
            {"id": 14, "image_id": 99, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 1, "name": "fracture"}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert detect_format(path) == "coco"
    res = read_annotations(path, SIZES)
    # Polygons win over the bbox of the same annotation; pixels with centres inside the 10×10 square.
    m1 = _box_mask((H, W), (4, 14), (12, 22)) | _box_mask((H, W), (30, 34), (30, 34))
    np.testing.assert_array_equal(res.truths["fracture/img_001.png"].mask, m1)
    np.testing.assert_array_equal(res.truths["fracture/img_002.png"].mask, _box_mask((H, W), (0, 2), (0, 3)))
    assert _warned(res, "img_002", "RLE segmentation not decoded; its bbox used")
    assert "normal/img_003.png" not in res.truths and _warned(res, "img_003", "COCO says 64x64", "left out")
    assert _warned(res, "images[4]", "needs 'id'") and _warned(res, "annotations[4]", "id 99")
    assert _warned(res, "ghost.png", "no image matches")


# --------------------------------------------------------------------------- truth moves with the image


def test_truth_resized_moves_read_annotations_with_the_image(tmp_path: Path) -> None:
    root = tmp_path / "labels"
    root.mkdir()
    (root / "img_001.txt").write_text("0 0.5 0.5 0.2 0.5\n", encoding="utf-8")
    small = read_annotations(root, {"img_001.png": (H, W)}).truths["img_001.png"]
    for dst in ((2 * H, 2 * W), (H // 2, W // 2)):
        direct = read_annotations(root, {"img_001.png": dst}).truths["img_001.png"]
        np.testing.assert_array_equal(small.resized((H, W), dst).mask, direct.mask)
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("image,x,y\nimg_001.png,25,20\n", encoding="utf-8")
    pt = read_annotations(csv_path, {"img_001.png": (H, W)}).truths["img_001.png"]
    moved = pt.resized((H, W), (2 * H, 2 * W))
    assert moved.points is not None
    x, y = np.floor(moved.points[0] + 0.5).astype(int)
    big = small.resized((H, W), (2 * H, 2 * W)).mask
    assert big is not None and big[y, x]  # the point still lies on the finding after resizing
    np.testing.assert_allclose(moved.points, [[50.5, 40.5]])


# --------------------------------------------------------------------------- file-level errors


def test_file_level_errors(tmp_path: Path) -> None:
    assert {"points_csv", "json", "robustxai", "mask_png", "yolo", "coco"} == set(list_formats())
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("image,x\nimg_001,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must name"):
        read_annotations(csv_path, SIZES)
    with pytest.raises(UnknownNameError, match="Did you mean 'yolo'"):
        read_annotations(csv_path, SIZES, fmt="yolov5")
    with pytest.raises(DataError, match="not found"):
        read_annotations(tmp_path / "nope.json", SIZES)
    with pytest.raises(DataError, match="expects a folder"):
        read_annotations(csv_path, SIZES, fmt="yolo")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read"):
        read_annotations(bad, SIZES)
    bad.write_text(json.dumps({"annotations": []}), encoding="utf-8")
    with pytest.raises(DataError, match="neither COCO"):
        read_annotations(bad, SIZES)
    (tmp_path / "ann.xml").write_text("<a/>", encoding="utf-8")
    with pytest.raises(DataError, match="pass fmt"):
        read_annotations(tmp_path / "ann.xml", SIZES)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.txt").write_text("", encoding="utf-8")
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(mixed / "a.png")
    with pytest.raises(DataError, match="both"):
        read_annotations(mixed, SIZES)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no YOLO"):
        read_annotations(tmp_path / "empty_dir", SIZES)
    for sizes in ({"a.png": (0, 4)}, {"a.png": (4,)}, {"a.png": (2.5, 4)}, [("a.png", (4, 4))]):
        with pytest.raises(RobustXAIError, match="image_sizes"):
            read_annotations(csv_path, sizes)  # type: ignore[arg-type]
