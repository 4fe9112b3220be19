"""Atomic file replacement: every output robustxai writes goes to a fresh file, then takes the name.

Why. Writing ``open(path, "w")`` in place writes *through* whatever the name is now: a planted hard link
makes the write land in a file outside the run directory, and a reader (or a crash) can see a torn file.
Writing a new file in the same folder and then ``os.replace`` onto the name swaps the directory entry
instead: a hard link's other name keeps its old bytes, a link planted between a check and the write is
replaced rather than followed, and readers see the old file or the whole new one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replacing", "write_bytes", "write_text"]


def _fresh(folder: Path, name: str) -> Path:
    """Create (exclusively, never through a link) an empty temporary file beside ``name``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, flags, 0o666))  # 0o666 minus the umask: the mode a plain open() gives
            return tmp
        except FileExistsError:  # pragma: no cover (a 48-bit name taken by chance)
            continue


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary path beside ``path``; when the block ends normally it replaces ``path``.

    The caller writes the whole file to the yielded path (any writer that takes a path: ``to_csv``,
    ``savefig``, ``save_file`` …). On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(target.parent, target.name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` atomically with ``text`` (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` atomically with ``data`` (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
