"""Reading pixels from disk: PNG / JPEG (8- or 16-bit) through Pillow and DICOM through pydicom.

Every reader returns float32 ``[C, H, W]`` in [0, 1] with the requested number of channels, so the data sets
above never care about the file format. 8-bit files are divided by 255, 16-bit PNG by 65535 (the full
range: a 12-bit X-ray stored in 16 bits keeps its values, it is not stretched); DICOM goes through the
display pipeline of :mod:`robustxai.data.dicom`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustxai.data.dicom import DICOM_EXTENSIONS, dicom_size, is_dicom_file, read_dicom
from robustxai.data.transforms import to_channels
from robustxai.errors import DataError

#: Extensions read by Pillow.
RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Every extension a class folder is scanned for (files without an extension are checked for DICOM).
IMAGE_EXTENSIONS = RASTER_EXTENSIONS + DICOM_EXTENSIONS


def is_image_file(path: Path) -> bool:
    """Whether a folder scan should pick ``path`` up: a known extension, or no extension and DICOM content."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return True
    return suffix == "" and not path.name.startswith(".") and is_dicom_file(path)


def read_image(path: Path, channels: int) -> np.ndarray:
    """Read an image file as float32 ``[channels, H, W]`` in [0, 1].

    Args:
        path: A PNG, JPEG or DICOM file (DICOM is recognised by extension or by its ``DICM`` marker).
        channels: 1 (gray; colour becomes BT.601 luma) or 3 (RGB; gray is repeated).

    Raises:
        DataError: If the file cannot be read or holds an unsupported pixel type.
    """
    if _is_dicom(path):
        arr = read_dicom(path)
        return to_channels(torch.from_numpy(arr), channels).numpy()
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                if a.size and (a.max() > 65535 or a.min() < 0):
                    raise DataError(f"{path}: integer pixel values outside 0..65535 are not supported")
                gray = torch.from_numpy((a / 65535.0).astype(np.float32))[None]
                return to_channels(gray, channels).numpy()
            if im.mode == "F":
                raise DataError(f"{path}: floating-point images are not supported (use 8- or 16-bit PNG)")
            conv = im.convert("L" if channels == 1 else "RGB")
            a8 = np.asarray(conv, dtype=np.float32) / 255.0
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return a8[None] if channels == 1 else np.ascontiguousarray(np.moveaxis(a8, -1, 0))


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file without decoding its pixels (DICOM: Rows and Columns)."""
    if _is_dicom(path):
        return dicom_size(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return int(h), int(w)


def _is_dicom(path: Path) -> bool:
    """DICOM by extension, or a file without a raster extension that carries the ``DICM`` marker."""
    suffix = path.suffix.lower()
    return suffix in DICOM_EXTENSIONS or (suffix not in RASTER_EXTENSIONS and is_dicom_file(path))
