"""Safe file access for every data reader: regular files only, a pixel budget, and strict text decoding.

Why: data folders come from shared drives and colleagues. A path that names a FIFO blocks ``open`` forever,
a device never ends, a directory fails with an unhelpful ``IsADirectoryError``; a tiny PNG can declare
30000 x 30000 pixels and exhaust memory when decoded; a manifest saved by a spreadsheet may not be UTF-8.
These helpers turn each case into one :class:`~robustxai._errors.DataError` line that names the file, which
the data sets turn into a per-sample warning (the sample is left out) or a one-line error.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from robustxai._errors import DataError

#: Default largest decoded image, in pixels (10000 x 10000): larger images are left out with a warning.
#: Configurable per data set (``max_pixels``); a 16-bit 10000 x 10000 image decodes to 400 MB of float32.
DEFAULT_MAX_PIXELS = 100_000_000

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | Path, what: str = "file") -> None:
    """Raise :class:`DataError` unless ``path`` (after symlinks) is an existing regular file.

    Uses ``os.stat`` only, so it never opens (and never blocks on) a FIFO or a device.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{what} {path} is {_kind(mode)}, not a regular file")


def open_regular(path: str | Path, what: str = "file") -> BinaryIO:
    """Open a regular file for binary reading; refuse FIFOs, devices, sockets and directories.

    The file is opened with ``O_NONBLOCK`` (opening a FIFO for reading then returns at once instead of waiting
    for a writer) and checked with ``fstat`` on the open descriptor, so a path swapped between a check and
    the open cannot slip through. ``O_NONBLOCK`` has no effect on reads from a regular file.

    Raises:
        DataError: If the path is missing, unreadable or not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{what} {path} is {_kind(mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """The contents of a regular file (see :func:`open_regular`)."""
    with open_regular(path, what) as f:
        try:
            return f.read()
        except OSError as exc:
            raise DataError(f"cannot read {what} {path}: {exc}") from None


def decode_text(data: bytes, path: str | Path, what: str = "file") -> str:
    """Decode UTF-8 (a byte-order mark is dropped); a bad byte is one error naming its line and byte.

    Raises:
        DataError: ``<path>: row <n>: not valid UTF-8 (byte 0x.. at column <c>) …``.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}: row {line}: not valid UTF-8 (byte 0x{data[start]:02x} at column {column}); "
            f"save the {what} as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)"
        ) from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A regular file's text, strictly UTF-8 (see :func:`decode_text`)."""
    return decode_text(read_bytes(path, what), path, what)


def text_stream(path: str | Path, what: str = "file") -> io.StringIO:
    """A file's UTF-8 text as a stream with universal newlines left to the ``csv`` module."""
    return io.StringIO(read_text(path, what), newline="")


def check_pixels(h: int, w: int, path: str | Path, max_pixels: int, frames: int = 1) -> None:
    """Refuse an image whose declared size exceeds ``max_pixels`` before any pixel is decoded.

    Raises:
        DataError: Naming the file, its declared size and the limit (the ``max_pixels`` setting).
    """
    total = int(h) * int(w) * max(int(frames), 1)
    if h < 0 or w < 0 or total > max_pixels:
        raise DataError(
            f"{path}: declares {w}x{h} pixels ({total:,}), more than max_pixels = {max_pixels:,}; "
            "not decoded (a decompression bomb, or raise data.max_pixels)"
        )


def resolves_outside(path: Path, root: Path) -> Path | None:
    """The resolved location of ``path`` when it lies outside ``root`` (after symlinks), else ``None``."""
    return _resolves_outside(path, _resolved(root))


def outside_checker(root: Path) -> Callable[[Path], Path | None]:
    """:func:`resolves_outside` for many paths under one ``root``.

    The root and each folder are resolved once (images share folders); a file is resolved on its own only
    when it is itself a symbolic link.
    """
    base = _resolved(root)
    folders: dict[Path, Path] = {}

    def check(path: Path) -> Path | None:
        if path.is_symlink():
            return _resolves_outside(path, base)
        folder = folders.get(path.parent)
        if folder is None:
            folder = folders[path.parent] = _resolved(path.parent)
        real = folder / path.name
        return None if real.is_relative_to(base) else real

    return check


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop: where it was meant to be
        return path.absolute()


def _resolves_outside(path: Path, base: Path) -> Path | None:
    real = _resolved(path)
    return None if real.is_relative_to(base) else real


def outside_notice(where: str, root: Path, outside: list[tuple[str, Path]], allow: bool) -> list[str]:
    """One line naming where images outside ``root`` resolve, or a :class:`DataError` when refused.

    Args:
        where: What found the images (the manifest's name, or the class folder scan).
        root: The data folder.
        outside: ``(label, resolved path)`` of each image outside ``root``; the label names it in an error.
        allow: ``allow_outside_root``: ``False`` refuses the first image.
    """
    if not outside:
        return []
    base = _resolved(root)
    if not allow:
        label, real = outside[0]
        raise DataError(
            f"{where}: {label} resolves to {real}, outside the data folder {base} "
            "(allow_outside_root = false)"
        )
    return [
        f"{where}: {len(outside)} image path(s) lie outside the data folder {base}; they resolve under "
        f"{common_root([r for _, r in outside])} (set allow_outside_root = false to refuse this)"
    ]


def common_root(paths: list[Path]) -> Path:
    """The deepest folder that holds every path (the folder of a lone file)."""
    if len(paths) == 1:
        return paths[0].parent
    try:
        return Path(os.path.commonpath([str(p) for p in paths]))
    except ValueError:  # different drives (Windows)
        return paths[0].parent
