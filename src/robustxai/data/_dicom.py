"""DICOM images: pixel data → float [0, 1] as a viewer would show them, without leaking identity.

Why: clinical data sets arrive as DICOM files whose stored integers are not display values. The display
pipeline of the standard (PS3.3 C.11) is applied in order:

1. **Modality LUT** — Rescale Slope / Intercept (or a Modality LUT Sequence) turns stored values into
   modality units (e.g. Hounsfield units), via ``pydicom.pixels.apply_modality_lut``.
2. **VOI windowing** — Window Center / Width (the *first* pair when the header lists several) with the
   header's VOI LUT Function (``LINEAR`` by default, ``LINEAR_EXACT`` and ``SIGMOID`` too) maps modality
   values to [0, 1] (PS3.3 C.11.2.1.2). Without a window (or with a width below 1) the image's own
   minimum–maximum range is used instead; a VOI LUT Sequence is not applied (min–max is used).
3. **MONOCHROME1** images (bright = low values) are inverted (``1 − v``) so that bright always means dense.

Colour images (RGB / YBR, 3 samples per pixel) are scaled by ``2**BitsStored − 1`` without windowing.
Multi-frame files are refused; export single frames first.

**Privacy.** Headers carry protected health information (PatientName, PatientID, dates, institution, UIDs).
robustxai never uses a header value as a sample id (ids come from the file path), never stores one in
``Sample.meta``, and never puts one into a log record, warning or error — except the technical tags in
:data:`TECHNICAL_TAGS` (image geometry, bit depth, photometric interpretation, rescale and window values,
transfer syntax). pydicom's own warnings are silenced while reading, and messages of pydicom exceptions are
redacted of every non-technical header value before they are re-raised. File paths do appear in messages:
keep identifiers out of file names. :func:`phi_values` and :func:`find_phi` let tests (and users) check that
a run directory holds none of a file's identifying values.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, SupportsFloat, SupportsIndex, TypeVar

import numpy as np

from robustxai._arrays import minmax_array
from robustxai._errors import DataError
from robustxai.data._files import DEFAULT_MAX_PIXELS, check_pixels, open_regular

if TYPE_CHECKING:
    from pydicom import Dataset

DICOM_EXTENSIONS = (".dcm", ".dicom")
P = ParamSpec("P")
R = TypeVar("R")

#: Header keywords whose values may appear in messages: technical, never identifying.
TECHNICAL_TAGS = frozenset(
    {"BitsAllocated", "BitsStored", "Columns", "HighBit", "Modality", "NumberOfFrames",
     "PhotometricInterpretation", "PixelRepresentation", "PlanarConfiguration", "RescaleIntercept",
     "RescaleSlope", "Rows", "SamplesPerPixel", "TransferSyntaxUID", "VOILUTFunction", "WindowCenter",
     "WindowWidth"}
)  # fmt: skip

_MIN_PHI_LEN = 3
_NOT_TEXT = frozenset(
    {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "US", "SS", "UL", "SL", "FL", "FD", "AT", "CS"}
)


def _drop(record: logging.LogRecord) -> bool:
    return False


def _quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with pydicom's warnings and log records suppressed: they may quote header values (PHI).

    pydicom decodes elements lazily, so a damaged value can warn (and log through the ``pydicom`` logger)
    whenever it is first touched, not only while the file is read.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        log = logging.getLogger("pydicom")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log.addFilter(_drop)
            try:
                return fn(*args, **kwargs)
            finally:
                log.removeFilter(_drop)

    return wrapper


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is DICOM: a DICOM extension, or the ``DICM`` marker after the 128-byte preamble."""
    p = Path(path)
    if p.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open_regular(p) as f:
            head = f.read(132)
    except (OSError, DataError):
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@_quiet
def read_dicom(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a single-frame DICOM image as float32 ``[C, H, W]`` in [0, 1] (C = 1 grayscale, 3 colour).

    Args:
        path: The file (with or without a ``.dcm`` extension).
        max_pixels: Largest Rows x Columns (x frames) decoded; the header is checked before the pixel data
            is decompressed, so a compressed bomb costs nothing.

    Returns:
        The display image after modality LUT, VOI windowing and MONOCHROME1 inversion (module docstring).

    Raises:
        DataError: If the file is not DICOM, has no or undecodable pixel data, is multi-frame or larger
            than ``max_pixels``. The message names the file and technical tags only.
    """
    ds = _read_dataset(path, pixels=True)
    _check_size(ds, path, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one clean, redacted error
        meta = getattr(ds, "file_meta", None)
        syntax = _technical(ds, "TransferSyntaxUID", getattr(meta, "TransferSyntaxUID", "unknown"))
        syntax = " ".join(str(syntax).split())
        raise DataError(
            f"cannot decode the pixel data of DICOM {path} (transfer syntax {syntax}): "
            f"{_redact(str(exc), ds)}"
        ) from None
    try:
        return _display(raw, ds, path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed technical tag; the message is redacted
        raise DataError(
            f"DICOM {path}: cannot display the pixel data ({type(exc).__name__}: {_redact(str(exc), ds)})"
        ) from None


def _display(raw: np.ndarray, ds: Dataset, path: str | Path) -> np.ndarray:
    """The display image of decoded pixels: frame and sample checks, then the grayscale or colour path."""
    frames = int(_technical(ds, "NumberOfFrames", ds.get("NumberOfFrames", 1)) or 1)
    samples = int(_technical(ds, "SamplesPerPixel", ds.get("SamplesPerPixel", 1)) or 1)
    if frames > 1:
        raise DataError(f"DICOM {path}: multi-frame images ({frames} frames) are not supported")
    if samples == 3:
        return _colour(raw, ds, path)
    if samples != 1 or raw.ndim != 2:
        raise DataError(
            f"DICOM {path}: expected one 2-D frame with 1 or 3 samples per pixel, "
            f"got shape {raw.shape} and SamplesPerPixel {samples}"
        )
    return _grayscale(raw, ds)[None]


@_quiet
def dicom_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(Rows, Columns)`` of a DICOM image, read from the header only.

    Raises:
        DataError: If the header has no usable Rows/Columns or declares more than ``max_pixels``.
    """
    ds = _read_dataset(path, pixels=False)
    return _check_size(ds, path, max_pixels)


def _check_size(ds: Dataset, path: str | Path, max_pixels: int) -> tuple[int, int]:
    """``(Rows, Columns)`` from the header, refusing a missing, malformed or oversized geometry."""
    try:
        rows = int(_technical(ds, "Rows", ds.get("Rows")))
        cols = int(_technical(ds, "Columns", ds.get("Columns")))
        frames = int(_technical(ds, "NumberOfFrames", ds.get("NumberOfFrames", 1)) or 1)
    except Exception:  # noqa: BLE001 - missing or malformed geometry tags, whatever pydicom raises
        raise DataError(f"DICOM {path} has no usable Rows/Columns/NumberOfFrames") from None
    if rows < 1 or cols < 1:
        raise DataError(f"DICOM {path}: Rows {rows} x Columns {cols} is not an image")
    check_pixels(rows, cols, path, max_pixels, frames)
    return rows, cols


def window_linear(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI windowing of modality values to [0, 1] (DICOM PS3.3 C.11.2.1.2–3).

    Args:
        values: Modality values (after rescale).
        center: Window Center.
        width: Window Width (≥ 1 for ``LINEAR``, > 0 otherwise).
        function: ``"LINEAR"`` (the default of the standard), ``"LINEAR_EXACT"`` or ``"SIGMOID"``.

    Returns:
        float64 array of the same shape with values in [0, 1].
    """
    x = np.asarray(values, dtype=np.float64)
    fn = function.upper()
    if fn == "LINEAR":
        # y = ((x − (c − 0.5)) / (w − 1) + 0.5), clipped: the standard's formula scaled to [0, 1].
        if width < 1:
            raise DataError(f"Window Width must be ≥ 1 for LINEAR windowing, got {width}")
        if width == 1:
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if width <= 0:
        raise DataError(f"Window Width must be > 0 for {fn} windowing, got {width}")
    if fn == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if fn == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    raise DataError(f"unknown VOI LUT Function {function!r}; known: LINEAR, LINEAR_EXACT, SIGMOID")


@_quiet
def phi_values(path: str | Path) -> set[str]:
    """Identifying strings of a DICOM header: every non-technical text value of ≥ 3 characters.

    Left out as not identifying: technical tags, code strings (VR CS, e.g. ``ORIGINAL``), UIDs registered
    by the standard (SOP classes, transfer syntaxes), numbers, binary values and the file meta group (its
    only identifying value, the SOP Instance UID, is repeated in the data set). Person names are also
    split into their components (``"Doe^Jane"`` gives ``"Doe^Jane"``, ``"Doe"``, ``"Jane"``, ``"Jane Doe"``
    and ``"Doe Jane"``) because a report could render them either way. Nested sequences are searched too.

    Args:
        path: A DICOM file.

    Returns:
        The set of strings that must never appear in a store, log or report.
    """
    ds = _read_dataset(path, pixels=False)
    out: set[str] = set()
    _collect_phi(ds, out)
    return {v for v in out if len(v) >= _MIN_PHI_LEN}


def find_phi(targets: str | Path | Iterable[str | Path], values: Iterable[str]) -> list[tuple[Path, str]]:
    """Search files (folders recursively) for any of ``values``; return the ``(file, value)`` hits.

    Bytes are searched as UTF-8, Latin-1 and UTF-16-LE, case-sensitively, so text files, CSV, JSON, HTML
    and SQLite databases are all covered.

    Args:
        targets: Files or folders to scan.
        values: Strings to look for (e.g. from :func:`phi_values`).
    """
    needles: list[tuple[str, bytes]] = []
    for v in sorted(set(values)):
        for enc in ("utf-8", "latin-1", "utf-16-le"):
            try:
                b = v.encode(enc)
            except UnicodeEncodeError:
                continue
            if (v, b) not in needles:
                needles.append((v, b))
    paths = [Path(targets)] if isinstance(targets, str | Path) else [Path(t) for t in targets]
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    hits: list[tuple[Path, str]] = []
    for f in files:
        data = f.read_bytes()
        found = {v for v, b in needles if b in data}
        hits.extend((f, v) for v in sorted(found))
    return hits


# ---- internals ---------------------------------------------------------------------------------------------


def _read_dataset(path: str | Path, pixels: bool) -> Dataset:
    """Read the header (and pixel data when ``pixels``) with pydicom's warnings silenced."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    if not p.exists():
        raise DataError(f"DICOM file not found: {p}")
    try:
        with open_regular(p, "DICOM file") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            force = p.suffix.lower() in DICOM_EXTENSIONS
            ds = pydicom.dcmread(f, stop_before_pixels=not pixels, force=force)
    except DataError:
        raise
    except InvalidDicomError:
        raise DataError(f"{p} is not a DICOM file (no 'DICM' marker)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged header must not surface its contents
        raise DataError(f"cannot read DICOM {p}: {type(exc).__name__} while parsing the header") from None
    if pixels and "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"DICOM {p} holds no pixel data")
    return ds


def _technical(ds: Dataset, keyword: str, value: R) -> R:
    """Return ``value`` for use in a message, after checking that ``keyword`` is a technical tag."""
    if keyword not in TECHNICAL_TAGS:
        raise AssertionError(f"{keyword} is not a technical DICOM tag; it must not reach a message")
    return value


def _first(value: object) -> float | None:
    """The first number of a (possibly multi-valued) DS/IS element, or None."""
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):  # a list, tuple or MultiValue
        if len(value) == 0:
            return None
        value = value[0]
    if not isinstance(value, str | bytes | bytearray | SupportsFloat | SupportsIndex):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _grayscale(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    center = _first(ds.get("WindowCenter"))
    width = _first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    min_width = 1.0 if function == "LINEAR" else 0.0
    if center is not None and width is not None and width >= min_width and width > 0:
        out = window_linear(values, center, width, function)
    else:
        out = minmax_array(values)  # a constant image becomes zeros
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def _colour(raw: np.ndarray, ds: Dataset, path: str | Path) -> np.ndarray:
    if raw.ndim != 3 or raw.shape[-1] != 3:
        raise DataError(f"DICOM {path}: expected colour pixel data [H, W, 3], got shape {raw.shape}")
    bits = int(ds.get("BitsStored", 8) or 8)
    a = np.clip(raw.astype(np.float64) / float(2**bits - 1), 0.0, 1.0)
    return np.ascontiguousarray(np.moveaxis(a, -1, 0)).astype(np.float32)


def _collect_phi(ds: Dataset, out: set[str]) -> None:
    from pydicom._uid_dict import UID_dictionary

    for elem in ds:
        if elem.keyword in TECHNICAL_TAGS or elem.tag == 0x7FE00010:
            continue
        if elem.VR == "SQ":
            for item in elem.value or []:
                _collect_phi(item, out)
            continue
        if elem.VR in _NOT_TEXT:
            continue
        vals = elem.value if elem.VM > 1 else [elem.value]
        for v in vals:
            if v is None:
                continue
            s = str(v).strip()
            if not s:
                continue
            if elem.VR == "UI" and s in UID_dictionary:
                continue
            out.add(s)
            if elem.VR == "PN":
                parts = [p.strip() for p in s.replace("=", "^").split("^") if p.strip()]
                out.update(parts)
                if len(parts) >= 2:
                    out.add(f"{parts[1]} {parts[0]}")
                    out.add(f"{parts[0]} {parts[1]}")


def _redact(message: str, ds: Dataset) -> str:
    """Replace every identifying header value in ``message`` by ``<redacted>``; the result is one line.

    A header too damaged to list its values withholds the whole message rather than risk one.
    """
    found: set[str] = set()
    try:
        _collect_phi(ds, found)
    except Exception:  # noqa: BLE001 - an element pydicom cannot decode: nothing can be checked
        return "details withheld (the header is damaged)"
    for v in sorted(found, key=len, reverse=True):
        if len(v) >= _MIN_PHI_LEN:
            message = message.replace(v, "<redacted>")
    return " ".join(message.split())
