"""Regression tests for hostile data (issue 13): each case once ended in a traceback, a hang or silence.

Outcome classes: a one-line :class:`RobustXAIError`, or a per-sample warning while the rest loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import robustxai as rx
from robustxai import DataError, RobustXAIError
from robustxai.data import FolderDataset, read_annotations, read_manifest
from robustxai.data._imageio import read_image

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._config, robustxai.audit._data_checks, "
    "robustxai.data._dicom, robustxai.data._imageio"
)

# ---- helpers -----------------------------------------------------------------------------------------------


def png(path: Path, size: tuple[int, int] = (8, 8), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, dtype=np.uint8)).save(path)
    return path


def bomb_png(path: Path, width: int = 30000, height: int = 30000, bit_depth: int = 8) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (gray, 8- or 16-bit)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def class_folder(root: Path, per_class: int = 3) -> Path:
    for cls, value in (("normal", 60), ("fracture", 200)):
        for i in range(per_class):
            png(root / cls / f"{cls}_{i}.png", value=value + i)
    return root


def one_line(exc: BaseException) -> bool:
    return isinstance(exc, RobustXAIError) and "\n" not in str(exc)


def finishes(fn: Callable[[], Any], seconds: float = 20.0) -> dict[str, Any]:
    """Run ``fn`` in a thread: ``{"done": bool, "value" | "error": ...}`` (a blocked call is left behind)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    out["done"] = not thread.is_alive()
    return out


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Make FIFOs; afterwards open each for writing once, which frees a reader blocked on it (old code)."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    made: list[Path] = []

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


# ---- 1. decompression bombs --------------------------------------------------------------------------------


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("declared", [(30000, 30000), (12000, 12000)])
def test_bomb_image_is_left_out_and_named(tmp_path: Path, bit_depth: int, declared: tuple[int, int]) -> None:
    root = class_folder(tmp_path / "data")
    bomb_png(root / "fracture" / "bomb.png", *declared, bit_depth=bit_depth)
    ds = FolderDataset(root)
    assert len(ds) == 6 and "fracture/bomb.png" not in ds.paths
    assert any("bomb.png" in n and "max_pixels" in n for n in ds.notices)
    assert all(s.image.shape == (1, 8, 8) for s in ds)  # the rest loads
    with pytest.raises(DataError, match="max_pixels") as info:
        read_image(root / "fracture" / "bomb.png", 1)
    assert one_line(info.value)


def test_max_pixels_is_configurable(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    png(root / "normal" / "big.png", size=(20, 20))
    ds = FolderDataset(root, max_pixels=100)
    assert len(ds) == 6 and any("big.png" in n and "100" in n for n in ds.notices)
    assert len(FolderDataset(root)) == 7
    with pytest.raises(DataError, match="max_pixels"):
        FolderDataset(root, max_pixels=0)


def test_bomb_mask_in_annotations_json_is_dropped_with_a_warning(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    bomb_png(root / "masks" / "bomb.png")
    png(root / "masks" / "ok.png", value=255)
    doc = {
        "format": "robustxai-annotations/1",
        "images": {
            "fracture/fracture_0.png": {"points": [[1, 1]], "mask": "masks/bomb.png"},
            "fracture/fracture_1.png": {"points": [], "mask": "masks/ok.png"},
        },
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    ds = FolderDataset(root)
    bad = ds[ds.paths.index("fracture/fracture_0.png")]
    good = ds[ds.paths.index("fracture/fracture_1.png")]
    assert bad.truth.mask is None and bad.truth.points is not None and len(bad.truth.points) == 1
    assert good.truth.mask is not None and good.truth.mask.all()
    assert any("fracture_0.png: mask dropped" in w and "max_pixels" in w for w in ds.warnings)


@pytest.mark.parametrize("fmt", ["json", "mask_png"])
def test_bomb_mask_in_annotation_readers(tmp_path: Path, fmt: str) -> None:
    sizes = {"a.png": (8, 8), "b.png": (8, 8)}
    masks = tmp_path / "masks"
    bomb_png(masks / "a.png")
    png(masks / "b.png", value=255)
    if fmt == "json":
        doc = {"images": {"a.png": {"mask": "masks/a.png"}, "b.png": {"mask": "masks/b.png"}}}
        (tmp_path / "t.json").write_text(json.dumps(doc))
        result = read_annotations(tmp_path / "t.json", sizes)
    else:
        result = read_annotations(masks, sizes)
    assert "a.png" not in result.truths and result.truths["b.png"].mask is not None
    assert any("a.png" in w and "max_pixels" in w for w in result.warnings)


def write_dicom(path: Path, rows: int, cols: int, pixels: bytes | None = None) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "CR", rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels if pixels is not None else np.arange(rows * cols, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_rows_by_columns_are_capped_before_decoding(tmp_path: Path) -> None:
    from robustxai.data._dicom import read_dicom

    root = class_folder(tmp_path / "data")
    write_dicom(root / "normal" / "ok.dcm", 4, 4)
    bomb = write_dicom(root / "normal" / "bomb.dcm", 60000, 60000, pixels=b"\0\0" * 16)
    with pytest.raises(DataError, match="max_pixels") as info:
        read_dicom(bomb)
    assert one_line(info.value)
    with pytest.raises(DataError, match="max_pixels"):
        read_dicom(root / "normal" / "ok.dcm", max_pixels=15)
    ds = FolderDataset(root)
    assert "normal/ok.dcm" in ds.paths and "normal/bomb.dcm" not in ds.paths
    assert any("bomb.dcm" in n and "max_pixels" in n for n in ds.notices)


# ---- 2. manifests that are not UTF-8 -----------------------------------------------------------------------


def test_manifest_in_cp1252_is_one_error_naming_the_row(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    text = "path,label,split\nnormal/normal_0.png,normal,train\nnormal/café.png,normal,test\n"
    (root / "manifest.csv").write_bytes(text.encode("cp1252"))
    with pytest.raises(DataError, match="row 3") as info:
        FolderDataset(root)
    assert one_line(info.value) and "UTF-8" in str(info.value) and "0xe9" in str(info.value)


def test_manifest_path_with_a_newline_is_one_line_error(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    (root / "manifest.csv").write_text('path,label\nnormal/normal_0.png,normal\n"normal/a\nb.png",normal\n')
    with pytest.raises(DataError, match="row 3") as info:
        FolderDataset(root)
    assert one_line(info.value) and "control character" in str(info.value)


def test_manifest_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    (root / "manifest.csv").write_bytes(b"\xef\xbb\xbfpath,label\nnormal/normal_0.png,normal\n")
    assert FolderDataset(root).paths == ["normal/normal_0.png"]


# ---- 3. annotation records of the wrong JSON type ----------------------------------------------------------

SIZES = {"good.png": (32, 32), "bad.png": (32, 32)}
GOOD_COCO_IMAGE = {"id": 1, "file_name": "good.png", "width": 32, "height": 32}
GOOD_COCO_ANN = {"image_id": 1, "bbox": [2, 2, 4, 4]}


def coco(bad_image: dict[str, Any] | None = None, bad_ann: dict[str, Any] | None = None) -> dict[str, Any]:
    image = {"id": 2, "file_name": "bad.png", "width": 32, "height": 32} | (bad_image or {})
    ann = {"image_id": 2, "bbox": [1, 1, 3, 3]} | (bad_ann or {})
    return {"images": [GOOD_COCO_IMAGE, image], "annotations": [GOOD_COCO_ANN, ann]}


COCO_CASES = {
    "image id is a list": coco(bad_image={"id": [2]}),
    "image id is an object": coco(bad_image={"id": {"a": 2}}),
    "image id is a boolean": coco(bad_image={"id": True}),
    "annotation image_id is a list": coco(bad_ann={"image_id": [2]}),
    "annotation image_id is an object": coco(bad_ann={"image_id": {"x": 1}}),
    "file_name is a list": coco(bad_image={"file_name": ["bad.png"]}),
    "bbox of strings": coco(bad_ann={"bbox": ["1", "1", "3", "3"]}),
    "bbox of booleans": coco(bad_ann={"bbox": [True, False, 3, 3]}),
    "bbox null and segmentation null": coco(bad_ann={"bbox": None, "segmentation": None}),
    "bbox with negative size": coco(bad_ann={"bbox": [5, 5, -3, -3]}),
    "bbox NaN": coco(bad_ann={"bbox": [float("nan"), 1, 3, 3]}),
    "bbox infinite": coco(bad_ann={"bbox": [1, 1, float("inf"), 3]}),
    "polygon of strings": coco(bad_ann={"segmentation": [["1", "1", "9", "1", "9", "9"]]}),
    "segmentation is a number": coco(bad_ann={"segmentation": 7, "bbox": None}),
    "height is a string": coco(bad_image={"height": "32"}),
    "width is negative": coco(bad_image={"width": -32}),
    "height is a boolean": coco(bad_image={"height": True}),
    "annotation is a list": {"images": [GOOD_COCO_IMAGE], "annotations": [GOOD_COCO_ANN, [2, [1, 1, 3, 3]]]},
    "image is a string": {"images": [GOOD_COCO_IMAGE, "bad.png"], "annotations": [GOOD_COCO_ANN]},
}

JSON_CASES = {
    "points of strings": {"points": [["3", "4"]]},
    "points of booleans": {"points": [[True, 4]]},
    "points null inside": {"points": [None]},
    "points is an object": {"points": {"x": 3, "y": 4}},
    "points is false": {"points": False},
    "boxes is zero": {"boxes": 0},
    "points with NaN": {"points": [[float("nan"), 4]]},
    "boxes of strings": {"boxes": [["0", "0", "4", "4"]]},
    "boxes is a number": {"boxes": 3},
    "polygons nested too deep": {"polygons": [[[[[[1, 2]]]]]]},
    "mask is a number": {"mask": 5},
    "mask is a list": {"mask": ["m.png"]},
    "mask is an object": {"mask": {"path": "m.png"}},
    "mask is true": {"mask": True},
    "entry is a list": [[1, 2]],
    "entry is null": None,
}


def _good_truth(result: Any) -> None:
    good = result.truths["good.png"]
    assert good.mask is not None and int(good.mask.sum()) == 16


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_coco_record_of_the_wrong_type_is_a_warning(tmp_path: Path, case: str) -> None:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(COCO_CASES[case]))
    result = read_annotations(path, SIZES, fmt="coco")
    _good_truth(result)
    bad = result.truths.get("bad.png")
    assert bad is None or bad.mask is None or not bad.mask.any(), case
    assert result.warnings, case


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_json_record_of_the_wrong_type_is_a_warning(tmp_path: Path, case: str) -> None:
    path = tmp_path / "t.json"
    doc = {"images": {"good.png": {"boxes": [[2, 2, 6, 6]]}, "bad.png": JSON_CASES[case]}}
    path.write_text(json.dumps(doc))
    result = read_annotations(path, SIZES, fmt="json")
    _good_truth(result)
    bad = result.truths.get("bad.png")
    assert bad is None or ((bad.mask is None or not bad.mask.any()) and not len(bad.points or [])), case
    assert any("bad.png" in w for w in result.warnings), case


@pytest.mark.parametrize(
    "text", ["[1, 2]", "null", '"images"', "3", "[" * 100_000 + "]" * 100_000, '{"images": ' * 50_000 + "1"]
)
@pytest.mark.parametrize("fmt", ["coco", "json", "auto"])
def test_annotation_file_of_the_wrong_top_level_type_is_one_error(
    tmp_path: Path, text: str, fmt: str
) -> None:
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_annotations(path, SIZES, fmt=fmt)
    assert one_line(info.value) and len(str(info.value)) < 500


def test_annotations_json_of_a_folder_with_wrong_types(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    doc = {
        "format": "robustxai-annotations/1",
        "images": {
            "fracture/fracture_0.png": {"points": [["3", "4"]]},
            "fracture/fracture_1.png": {"points": [[3, 4]], "mask": 7},
            "fracture/fracture_2.png": {"points": [[2, 2]]},
        },
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    ds = FolderDataset(root)
    truth = {s.id: s.truth for s in ds}
    dropped = truth["fracture/fracture_0.png"].points
    assert dropped is not None and len(dropped) == 0
    assert truth["fracture/fracture_1.png"].mask is None
    np.testing.assert_array_equal(truth["fracture/fracture_2.png"].points, [[2, 2]])
    assert any("fracture_0.png: points dropped" in w for w in ds.warnings)
    assert any("fracture_1.png: mask dropped" in w for w in ds.warnings)
    doc["class_names"] = [1, 1]
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="class_names") as info:
        FolderDataset(root)
    assert one_line(info.value)


def test_points_csv_and_yolo_values_of_the_wrong_kind(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("image,x,y\ngood.png,3,4\nbad.png,nan,4\nbad.png,three,4\n")
    result = read_annotations(tmp_path / "p.csv", SIZES)
    assert "bad.png" not in result.truths and len(result.truths["good.png"].points) == 1
    (tmp_path / "p2.csv").write_bytes(b"image,x,y\ngood.png,3,4\nb\xe9d.png,1,1\n")
    with pytest.raises(DataError, match="row 3") as info:
        read_annotations(tmp_path / "p2.csv", SIZES)
    assert one_line(info.value)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "good.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (labels / "bad.txt").write_bytes(b"0 0.5 0.5 \xff\xfe 0.25\n")
    result = read_annotations(labels, SIZES)
    assert "good.png" in result.truths and "bad.png" not in result.truths
    assert any("bad.png" in w and "UTF-8" in w for w in result.warnings)


# ---- 4. FIFOs, devices and directories where a file belongs ------------------------------------------------


def test_fifo_or_directory_as_a_mask_is_a_warning_not_a_hang(
    tmp_path: Path, fifo: Callable[[Path], Path]
) -> None:
    root = class_folder(tmp_path / "data")
    fifo(root / "masks" / "pipe.png")
    (root / "masks" / "dir.png").mkdir()
    doc = {
        "format": "robustxai-annotations/1",
        "images": {
            "fracture/fracture_0.png": {"points": [[1, 1]], "mask": "masks/pipe.png"},
            "fracture/fracture_1.png": {"points": [[1, 1]], "mask": "masks/dir.png"},
        },
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    run = finishes(lambda: [s.truth for s in FolderDataset(root)])
    assert run["done"], "reading a FIFO mask blocked"
    assert "error" not in run, run.get("error")
    ds = FolderDataset(root)
    list(ds)
    assert any("pipe.png" in w and "FIFO" in w for w in ds.warnings)
    assert any("dir.png" in w and "directory" in w for w in ds.warnings)
    (tmp_path / "t.json").write_text(json.dumps({"images": {"good.png": {"mask": "data/masks/pipe.png"}}}))
    run = finishes(lambda: read_annotations(tmp_path / "t.json", SIZES))
    assert run["done"] and "error" not in run
    assert any("FIFO" in w for w in run["value"].warnings)


def test_fifo_device_or_directory_as_a_manifest_image_is_left_out(
    tmp_path: Path, fifo: Callable[[Path], Path]
) -> None:
    root = class_folder(tmp_path / "data")
    fifo(root / "normal" / "pipe.png")
    (root / "normal" / "dir.png").mkdir()
    rows = [
        "normal/normal_0.png,normal",
        "normal/pipe.png,normal",
        "normal/dir.png,normal",
        "/dev/null,normal",
    ]
    (root / "manifest.csv").write_text(
        "path,label\n" + "\n".join(rows) + "\nfracture/fracture_0.png,fracture\n"
    )
    run = finishes(lambda: FolderDataset(root))
    assert run["done"], "a FIFO image blocked"
    assert "error" not in run, run.get("error")
    ds = run["value"]
    assert ds.paths == ["normal/normal_0.png", "fracture/fracture_0.png"]
    for name in ("pipe.png", "dir.png", "/dev/null"):
        assert any(name in n and "left out" in n for n in ds.notices), name


def test_fifo_named_like_an_image_in_a_class_folder_or_without_extension(
    tmp_path: Path, fifo: Callable[[Path], Path]
) -> None:
    root = class_folder(tmp_path / "data")
    fifo(root / "normal" / "noext")  # extension-less files are sniffed for a DICOM marker
    fifo(root / "normal" / "pipe.dcm")
    run = finishes(lambda: FolderDataset(root))
    assert run["done"] and "error" not in run, run.get("error")
    assert len(run["value"]) == 6


# ---- 5 and 7. symlinked class folders and manifest paths outside the data folder ---------------------------


def test_symlinked_class_folder_outside_the_root_is_named(tmp_path: Path) -> None:
    outside = class_folder(tmp_path / "elsewhere")
    root = tmp_path / "data"
    root.mkdir()
    (root / "normal").symlink_to(outside / "normal", target_is_directory=True)
    (root / "fracture").symlink_to(outside / "fracture", target_is_directory=True)
    ds = FolderDataset(root)
    assert len(ds) == 6
    assert any(str(outside.resolve()) in n and "outside the data folder" in n for n in ds.notices)
    with pytest.raises(DataError, match="allow_outside_root") as info:
        FolderDataset(root, allow_outside_root=False)
    assert one_line(info.value)


def test_manifest_paths_outside_the_root(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    shared = png(tmp_path / "shared" / "x.png")
    rows = ["normal/normal_0.png,normal", "../shared/x.png,fracture", f"{shared},fracture"]
    (root / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = FolderDataset(root)
    assert len(ds) == 3
    lines = [n for n in ds.notices if "outside the data folder" in n]
    assert len(lines) == 1 and str((tmp_path / "shared").resolve()) in lines[0] and "2 image path" in lines[0]
    with pytest.raises(DataError, match="row 3") as info:
        FolderDataset(root, allow_outside_root=False)
    assert one_line(info.value) and "allow_outside_root" in str(info.value)
    (root / "manifest.csv").write_text(
        "path,label\nnormal/normal_0.png,normal\nfracture/fracture_0.png,fracture\n"
    )
    ds = FolderDataset(root, allow_outside_root=False)
    assert len(ds) == 2 and not ds.notices


# ---- 6. duplicate rows and train/test leakage --------------------------------------------------------------


def test_duplicate_manifest_rows_are_named_and_left_out(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    rows = [f"{c}/{c}_{i}.png,{c}" for c in ("normal", "fracture") for i in range(3)]
    rows += ["./normal/normal_1.png,normal"]
    (root / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = FolderDataset(root)
    assert len(ds) == 6 and len(set(ds.paths)) == 6
    assert any("duplicate" in n and "row 8 repeats row 3" in n for n in ds.notices)
    rows[-1] = "normal/normal_1.png,fracture"
    (root / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="rows 3 and 8") as info:
        FolderDataset(root)
    assert one_line(info.value)


def test_image_in_train_and_test_is_a_loud_leakage_notice(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "data")
    rows = [
        "normal/normal_0.png,normal,train",
        "fracture/fracture_0.png,fracture,train",
        "normal/normal_1.png,normal,test",
        "fracture/fracture_0.png,fracture,test",
    ]
    (root / "manifest.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    for split in (None, "test", "train"):
        ds = FolderDataset(root, split=split)
        leak = [n for n in ds.notices if n.startswith("LEAKAGE")]
        assert len(leak) == 1 and "fracture/fracture_0.png" in leak[0] and "train row 3" in leak[0], split
        assert "test row 5" in leak[0]


def test_audit_data_checks_name_leakage_between_folders_and_a_single_test_class(tmp_path: Path) -> None:
    from robustxai.audit._data_checks import class_count_warnings, data_warnings

    train = class_folder(tmp_path / "train")
    test = tmp_path / "test"
    (test / "normal").mkdir(parents=True)
    (test / "normal" / "same.png").symlink_to(train / "normal" / "normal_0.png")
    png(test / "normal" / "other.png")
    train_ds, test_ds = FolderDataset(train), FolderDataset(test, class_names=["fracture", "normal"])
    lines = data_warnings(train_ds, test_ds, test_ds.targets())
    assert any(line.startswith("LEAKAGE: 1 test image") and "normal/same.png" in line for line in lines)
    assert any("only one class ('normal', 2 images)" in line for line in lines)
    assert not class_count_warnings(torch.tensor([0, 1, 1]), ["a", "b"])
    assert class_count_warnings(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), ["a", "b"])
    assert not class_count_warnings(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), ["a", "b"])


# ---- 8. fewer than two classes -----------------------------------------------------------------------------


def test_training_on_one_class_is_refused(tiny_model: rx.ModelWrapper) -> None:
    images = torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="only one class \\('fracture', 12 images\\)") as info:
        rx.fit(tiny_model, (images, torch.ones(12, dtype=torch.long)), config=rx.FitConfig(epochs=1))
    assert one_line(info.value)
    multi = rx.create_model("smallcnn", widths=(4, 8, 8, 8), num_classes=2, task="multilabel")
    with pytest.raises(DataError, match="single value"):
        rx.fit(multi, (images, torch.zeros(12, 2)), config=rx.FitConfig(epochs=1))


def test_cli_train_on_a_one_class_folder_is_a_one_line_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustxai.cli import app

    root = tmp_path / "data"
    for i in range(10):
        png(root / "normal" / f"n{i}.png", size=(16, 16), value=10 * i)
    (root / "fracture").mkdir()
    result = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "m"), "--data", str(root), "--size", "16", "--epochs", "1"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "only one class" in result.output
    assert not (tmp_path / "m").exists()


# ---- readers raise only RobustXAIError ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x01\x02",
        b"path\n" + b"x" * 200_000 + b"\n",
        b'path,label\n"unterminated\n',
        b"\xff\xfe\x00p",
    ],
)
def test_manifest_reader_raises_only_robustxai_errors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "m.csv").write_bytes(content)
    try:
        read_manifest(tmp_path / "m.csv", tmp_path)
    except RobustXAIError as exc:
        assert one_line(exc)


# ---- the audit records the data warnings in the run (report) -----------------------------------------------


def test_audit_records_data_warnings_in_the_run(tmp_path: Path) -> None:
    from robustxai._pipeline import run_audit
    from robustxai.audit._config import profile_dict, validate_config
    from robustxai.results import Store

    root = tmp_path / "data"
    rows = []
    for i in range(8):
        cls = "normal" if i % 2 else "fracture"
        png(root / cls / f"{i}.png", size=(16, 16), value=20 + 25 * i)
        rows.append(f"{cls}/{i}.png,{cls},{'test' if i in (1, 3) else 'train'}")
    rows += ["normal/1.png,normal,train", "normal/5.png,normal,train"]  # leakage; a duplicate of row 7
    (root / "manifest.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["fracture", "normal"])
    rx.save_model(model, tmp_path / "ckpt")
    raw = profile_dict("smoke")
    del raw["manipulation"]
    raw |= {
        "data": {"source": "folder", "path": str(root), "size": 16},
        "models": [{"name": "mine", "checkpoint": str(tmp_path / "ckpt")}],
        "attacks": [{"name": "fgsm", "epsilons": [4 / 255]}],
        "explain": {"methods": ["saliency"], "n_images": 2, "attacks": ["fgsm"]},
        "report": {"n_figure": 0, "primary_attack": "fgsm", "primary_epsilon": 4 / 255},
        "sanity": {"enabled": False},
    }
    result = run_audit(validate_config(raw), tmp_path / "run")
    with Store(tmp_path / "run") as store:
        data = store.warnings().query("code == 'data'")["message"].tolist()
    assert any("only one class ('normal', 2 images)" in line for line in data)
    assert any(line.startswith("LEAKAGE") and "normal/1.png" in line for line in data)
    assert any("row 11 repeats row 7" in line for line in data)
    assert any("only one class" in line for line in result.warnings)
    assert "only one class" in (tmp_path / "run" / "report.html").read_text()


# ---- DICOM: damaged headers are one-line errors, and pydicom never echoes a header value -------------------


def test_damaged_dicom_header_is_one_line_error_without_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import warnings

    from robustxai.data._dicom import phi_values, read_dicom

    path = write_dicom(tmp_path / "a.dcm", 4, 4)
    data = path.read_bytes()
    tag = b"\x28\x00\x02\x00US"  # Samples per Pixel with an unknown value representation
    assert tag in data
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data.replace(tag, b"\x28\x00\x02\x00Uz"))
    with pytest.raises(DataError) as info:
        read_dicom(broken)
    assert one_line(info.value)
    leaky = tmp_path / "leaky.dcm"
    leaky.write_bytes(data.replace(data[data.index(b"1.2.826") :][:14], b"1.2.DoeJaneXY."))  # an invalid UID
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert any("DoeJane" in v for v in phi_values(leaky))
        read_dicom(leaky)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [s for s in said if "DoeJane" in s]
