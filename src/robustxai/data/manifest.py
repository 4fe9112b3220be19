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
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from robustxai.errors import DataError

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
    """A parsed manifest: rows, label names, task and the warnings about left-out rows."""

    rows: list[ManifestRow]
    class_names: list[str]
    task: str
    warnings: list[str] = field(default_factory=list)


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
) -> Manifest:
    """Parse a manifest and check that the images of the kept rows exist under ``root``.

    Args:
        path: The CSV file.
        root: Folder the ``path`` column is relative to.
        class_names: Single-label: the class order (labels must be among them). Multi-label: the label
            columns, in order. ``None``: sorted class names, or every non-``path``/``split`` column.
        split: Keep only rows of this split.
        uncertain: Policy for uncertain multi-label cells (module docstring).
        blank: Policy for blank multi-label cells (module docstring).

    Raises:
        DataError: For a bad header, an unknown label, a bad cell or a missing image (naming the row).
    """
    check_policies(uncertain, blank)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        body = list(enumerate(reader, start=2))
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
    kept = []
    for lineno, row in numbered:
        if split is not None and row.split != split:
            continue
        if not (root / row.path).is_file():
            raise DataError(f"{path}: row {lineno}: image file not found: {row.path}")
        kept.append(row)
    return Manifest(kept, names, task, warnings)


def _cell(cells: list[str], i: int | None) -> str:
    return cells[i].strip() if i is not None and i < len(cells) else ""


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
        rel, label = _cell(cells, i_path), _cell(cells, i_label)
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
        rel = _cell(cells, i_path)
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
