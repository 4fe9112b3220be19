"""The report's header and run details: a plain description of the data set, the models and the run.

The run stores its data set as a dictionary (name, sizes, class names, and where the files live). The report
describes it in words and never prints a path: a cache path says nothing to a reader and leaks the machine's
layout when the report is mailed.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from robustxai.report._numbers import fmt_number
from robustxai.results._run import RunData

_MAX_CLASSES_SHOWN = 6


def dataset_description(dataset: Any) -> str:
    """The data set in words, never with a path (a folder by its name only); ``""`` without one.

    E.g. ``synthetic-fracture: multiclass, 2 classes (normal, fracture), grey 32 × 32 px, 240 training / 40
    test images``.
    """
    if not isinstance(dataset, dict):
        return ""
    name = str(dataset.get("name") or "data set")
    if name == "folder" and dataset.get("path"):
        name = f"image folder '{PurePath(str(dataset['path'])).name}'"
    parts: list[str] = []
    classes = dataset.get("class_names")
    task = dataset.get("task")
    if isinstance(classes, list) and classes:
        shown = ", ".join(str(c) for c in classes[:_MAX_CLASSES_SHOWN])
        more = f" and {len(classes) - _MAX_CLASSES_SHOWN} more" if len(classes) > _MAX_CLASSES_SHOWN else ""
        parts.append(f"{task + ', ' if task else ''}{len(classes)} classes ({shown}{more})")
    elif task:
        parts.append(str(task))
    channels, size = dataset.get("channels"), dataset.get("size")
    colour = {1: "grey", 3: "colour"}.get(channels, f"{channels}-channel") if channels else ""
    if size:
        parts.append(f"{colour} {size} × {size} px".strip())
    elif colour:
        parts.append(f"{colour} images")
    if dataset.get("n_train") is not None and dataset.get("n_test") is not None:
        parts.append(f"{dataset['n_train']} training / {dataset['n_test']} test images")
    if dataset.get("split"):
        parts.append(f"split: {dataset['split']}")
    return name + (": " + ", ".join(parts) if parts else "")


def models_rows(run: RunData) -> list[list[str]]:
    """Model, architecture, training, where it came from, and its validation accuracy (clean, robust)."""
    rows = []
    for r in run.models.to_dict("records"):
        try:
            info = json.loads(r.get("info") or "{}")
        except (TypeError, ValueError):
            info = {}
        origin = str(info.get("source", ""))
        if info.get("init_from"):
            origin += f", initialised from {info['init_from']}"
        if info.get("precision") not in (None, "", "float32"):  # float32 is the default: not mentioned
            origin += f", evaluated in {info['precision']} (autocast)"
        rows.append(
            [
                str(r["model"]),
                str(r["arch"] or ""),
                str(r["training"] or ""),
                origin,
                fmt_number(info.get("val_accuracy"), 1, 100.0),
                fmt_number(info.get("robust_val_accuracy"), 1, 100.0),
            ]
        )
    return rows


def mapping_rows(value: Any, seconds: bool = False) -> list[tuple[str, str]]:
    """A metadata mapping (versions, timings) as sorted ``(key, text)`` rows."""
    if not isinstance(value, dict):
        return []
    out = []
    for k in sorted(value, key=str):
        v = value[k]
        text = (
            f"{fmt_number(v, 1)} s"
            if seconds and isinstance(v, int | float)
            else json.dumps(v, default=str).strip('"')
        )
        out.append((str(k), text))
    return out
