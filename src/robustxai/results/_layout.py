"""The files of a run directory the results layer knows, and the rule that nothing is written through a link.

The audit (:mod:`robustxai.audit._rundir`), the report and the export all write into a run directory; each
refuses an output path that is a symbolic link, so nothing robustxai writes can leave the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from robustxai._errors import RobustXAIError

__all__ = ["REPORT_OUTPUTS", "refuse_link", "refuse_symlinks"]

#: The outputs :func:`robustxai.report.build_report` writes (checked by ``robustxai report``).
REPORT_OUTPUTS = ("report.html", "tables", "figures")


def refuse_link(path: Path) -> None:
    """Raise a one-line error if ``path`` is a symbolic link (robustxai never writes through one).

    Raises:
        RobustXAIError: Naming the link and where it points.
    """
    if path.is_symlink():
        raise RobustXAIError(
            f"{path} is a symbolic link (to {os.readlink(path)}); robustxai never writes through links, so "
            "nothing it writes can leave the run directory: remove the link or choose another --out"
        )


def refuse_symlinks(run_dir: Path, names: Iterable[str]) -> None:
    """Refuse output paths of ``run_dir`` that are links, or that hold a link anywhere below them.

    Raises:
        RobustXAIError: For the first link found (it is neither followed nor deleted).
    """
    for name in names:
        path = run_dir / name
        refuse_link(path)
        if path.is_dir():
            for root, dirs, files in os.walk(path):  # never follows a linked folder: it is refused below
                for entry in sorted(dirs + files):
                    refuse_link(Path(root) / entry)
