"""Which test images the alignment metrics leave out for want of ground truth, as per-sample warning lines.

Two sources: the data loader's own warnings (a mask of the wrong size, points outside the image, an
annotation file entry that matches no image: the bad part is dropped when the image is read), and images
that carry no annotation at all although images of their class have findings. The second rule is what
separates a forgotten annotation from a negative case: in the built-in benchmark no "normal" image has a
finding and every fracture has one, so it warns about nothing there; in a folder whose fracture images are
annotated, an unannotated fracture image is named, while an image annotated as having no finding is not.
For multi-label data the "class" is "has at least one positive label".

The lines are recorded in the store's ``warnings`` table (code :data:`~robustxai.results._store.TRUTH_CODE`,
model ``""``), so the report lists them (the first few, and how many more); a resumed run replaces them with
what the data says now.
"""

from __future__ import annotations

import logging

import torch

from robustxai.audit._plan import AuditData
from robustxai.data._base import ImageDataset, SubsetDataset

log = logging.getLogger(__name__)


def loader_warnings(dataset: ImageDataset) -> list[str]:
    """The warning lines a data set (or the one a subset selects from) has collected so far."""
    while isinstance(dataset, SubsetDataset):
        dataset = dataset.base
    found = getattr(dataset, "warnings", None)
    return [str(w) for w in found] if isinstance(found, list) else []


def named_sample(line: str, ids: set[str]) -> str | None:
    """The test image a loader line is about, or ``None``.

    Loader lines name their image as one ``": "``-separated field: ``"<id>: mask dropped: …"`` from the folder
    loader, ``"<annotation file>: <id>: …"`` from an annotation file. Lines about training images, about
    annotations that match no image, or about rows the manifest left out name no test image.
    """
    return next((field for field in line.split(": ") if field in ids), None)


def _finding_classes(labels: torch.Tensor, class_names: list[str]) -> list[str]:
    """A short name of each image's class for the rule above (multi-label: "positive" or "negative")."""
    if labels.ndim == 2:
        return ["positive" if bool((row == 1).any()) else "negative" for row in labels]
    return [class_names[int(y)] if 0 <= int(y) < len(class_names) else str(int(y)) for y in labels]


def missing_truth(data: AuditData, class_names: list[str], named: frozenset[str] = frozenset()) -> list[str]:
    """One line per unannotated test image whose class has images with a finding (see the module docstring).

    An image annotated as having no finding (an entry without points or regions) is a negative case, not a
    missing annotation, and is not named; nor is an image in ``named``, whose truth the loader already
    reported as dropped (an annotation file can leave a sample out when none of its points fits the image).
    """
    classes = _finding_classes(data.labels, class_names)
    with_findings = {c for c, k in zip(classes, data.truth_kinds, strict=True) if k == "finding"}
    with_findings.discard("negative")
    lines = []
    for sid, cls, kind in zip(data.ids, classes, data.truth_kinds, strict=True):
        if kind == "missing" and cls in with_findings and sid not in named:
            what = "a positive label" if cls == "positive" else f"class {cls!r}"
            lines.append(
                f"{sid}: no ground truth, although other images with {what} are annotated; "
                "left out of the alignment metrics"
            )
    return lines


def truth_warnings(data: AuditData) -> list[str]:
    """The ground-truth warnings about the audit's test images: the loader's, then the missing annotations.

    The loader's lines about other images (training images of the same folder, unmatched annotations, left-out
    manifest rows) stay in the log only. The missing-annotation lines are logged here; the loader logged its
    own when it met them.
    """
    ids = set(data.ids)
    about = [(line, named_sample(line, ids)) for line in loader_warnings(data.dataset)]
    loader = [line for line, sid in about if sid is not None]
    named = frozenset(sid for _, sid in about if sid is not None)
    missing = missing_truth(data, list(data.dataset.class_names), named)
    for line in missing:
        log.warning("%s", line)
    return list(dict.fromkeys(loader + missing))
