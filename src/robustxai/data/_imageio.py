"""Reading pixels from disk: PNG / JPEG (8- or 16-bit) through Pillow and DICOM through pydicom.

Every reader returns float32 ``[C, H, W]`` in [0, 1] with the requested number of channels, so the data sets
above never care about the file format. 8-bit files are divided by 255, 16-bit PNG by 65535 (the full
range: a 12-bit X-ray stored in 16 bits keeps its values, it is not stretched); DICOM goes through the
display pipeline of :mod:`robustxai.data._dicom`.

Only regular files are opened (a FIFO, device or directory is a :class:`DataError`, never a hang), and an
image whose header declares more than ``max_pixels`` pixels (default
:data:`~robustxai.data._files.DEFAULT_MAX_PIXELS`, 10000 x 10000) is refused before it is decoded, so a
decompression bomb costs nothing. Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) is silenced in favour
of this one, and its error is turned into a :class:`DataError` when it still fires (images above
2 x ``Image.MAX_IMAGE_PIXELS``, about 179 million pixels, whatever ``max_pixels`` says).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustxai._errors import DataError
from robustxai.data._dicom import DICOM_EXTENSIONS, dicom_size, is_dicom_file, read_dicom
from robustxai.data._files import DEFAULT_MAX_PIXELS, check_pixels, open_regular
from robustxai.data._transforms import to_channels

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


@contextmanager
def open_image(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image"
) -> Iterator[Image.Image]:
    """Open a raster image lazily (header only), refusing non-regular files and oversized images.

    Raises:
        DataError: For a missing, unreadable or non-regular file, an unrecognised format, or a declared size
            above ``max_pixels`` (nothing is decoded then).
    """
    with open_regular(path, what) as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(f)
        except Image.DecompressionBombError as exc:
            raise DataError(
                f"{path}: not decoded (max_pixels = {max_pixels:,}; Pillow also refuses more than "
                f"2 x Image.MAX_IMAGE_PIXELS): {exc}"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:  # SyntaxError: some Pillow plug-ins use it
            raise DataError(f"cannot read {what} {path}: {exc}") from None
        with im:
            w, h = im.size
            check_pixels(h, w, path, max_pixels)
            yield im


def read_image(path: Path, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as float32 ``[channels, H, W]`` in [0, 1].

    Args:
        path: A PNG, JPEG or DICOM file (DICOM is recognised by extension or by its ``DICM`` marker).
        channels: 1 (gray; colour becomes BT.601 luma) or 3 (RGB; gray is repeated).
        max_pixels: Largest image (rows x columns) decoded; larger ones are refused unread.

    Raises:
        DataError: If the file cannot be read, is not a regular file, is larger than ``max_pixels`` or holds
            an unsupported pixel type.
    """
    if _is_dicom(path):
        arr = read_dicom(path, max_pixels=max_pixels)
        return to_channels(torch.from_numpy(arr), channels).numpy()
    with open_image(path, max_pixels) as im:
        try:
            im.load()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            if a.size and (a.max() > 65535 or a.min() < 0):
                raise DataError(f"{path}: integer pixel values outside 0..65535 are not supported")
            gray = torch.from_numpy((a / 65535.0).astype(np.float32))[None]
            return to_channels(gray, channels).numpy()
        if im.mode == "F":
            raise DataError(f"{path}: floating-point images are not supported (use 8- or 16-bit PNG)")
        try:
            conv = im.convert("L" if channels == 1 else "RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        a8 = np.asarray(conv, dtype=np.float32) / 255.0
    return a8[None] if channels == 1 else np.ascontiguousarray(np.moveaxis(a8, -1, 0))


def image_size(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(H, W)`` of an image file without decoding its pixels (DICOM: Rows and Columns).

    Raises:
        DataError: As :func:`read_image`, for what the header alone shows.
    """
    if _is_dicom(path):
        return dicom_size(path, max_pixels=max_pixels)
    with open_image(path, max_pixels) as im:
        w, h = im.size
    return int(h), int(w)


def _is_dicom(path: Path) -> bool:
    """DICOM by extension, or a file without a raster extension that carries the ``DICM`` marker."""
    suffix = path.suffix.lower()
    return suffix in DICOM_EXTENSIONS or (suffix not in RASTER_EXTENSIONS and is_dicom_file(path))
