"""DICOM privacy end to end (issue 3): an audit of a DICOM folder shows the pixels right and no identifier."""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import struct
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from robustxai.cli import app
from robustxai.data import FolderDataset, SyntheticFracture
from robustxai.data._dicom import find_phi, phi_values, read_dicom
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._dicom"

NAME = "Doe^Jane"
PATIENT_ID = "PID-778899"
BIRTH_DATE = "19610417"
# Rescale 2·raw − 1024 maps raw [0, 4095] to [−1024, 7166]; this LINEAR window spans exactly that range,
# so after MONOCHROME1 inversion the display value is 1 − raw / 4095.
SLOPE, INTERCEPT = 2.0, -1024.0
CENTER, WIDTH = 3071.5, 8191.0
MAX_RAW = 4095


def png_text(data: bytes) -> bytes:
    """Every chunk of a PNG except the compressed pixels (IDAT): where text such as metadata could hide."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if kind != b"IDAT":
            out.append(kind + data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"\n".join(out)


def readable_bytes(path: Path) -> bytes:
    """The parts of a file that can hold text: all of it, except pixel payloads (PNG pixels, image blobs in
    the store, tensors in safetensors files, base64 figures in the report), whose bytes can spell a short
    string by chance. Long identifiers are searched in the raw bytes of every file as well."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return png_text(data)
    if path.suffix == ".safetensors":
        return data[8 : 8 + struct.unpack("<Q", data[:8])[0]]  # the JSON header
    if path.name == "results.sqlite":
        parts: list[bytes] = []
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 (names from the schema)
                    for v in row:
                        if isinstance(v, bytes):  # a .npy blob: its header is text, the rest pixels
                            parts.append(v[: v.find(b"\n") + 1] if v.startswith(b"\x93NUMPY") else v)
                        else:
                            parts.append(str(v).encode())
        return b"\n".join(parts)
    if path.suffix == ".html":
        uris = re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", data)
        text = re.sub(rb"data:image/png;base64,[A-Za-z0-9+/=]+", b"data:", data)
        return b"\n".join([text, *(png_text(base64.b64decode(u)) for u in uris)])
    return data


def leaked_words(data: bytes, values: set[str]) -> list[str]:
    """The values found in ``data`` (UTF-8 or UTF-16-LE text) as whole words: not inside a longer word."""
    texts = [data.decode("utf-8", "ignore"), data.decode("utf-16-le", "ignore")]
    pattern = {v: re.compile(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])") for v in values}
    return sorted(v for v in values if any(pattern[v].search(t) for t in texts))


def write_dicom(path: Path, image: np.ndarray) -> Path:
    """A 16-bit MONOCHROME1 CR file whose display pipeline gives back ``image`` (values in [0, 1])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.InstitutionName = "St Example Infirmary"
    ds.Modality = "CR"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
    ds.WindowCenter, ds.WindowWidth = CENTER, WIDTH
    raw = np.rint((1.0 - image) * MAX_RAW).astype("<u2")  # MONOCHROME1: dense (bright) = low values
    ds.PixelData = raw.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_folder(root: Path, n: int = 36) -> tuple[Path, SyntheticFracture]:
    """Synthetic radiographs as DICOM files in class folders, with the expert points in annotations.json."""
    ds = SyntheticFracture(n, size=32, seed=11)
    images = {}
    for i in range(n):
        s = ds[i]
        rel = f"{ds.class_names[s.label]}/img-{i:03d}.dcm"  # file names carry no identifier
        write_dicom(root / rel, s.image[0].numpy())
        pts = [] if s.truth.points is None else [[float(x), float(y)] for x, y in s.truth.points]
        images[rel] = {"points": pts, "mask": None}
    doc = {"format": "robustxai-annotations/1", "class_names": ds.class_names, "images": images}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root, ds


def test_dicom_pixels_are_read_as_displayed(tmp_path: Path) -> None:
    root, ds = dicom_folder(tmp_path / "dicom", n=4)
    folder = FolderDataset(root, size=32)
    assert folder.class_names == ["normal", "fracture"]
    for s in folder:
        i = int(s.id.rsplit("-", 1)[1].split(".")[0])
        original = ds[i].image
        assert s.label == ds[i].label and s.image.shape == original.shape
        torch.testing.assert_close(s.image, original, atol=0.6 / MAX_RAW, rtol=0)  # 12-bit quantisation
        raw = np.rint((1.0 - original[0].numpy()) * MAX_RAW)
        display = read_dicom(root / s.id)[0]
        # MONOCHROME1 is inverted: the smallest stored value is the brightest pixel.
        assert display.flat[raw.argmin()] == pytest.approx(display.max())
        assert display.flat[raw.argmax()] == pytest.approx(display.min())
        assert NAME not in json.dumps(s.meta, default=str) and PATIENT_ID not in s.id


@pytest.mark.slow
def test_dicom_audit_leaks_no_identifier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    root, _ = dicom_folder(tmp_path / "dicom")
    phi = phi_values(next(root.rglob("*.dcm")))
    assert {NAME, "Doe", "Jane", PATIENT_ID, BIRTH_DATE} <= phi
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'name = "dicom"\n[data]\nsource = "folder"\npath = "{root}"\nsize = 32\nn_test = 12\n'
        '[[models]]\nname = "cnn"\narch = "smallcnn"\narch_kwargs = { widths = [4, 8, 8, 8] }\n'
        "[training]\nepochs = 1\n[explain]\nn_images = 4\n"
    )
    out, cache = tmp_path / "run", tmp_path / "cache"
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(
            app,
            ["-v", "audit", str(cfg), "--profile", "smoke", "--out", str(out), "--cache-dir", str(cache)],
        )
    assert result.exit_code == 0, result.output
    with Store(out, readonly=True) as store:
        samples = store.table("samples")
        pred = store.table("predictions")
        assert len(store.figure_samples()) > 0  # pixels of a few images are in the store, identifiers not
    assert len(samples) == 12 and samples["sample_id"].str.endswith(".dcm").all()
    assert set(pred["model"]) == {"cnn"} and (out / "report.html").is_file()
    written = [p.name for p in out.rglob("*") if p.is_file()]
    assert {"results.sqlite", "report.html", "config.toml", "robustness.csv", "alignment.csv"} <= set(written)
    # No header value anywhere: run directory (store bytes, report, config, tables, figures), the model
    # cache, the CLI output, the log records and the warnings.
    files = [p for p in [*out.rglob("*"), *cache.rglob("*")] if p.is_file()]
    long_values = {v for v in phi if len(v) >= 8}  # cannot occur by chance in a few MB of pixel bytes
    assert find_phi(files, long_values) == []
    # Short values ("Doe", "Jane") as whole words in every readable part ("Does" in a caption is no leak).
    for f in files:
        assert not leaked_words(readable_bytes(f), phi), f"{f} shows {leaked_words(readable_bytes(f), phi)}"
    captured = capfd.readouterr()
    texts = {
        "cli output": result.output,
        "stdout/stderr": captured.out + captured.err,
        "logs": caplog.text + "\n".join(str(r.args) for r in caplog.records),
        "warnings": "\n".join(str(w.message) for w in caught),
    }
    assert "audit finished" in result.output and caplog.records  # the captures did capture something
    for where, text in texts.items():
        leaked = leaked_words(text.encode(), phi)
        assert not leaked, f"{where} shows {leaked}"
