"""Loading a run's store into pandas: what the report, the export and ``open_run`` read.

:func:`load_run` gives the report everything it draws (rows, metadata, figure material) and refuses a run
without predictions; :func:`read_rows` gives the per-sample tables and metadata as stored, for ``open_run``
and the export. Both open the store read-only and turn any SQLite failure into one :class:`RobustXAIError`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robustxai._errors import RobustXAIError
from robustxai._types import JsonValue
from robustxai.results._store import STORE_FILE, Store

__all__ = ["ROW_TABLES", "RunData", "RunRows", "load_run", "read_rows", "run_dir_of"]

#: Per-sample tables of the store that ``open_run`` and the export give (figure blobs are the report's).
ROW_TABLES = ("predictions", "metrics", "samples", "models", "units")


@dataclass
class RunData:
    """Everything the report reads from one run store."""

    path: Path
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    models: pd.DataFrame
    meta: dict[str, JsonValue]
    figure_samples: dict[str, dict[str, np.ndarray | None]]
    figure_maps: pd.DataFrame
    warnings: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RunRows:
    """A run's per-sample tables (:data:`ROW_TABLES`), its warnings and metadata, as stored."""

    path: Path
    frames: dict[str, pd.DataFrame]
    warnings: pd.DataFrame
    meta: dict[str, JsonValue]


def run_dir_of(path: str | Path) -> Path:
    """The run directory of ``path``: the path itself, or the folder of a ``results.sqlite`` file."""
    p = Path(path)
    return p.parent if p.name == STORE_FILE else p


def _store_path(run_dir: Path) -> Path:
    path = run_dir / STORE_FILE
    if not path.is_file():
        raise RobustXAIError(f"no run store at {path}: run the audit first")
    return path


def read_rows(path: str | Path) -> RunRows:
    """Read the per-sample tables, warnings and metadata of the run at ``path`` (a run dir or its store).

    Raises:
        RobustXAIError: If there is no store or it cannot be read.
    """
    run_dir = run_dir_of(path)
    store_path = _store_path(run_dir)
    try:
        with Store(store_path, readonly=True) as store:
            frames = {name: store.table(name) for name in ROW_TABLES}
            warnings = store.warnings()
            meta_rows = store.table("meta")
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise RobustXAIError(f"cannot read the run store {store_path}: {exc}") from None
    meta = {str(k): json.loads(v) for k, v in zip(meta_rows["key"], meta_rows["value"], strict=True)}
    return RunRows(run_dir, frames, warnings, meta)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run's store into memory for the report.

    Args:
        run_dir: The run directory holding ``results.sqlite``.

    Returns:
        The run's rows, metadata and figure material.

    Raises:
        RobustXAIError: If there is no store, it cannot be read, or it holds no predictions yet.
    """
    path = _store_path(Path(run_dir))
    try:
        with Store(path, readonly=True) as store:
            predictions = store.table("predictions")
            metrics = store.table("metrics")
            models = store.table("models")
            meta_rows = store.table("meta")
            samples = store.figure_samples()
            maps = store.figure_maps()
            warnings = store.warnings()
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise RobustXAIError(f"cannot read the run store {path}: {exc}") from None
    if predictions.empty:
        raise RobustXAIError(
            f"the run store {path} holds no predictions: the audit has not produced results yet, "
            "so there is nothing to report"
        )
    meta: dict[str, JsonValue] = {}
    for key, value in zip(meta_rows["key"], meta_rows["value"], strict=True):
        try:
            meta[str(key)] = json.loads(value)
        except (TypeError, ValueError):
            meta[str(key)] = value
    predictions["epsilon"] = pd.to_numeric(predictions["epsilon"], errors="coerce").fillna(0.0)
    predictions["correct"] = pd.to_numeric(predictions["correct"], errors="coerce")
    metrics["epsilon"] = pd.to_numeric(metrics["epsilon"], errors="coerce").fillna(0.0)
    metrics["value"] = pd.to_numeric(metrics["value"], errors="coerce").astype(np.float64)
    return RunData(path, predictions, metrics, models, meta, samples, maps, warnings)
