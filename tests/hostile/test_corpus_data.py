"""Hostile corpus: image files, manifests and DICOM files of the audited data folder."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _cases import TARGET, Case, Workspace, params, png_header_only, run_case, unblock_fifo_after
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import Result

from robustxai.data._dicom import find_phi

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._dicom"

BLOCK_S = 5.0  # a FIFO is released after this long; a reader that waited for it has blocked
PHI = ("Doe^Jane", "PID-98765", "Example General Hospital")


def image_bytes(mode: str, size: tuple[int, int] = (16, 16), fmt: str = "PNG") -> bytes:
    """An image of ``mode`` and ``size`` encoded as ``fmt``."""
    rng = np.random.default_rng(0)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (*size[::-1], 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def target_bytes(make: Callable[[bytes], bytes]) -> Callable[[Workspace], None]:
    """Replace the target test image's bytes by ``make(original bytes)``."""

    def build(ws: Workspace) -> None:
        path = ws.data / TARGET
        path.write_bytes(make(path.read_bytes()))

    return build


def rows(
    change: Callable[[list[list[str]], Workspace], list[list[str]]], header: str = ""
) -> Callable[..., None]:
    """Rewrite the manifest: ``change(rows, ws)`` gives the new rows; ``header`` replaces the header."""

    def build(ws: Workspace) -> None:
        ws.write_rows(change(ws.rows(), ws), header or "path,label,split")

    return build


def manifest_text(text: str | bytes) -> Callable[[Workspace], None]:
    """A manifest of exactly ``text``."""

    def build(ws: Workspace) -> None:
        (ws.data / "manifest.csv").write_bytes(text if isinstance(text, bytes) else text.encode())

    return build


def outside_image(absolute: bool) -> Callable[[Workspace], None]:
    """A test row whose image lies outside the data folder (``../`` or an absolute path)."""

    def build(ws: Workspace) -> None:
        (ws.root / "elsewhere").mkdir()
        (ws.root / "elsewhere" / "x.png").write_bytes((ws.data / TARGET).read_bytes())
        rel = str(ws.root / "elsewhere" / "x.png") if absolute else "../elsewhere/x.png"
        ws.write_rows([*ws.rows(), [rel, "fracture", "test"]])

    return build


def symlinked_class_folder(ws: Workspace) -> None:
    """No manifest; the class folder ``fracture`` is a link to a folder outside the data root."""
    (ws.data / "manifest.csv").unlink()
    (ws.data / "fracture").rename(ws.root / "elsewhere")
    (ws.data / "fracture").symlink_to(ws.root / "elsewhere", target_is_directory=True)
    ws.cfg["data"]["test_path"] = str(ws.data)


def fifo_image(ws: Workspace) -> None:
    """The target image is a FIFO (a reader would block)."""
    (ws.data / TARGET).unlink()
    os.mkfifo(ws.data / TARGET)
    unblock_fifo_after(ws.data / TARGET, BLOCK_S)
    ws.max_seconds = BLOCK_S


def write_dicom(path: Path, pixels: bool = True, frames: int = 1) -> Path:
    """A 16×16 16-bit CR DICOM whose header carries a patient name, ID and institution (:data:`PHI`)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.InstitutionName = PHI
    ds.PatientBirthDate = "19700131"
    ds.Modality = "CR"
    if pixels:
        ds.Rows, ds.Columns = 16, 16
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        values = np.random.default_rng(0).integers(0, 4095, (frames * 16 * 16,), dtype=np.uint16)
        ds.PixelData = values.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=pixels)
    return path


def dicom_target(pixels: bool = True, frames: int = 1, cut: float = 1.0) -> Callable[[Workspace], None]:
    """The target test image replaced by a DICOM file (optionally cut to a fraction of its bytes)."""

    def build(ws: Workspace) -> None:
        dcm = write_dicom(ws.data / "fracture" / "scan.dcm", pixels, frames)
        if cut < 1.0:
            data = dcm.read_bytes()
            dcm.write_bytes(data[: int(len(data) * cut)])
        ws.write_rows([["fracture/scan.dcm", *r[1:]] if r[0] == TARGET else r for r in ws.rows()])

    return build


def no_phi(ws: Workspace, result: Result) -> None:
    """No identifying header value in the output, the run directory or anywhere else the run wrote."""
    for value in PHI + ("Doe", "Jane", "19700131"):
        assert value not in result.output
    assert find_phi(ws.out, PHI) == [] if ws.out.exists() else True
    assert find_phi(ws.cache, PHI) == [] if ws.cache.exists() else True


def bom_manifest(ws: Workspace) -> None:
    """The manifest with a UTF-8 byte-order mark (spreadsheets write one)."""
    path = ws.data / "manifest.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def only_test_label(label: str) -> Callable[[list[list[str]], Workspace], list[list[str]]]:
    return lambda rs, ws: [[r[0], label, r[2]] if r[2] == "test" else r for r in rs]


def set_row(i: int, cells: list[str]) -> Callable[[list[list[str]], Workspace], list[list[str]]]:
    return lambda rs, ws: [cells if j == i else r for j, r in enumerate(rs)]


IMAGE_CASES = [
    Case("img-truncated", target_bytes(lambda b: b[: len(b) // 2]), "either", TARGET),
    Case("img-zero-byte", target_bytes(lambda b: b""), "either", TARGET),
    Case("img-text-named-png", target_bytes(lambda b: b"not an image\n"), "either", TARGET),
    Case("img-only-signature", target_bytes(lambda b: b[:8]), "either", TARGET),
    Case("img-jpeg-named-png", target_bytes(lambda b: image_bytes("L", fmt="JPEG")), "ok"),
    Case("img-16bit", target_bytes(lambda b: image_bytes("I;16")), "ok", full_report=True),
    Case("img-rgba", target_bytes(lambda b: image_bytes("RGBA")), "ok"),
    Case("img-palette", target_bytes(lambda b: image_bytes("P")), "ok"),
    Case("img-1x1", target_bytes(lambda b: image_bytes("L", (1, 1))), "warn", "1x1", full_report=True),
    Case("img-other-size", target_bytes(lambda b: image_bytes("L", (20, 12))), "warn", "mask dropped"),
    Case("img-bomb", target_bytes(lambda b: png_header_only(30000, 30000)), "warn", TARGET),
    Case("img-near-bomb", target_bytes(lambda b: png_header_only(12000, 12000)), "warn", TARGET),
    Case("img-fifo", fifo_image, "either", TARGET),
    Case("img-symlinked-class-folder", symlinked_class_folder, "warn", "outside the data folder"),
]

MANIFEST_CASES = [
    Case("man-no-path-column", rows(lambda rs, ws: rs, "file,label,split"), "error", "'path' column"),
    Case("man-zero-byte", manifest_text(b""), "error", "'path' column"),
    Case("man-header-only", manifest_text("path,label,split\n"), "error", "no images found"),
    Case(
        "man-unknown-label", rows(set_row(1, [TARGET, "tumour", "test"])), "error", "unknown label 'tumour'"
    ),
    Case("man-missing-file", rows(set_row(1, ["normal/gone.png", "normal", "test"])), "error", "not found"),
    Case("man-empty-label", rows(set_row(1, [TARGET, "", "test"])), "error", "empty path or label"),
    Case("man-ragged-row", manifest_text(f"path,label,split\n{TARGET}\n"), "error", "empty path or label"),
    Case("man-nul-byte", manifest_text(f"path,label,split\n{TARGET}\0,fracture,test\n"), "error", "row 2"),
    Case(
        "man-huge-field",
        manifest_text("path,label,split\n" + "x" * 200_000 + ",normal,test\n"),
        "error",
        "not a valid CSV row",
    ),
    Case(
        "man-multilabel-bad-cell",
        rows(lambda rs, ws: [[r[0], "2", "0", r[2]] for r in rs], "path,normal,fracture,split"),
        "error",
        "must hold 1, 0, -1",
    ),
    Case("man-bom", bom_manifest, "ok"),
    Case(
        "man-cp1252",
        manifest_text("path,label,split\nnormal/caf\xe9.png,normal,test\n".encode("cp1252")),
        "error",
        "manifest.csv",
    ),
    Case(
        "man-duplicate-rows",
        rows(lambda rs, ws: [*rs, rs[1]]),
        "warn",
        "duplicate row(s) left out",
    ),
    Case(
        "man-train-test-leak",
        rows(lambda rs, ws: [*rs, [rs[1][0], rs[1][1], "train"]]),
        "warn",
        "LEAKAGE",
    ),
    Case("man-dotdot-path", outside_image(absolute=False), "warn", "outside the data folder"),
    Case("man-absolute-path", outside_image(absolute=True), "warn", "outside the data folder"),
    Case("man-single-class-test", rows(only_test_label("normal")), "warn", "holds only one class"),
]

DICOM_CASES = [
    Case("dcm-valid-with-phi", dicom_target(), "warn", "fracture/scan.dcm", check=no_phi, full_report=True),
    Case("dcm-truncated", dicom_target(cut=0.6), "error", "scan.dcm", check=no_phi, full_report=True),
    Case("dcm-header-only", dicom_target(cut=0.1), "either", "scan.dcm", check=no_phi, full_report=True),
    Case(
        "dcm-no-pixel-data",
        dicom_target(pixels=False),
        "either",
        "scan.dcm",
        check=no_phi,
        full_report=True,
    ),
    Case("dcm-multiframe", dicom_target(frames=2), "error", "multi-frame", check=no_phi, full_report=True),
]


@pytest.mark.parametrize("case", params(IMAGE_CASES + MANIFEST_CASES + DICOM_CASES))
def test_data(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    run_case(case, ws, caplog)
