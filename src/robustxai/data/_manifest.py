"""CSV manifests: which images a data set holds, their labels and their split.

Two layouts are read, told apart by the header:

* **Single-label** (multiclass): columns ``path,label[,split]``; ``label`` is a class name.
* **Multi-label** (CheXpert-style): no ``label`` column; ``path``, optional ``split`` and one column per
  label, e.g. ``path,Atelectasis,Cardiomegaly,Effusion,split``. By default every other column is a label;
  pass ``class_names`` to pick the label columns (and their order) from a wider CSV such as CheXpert's,
  which also has ``Sex``, ``Age``, …. The ``path`` and ``split`` columns are found case-insensitively
  (CheXpert writes ``Path``).

Multi-label cells hold ``1`` (positive), ``0`` (negative), ``-1`` (uncertain) or nothing; ``1.0``,
``0.0`` and ``-1.0`` are accepted too. The policy for uncertain cells (CheXpert's U-Zeros / U-Ones /
U-Ignore):

* ``uncertain="zero"`` (default): uncertain → 0 (the finding is not counted as present);
* ``uncertain="one"``: uncertain → 1;
* ``uncertain="ignore"``: a row with any uncertain label cell is left out of the data set (with a warning),
  because the 0/1 label convention of the task loss has no "unknown" entry.

A blank cell means "not mentioned" in CheXpert and counts as 0 (``blank="zero"``, the usual reading);
``blank="uncertain"`` applies the uncertain policy to blanks too. The names of a sample's uncertain labels
are kept in ``Sample.meta["uncertain"]`` under every policy.

Checks that never change a well-formed manifest's rows: the file must be UTF-8 (a byte-order mark is
fine; a bad byte is one error naming the row); a row that repeats an image of its split is dropped (the
first is kept) and named in a notice, and repeats with different labels are an error; an image listed in
two splits (train and test) is kept but named in a loud leakage notice; an image that is a FIFO, device or
directory is left out with a notice; paths that leave the data folder (``../``, absolute, or a symlink) are
read, with one notice naming where they resolve, unless ``allow_outside_root=False`` refuses them.
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from robustxai._errors import DataError
from robustxai.data._files import check_regular, outside_checker, outside_notice, text_stream

UNCERTAIN_POLICIES = ("zero", "one", "ignore")
BLANK_POLICIES = ("zero", "uncertain")


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest.

    Attributes:
        path: Relative POSIX path of the image.
        label: Class name (single-label) or a 0/1 value per label (multi-label).
        split: Split name, or ``""``.
        uncertain: Names of the labels that were uncertain (multi-label only).
    """

    path: str
    label: str | tuple[float, ...]
    split: str
    uncertain: tuple[str, ...] = ()


@dataclass
class Manifest:
    """A parsed manifest: rows, label names, task, and the problems found.

    Attributes:
        warnings: One line per row left out for its labels (``uncertain="ignore"``).
        notices: Data-set-level lines: duplicate rows, images in two splits, unreadable (non-regular) image
            files left out, paths outside the data folder.
    """

    rows: list[ManifestRow]
    class_names: list[str]
    task: str
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def norm_path(rel: str) -> str:
    """Normalise a relative path to POSIX form without a leading ``./``."""
    p = rel.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def check_policies(uncertain: str, blank: str) -> None:
    """Raise a one-line error for an unknown uncertain-label or blank-cell policy."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise DataError(f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}; got {uncertain!r}")
    if blank not in BLANK_POLICIES:
        raise DataError(f"blank must be one of {', '.join(BLANK_POLICIES)}; got {blank!r}")


def read_manifest(
    path: Path,
    root: Path,
    class_names: list[str] | None = None,
    split: str | None = None,
    uncertain: str = "zero",
    blank: str = "zero",
    allow_outside_root: bool = True,
) -> Manifest:
    """Parse a manifest and check that the images of the kept rows exist under ``root``.

    Args:
        path: The CSV file (UTF-8, with or without a byte-order mark).
        root: Folder the ``path`` column is relative to.
        class_names: Single-label: the class order (labels must be among them). Multi-label: the label
            columns, in order. ``None``: sorted class names, or every non-``path``/``split`` column.
        split: Keep only rows of this split.
        uncertain: Policy for uncertain multi-label cells (module docstring).
        blank: Policy for blank multi-label cells (module docstring).
        allow_outside_root: Read image paths that resolve outside ``root`` (with a notice); ``False``
            refuses them.

    Raises:
        DataError: For a file that is not UTF-8 CSV, a bad header, an unknown label, a bad cell, a missing
            image, a repeated image with different labels, or a path outside ``root`` when refused (each
            naming the row).
    """
    check_policies(uncertain, blank)
    header, body = _read_rows(path)
    lower = [c.lower() for c in header]
    if "path" not in lower:
        raise DataError(f"{path}: header must contain a 'path' column, got {header}")
    if split is not None and "split" not in lower:
        raise DataError(f"{path}: split={split!r} requested but the manifest has no 'split' column")
    i_path, i_split = lower.index("path"), (lower.index("split") if "split" in lower else None)
    warnings: list[str] = []
    if "label" in header:
        numbered, names = _single_label(path, body, i_path, header.index("label"), i_split, class_names)
        task = "multiclass"
    else:
        numbered, names = _multi_label(
            path, header, body, (i_path, i_split), class_names, (uncertain, blank), (split, warnings)
        )
        task = "multilabel"
    numbered, notices = _repeats(path, numbered)
    kept: list[ManifestRow] = []
    outside: list[tuple[str, Path]] = []
    resolves_outside = outside_checker(root)
    for lineno, row in numbered:
        if split is not None and row.split != split:
            continue
        image = root / row.path
        if not os.path.exists(image):
            raise DataError(f"{path}: row {lineno}: image file not found: {row.path}")
        try:
            check_regular(image, "image")
        except DataError as exc:
            notices.append(f"{path.name}: row {lineno}: {row.path}: left out: {exc}")
            continue
        real = resolves_outside(image)
        if real is not None:
            outside.append((f"row {lineno}: {row.path}", real))
        kept.append(row)
    notices += outside_notice(path.name, root, outside, allow_outside_root)
    return Manifest(kept, names, task, warnings, notices)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and the numbered body rows of a UTF-8 CSV file."""
    reader = csv.reader(text_stream(path, "manifest"))
    try:
        header = [c.strip() for c in next(reader, [])]
        body = list(enumerate(reader, start=2))
    except csv.Error as exc:
        raise DataError(f"{path}: row {reader.line_num}: not a valid CSV row: {exc}") from None
    return header, body


def _repeats(
    path: Path, numbered: list[tuple[int, ManifestRow]]
) -> tuple[list[tuple[int, ManifestRow]], list[str]]:
    """Drop rows that repeat an image within its split; name them, and images listed in several splits."""
    first: dict[tuple[str, str], tuple[int, ManifestRow]] = {}
    splits: dict[str, dict[str, int]] = defaultdict(dict)
    kept: list[tuple[int, ManifestRow]] = []
    dropped: list[str] = []
    for lineno, row in numbered:
        key = posixpath.normpath(row.path)
        seen = first.get((key, row.split))
        if seen is None:
            first[(key, row.split)] = (lineno, row)
            kept.append((lineno, row))
            splits[key][row.split] = lineno
            continue
        if seen[1].label != row.label:
            raise DataError(
                f"{path}: rows {seen[0]} and {lineno} list {row.path} with different labels "
                f"({seen[1].label!r} and {row.label!r})"
            )
        dropped.append(f"row {lineno} repeats row {seen[0]} ({row.path})")
    notices = []
    if dropped:
        shown = "; ".join(dropped[:5]) + (f"; … and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        notices.append(f"{path.name}: {len(dropped)} duplicate row(s) left out, the first kept: {shown}")
    leaked = [(key, rows) for key, rows in splits.items() if len(rows) > 1]
    if leaked:
        names = sorted({s or "(none)" for _, rows in leaked for s in rows})
        shown = "; ".join(f"{key} ({_rows_by_split(rows)})" for key, rows in leaked[:5])
        more = f"; … and {len(leaked) - 5} more" if len(leaked) > 5 else ""
        notices.append(
            f"LEAKAGE: {len(leaked)} image(s) of {path.name} are listed in more than one split "
            f"({', '.join(names)}), so the test results are not independent of training: {shown}{more}"
        )
    return kept, notices


def _rows_by_split(rows: dict[str, int]) -> str:
    return ", ".join(f"{split or '(no split)'} row {lineno}" for split, lineno in rows.items())


def _cell(cells: list[str], i: int | None) -> str:
    return cells[i].strip() if i is not None and i < len(cells) else ""


def _path_cell(path: Path, lineno: int, cells: list[str], i: int) -> str:
    """The row's image path; one with a control character (a newline inside quotes) is refused."""
    rel = _cell(cells, i)
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise DataError(f"{path}: row {lineno}: the path {rel!r} holds a control character")
    return rel


def _single_label(
    path: Path,
    body: list[tuple[int, list[str]]],
    i_path: int,
    i_label: int,
    i_split: int | None,
    names: list[str] | None,
) -> tuple[list[tuple[int, ManifestRow]], list[str]]:
    rows: list[tuple[int, ManifestRow]] = []
    for lineno, cells in body:
        if not any(c.strip() for c in cells):
            continue
        rel, label = _path_cell(path, lineno, cells, i_path), _cell(cells, i_label)
        if not rel or not label:
            raise DataError(f"{path}: row {lineno}: empty path or label")
        if names is not None and label not in names:
            raise DataError(f"{path}: row {lineno} ({rel}): unknown label {label!r}; classes: {names}")
        rows.append((lineno, ManifestRow(norm_path(rel), label, _cell(cells, i_split))))
    class_names = list(names) if names is not None else sorted({str(r.label) for _, r in rows})
    return rows, class_names


def _multi_label(
    path: Path,
    header: list[str],
    body: list[tuple[int, list[str]]],
    columns: tuple[int, int | None],
    names: list[str] | None,
    policies: tuple[str, str],
    report: tuple[str | None, list[str]],
) -> tuple[list[tuple[int, ManifestRow]], list[str]]:
    """Rows of a multi-label manifest; ``report`` = (split kept, list that receives left-out warnings)."""
    (i_path, i_split), (uncertain, blank), (keep_split, warnings) = columns, policies, report
    skip = {i_path} | ({i_split} if i_split is not None else set())
    if names is None:
        names = [c for i, c in enumerate(header) if i not in skip]
        if not names:
            raise DataError(
                f"{path}: a manifest needs a 'label' column (single-label) or one column per label "
                f"(multi-label); got {header}"
            )
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{path}: label column(s) {missing} not in the header {header}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: label names must be unique, got {names}")
    cols = [header.index(n) for n in names]
    rows: list[tuple[int, ManifestRow]] = []
    for lineno, cells in body:
        if not any(c.strip() for c in cells):
            continue
        rel = _path_cell(path, lineno, cells, i_path)
        if not rel:
            raise DataError(f"{path}: row {lineno}: empty path")
        values: list[float] = []
        unsure: list[str] = []
        for name, i in zip(names, cols, strict=True):
            v = _parse_cell(_cell(cells, i), blank)
            if v is None:
                raise DataError(
                    f"{path}: row {lineno} ({rel}): column {name!r} must hold 1, 0, -1 or nothing "
                    "(pass class_names= to choose the label columns)"
                )
            if v < 0:
                unsure.append(name)
                v = 1.0 if uncertain == "one" else 0.0
            values.append(v)
        split = _cell(cells, i_split)
        if unsure and uncertain == "ignore":
            if keep_split is not None and split != keep_split:
                continue
            warnings.append(
                f"{norm_path(rel)}: left out, uncertain label(s) {', '.join(unsure)} (uncertain='ignore')"
            )
            continue
        rows.append((lineno, ManifestRow(norm_path(rel), tuple(values), split, tuple(unsure))))
    return rows, list(names)


def _parse_cell(text: str, blank: str) -> float | None:
    """1.0, 0.0, or −1.0 for uncertain; ``None`` for anything else."""
    if text == "" or text.lower() == "nan":
        return -1.0 if blank == "uncertain" else 0.0
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v in (0.0, 1.0, -1.0) else None
