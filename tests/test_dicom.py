"""Tests of DICOM reading: display pipeline (rescale, window, MONOCHROME1) and keeping identifiers out."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from robustxai import DataError
from robustxai.data._dicom import find_phi, is_dicom_file, phi_values, read_dicom, window_linear
from robustxai.data._folder import FolderDataset, write_folder

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._dicom, robustxai.data._folder"

NAME = "Doe^Jane"
PATIENT_ID = "PID-98765"


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME1",
    rescale: tuple[float, float] | None = (2.0, -1024.0),
    window: tuple[list[float], list[float]] | None = ([1024.0, 40.0], [2049.0, 400.0]),
    signed: bool = False,
    frames: int = 1,
) -> Path:
    """Write a 16-bit CR DICOM with a patient name, ID and birth date in its header."""
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
    ds.PatientBirthDate = "19700131"
    ds.InstitutionName = "Example General Hospital"
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def expected_linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 written as the standard's three cases, scaled to [0, 1]."""
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    mid = ((x - (c - 0.5)) / (w - 1)) + 0.5
    return np.select([x <= lo, x > hi], [0.0, 1.0], mid)


def test_rescale_window_and_monochrome1(tmp_path: Path) -> None:
    raw = np.array([[0, 512, 1024], [1536, 2048, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", raw)
    img = read_dicom(path)
    assert img.shape == (1, 2, 3) and img.dtype == np.float32
    modality = raw.astype(np.float64) * 2.0 - 1024.0  # slope 2, intercept −1024
    expected = 1.0 - expected_linear(modality, 1024.0, 2049.0)  # first window; MONOCHROME1 inverts
    np.testing.assert_allclose(img[0], expected, atol=1e-6)
    # Hand-checked corners: −1024 is below the window (→ 0 → inverted 1), 7166 above it (→ 1 → 0).
    assert img[0, 0, 0] == pytest.approx(1.0) and img[0, 1, 2] == pytest.approx(0.0)


def test_matches_pydicom_windowing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4096, (16, 12)).astype(np.uint16)
    path = write_dicom(tmp_path / "b.dcm", raw, photometric="MONOCHROME2", window=([900.0], [1500.0]))
    ds = pydicom.dcmread(path)
    ref = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = 0 * 2.0 - 1024.0, (2**16 - 1) * 2.0 - 1024.0  # pydicom's output range after rescale
    np.testing.assert_allclose(read_dicom(path)[0], (ref - y_min) / (y_max - y_min), atol=1e-6)


def test_without_window_uses_min_max_and_signed_pixels(tmp_path: Path) -> None:
    raw = np.array([[-1000, 0], [500, 3000]], dtype=np.int16)
    path = write_dicom(
        tmp_path / "c.dcm", raw, photometric="MONOCHROME2", rescale=None, window=None, signed=True
    )
    np.testing.assert_allclose(read_dicom(path)[0], (raw + 1000) / 4000.0, atol=1e-6)


def test_window_functions_follow_the_standard() -> None:
    x = np.array([-50.0, 0.0, 10.0, 60.0])
    np.testing.assert_allclose(window_linear(x, 10, 100, "LINEAR_EXACT"), np.clip((x - 10) / 100 + 0.5, 0, 1))
    np.testing.assert_allclose(window_linear(x, 10, 100, "SIGMOID"), 1 / (1 + np.exp(-4 * (x - 10) / 100)))
    np.testing.assert_allclose(window_linear(x, 10, 100), expected_linear(x, 10, 100))
    with pytest.raises(DataError, match="≥ 1"):
        window_linear(x, 10, 0.5)
    with pytest.raises(DataError, match="unknown VOI LUT Function"):
        window_linear(x, 10, 100, "CUBIC")


def test_folder_reads_dcm_and_extensionless_dicom(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = np.arange(64, dtype=np.uint16).reshape(8, 8) * 64
    write_dicom(tmp_path / "effusion" / "study1.dcm", raw)
    write_dicom(tmp_path / "normal" / "IM0001", raw, photometric="MONOCHROME2")
    (tmp_path / "normal" / "README").write_text("not an image")
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FolderDataset(tmp_path, size=16, channels=3)
        samples = [ds[0], ds[1]]
    assert ds.class_names == ["effusion", "normal"] and ds.labels() == [0, 1]
    assert [s.id for s in samples] == ["effusion/study1.dcm", "normal/IM0001"]  # ids from the path only
    assert samples[0].image.shape == (3, 16, 16)
    assert bool((samples[0].image[0] == samples[0].image[2]).all())  # gray repeated into 3 channels
    np.testing.assert_allclose(samples[0].image.numpy(), 1.0 - samples[1].image.numpy(), atol=1e-5)
    text = caplog.text + repr(samples) + " ".join(str(w.message) for w in caught)
    for value in phi_values(tmp_path / "effusion" / "study1.dcm"):
        assert value not in text
    assert is_dicom_file(tmp_path / "normal" / "IM0001") and not is_dicom_file(tmp_path / "normal" / "README")


def test_phi_values_and_find_phi(tmp_path: Path) -> None:
    src = write_dicom(tmp_path / "in" / "x" / "a.dcm", np.full((4, 4), 100, dtype=np.uint16))
    values = phi_values(src)
    assert {NAME, "Doe", "Jane", "Jane Doe", PATIENT_ID, "19700131", "Example General Hospital"} <= values
    assert "MONOCHROME1" not in values and ComputedRadiographyImageStorage not in values
    out = write_folder(FolderDataset(tmp_path / "in"), tmp_path / "out")
    assert find_phi(out, values) == []  # the exported images, manifest and annotations hold no identifier
    leak = tmp_path / "out" / "report.html"
    leak.write_text("<p>Patient: Jane Doe</p>", encoding="utf-16-le")
    assert find_phi([out], values) == [(leak, "Doe"), (leak, "Jane"), (leak, "Jane Doe")]


def test_decoder_errors_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "a.dcm", np.zeros((4, 4), dtype=np.uint16))

    def broken(self: Dataset) -> np.ndarray:
        raise RuntimeError(f"cannot decode frame of {self.PatientName} / {self.PatientID}")

    monkeypatch.setattr(Dataset, "pixel_array", property(broken))
    with pytest.raises(DataError, match="cannot decode") as info:
        read_dicom(path)
    assert "Doe" not in str(info.value) and PATIENT_ID not in str(info.value)
    assert "<redacted>" in str(info.value)


def test_bad_dicom_files(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.dcm"
    bad.write_bytes(b"\x00\x01" * 10)
    with pytest.raises(DataError, match="garbage.dcm"):
        read_dicom(bad)
    with pytest.raises(DataError, match="not found"):
        read_dicom(tmp_path / "missing.dcm")
    plain = tmp_path / "plain"
    plain.write_bytes(b"hello")
    with pytest.raises(DataError, match="not a DICOM file"):
        read_dicom(plain)
    multi = write_dicom(tmp_path / "m.dcm", np.zeros((2, 4, 4), dtype=np.uint16), frames=2)
    with pytest.raises(DataError, match="multi-frame"):
        read_dicom(multi)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    nopix = FileDataset(str(tmp_path / "n.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    nopix.PatientName = NAME
    nopix.save_as(tmp_path / "n.dcm")
    with pytest.raises(DataError, match="no pixel data") as info:
        read_dicom(tmp_path / "n.dcm")
    assert "Doe" not in str(info.value)
