"""The run store: one SQLite file per run, the single source of truth for reports.

Schema (keys are text or real; ``condition`` is ``"clean"`` or an attack name, ``epsilon`` is 0 for clean):

- ``meta(key, value)``: JSON values — the resolved config, versions, timings, warnings.
- ``models(model, arch, training, info)``: one row per audited model; ``info`` is JSON.
- ``samples(sample_id, idx, label, has_truth, n_points)``: the evaluated images (no pixels, no identifiers).
- ``predictions(model, condition, epsilon, sample_id, label, pred, correct)``.
- ``metrics(model, condition, epsilon, explainer, metric, sample_id, value)``: one row per sample × metric;
  ``explainer`` is ``""`` for metrics that do not involve a map.
- ``figure_samples(sample_id, image, mask, points)`` and ``figure_maps(model, condition, epsilon, explainer,
  sample_id, map)``: the few images and maps the report draws (float16 ``.npy`` blobs).
- ``units(unit, finished_at)``: finished units of work, so a re-run can skip them.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models(model TEXT PRIMARY KEY, arch TEXT, training TEXT, info TEXT);
CREATE TABLE IF NOT EXISTS samples(sample_id TEXT PRIMARY KEY, idx INTEGER, label INTEGER,
    has_truth INTEGER, n_points INTEGER);
CREATE TABLE IF NOT EXISTS predictions(model TEXT, condition TEXT, epsilon REAL, sample_id TEXT,
    label INTEGER, pred INTEGER, correct INTEGER, PRIMARY KEY(model, condition, epsilon, sample_id));
CREATE TABLE IF NOT EXISTS metrics(model TEXT, condition TEXT, epsilon REAL, explainer TEXT, metric TEXT,
    sample_id TEXT, value REAL, PRIMARY KEY(model, condition, epsilon, explainer, metric, sample_id));
CREATE TABLE IF NOT EXISTS figure_samples(sample_id TEXT PRIMARY KEY, image BLOB, mask BLOB, points TEXT);
CREATE TABLE IF NOT EXISTS figure_maps(model TEXT, condition TEXT, epsilon REAL, explainer TEXT,
    sample_id TEXT, map BLOB, PRIMARY KEY(model, condition, epsilon, explainer, sample_id));
CREATE TABLE IF NOT EXISTS units(unit TEXT PRIMARY KEY, finished_at REAL);
"""

STORE_FILE = "results.sqlite"


def array_to_blob(array: np.ndarray) -> bytes:
    """Serialise an array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    """Inverse of :func:`array_to_blob`."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _unit_range(a: np.ndarray) -> np.ndarray:
    """Min-max normalise a map before float16 storage, so tiny attributions do not underflow to zero."""
    lo, hi = float(np.min(a)), float(np.max(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


class Store:
    """Read/write access to one run's SQLite store.

    Args:
        path: The SQLite file, or a run directory (``results.sqlite`` inside it).
        readonly: Open an existing store for reading only (what the report does).
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        p = Path(path)
        self.path = p / STORE_FILE if p.is_dir() or p.suffix == "" else p
        if readonly:
            # Reports only read: never create tables or change the journal mode of a finished run.
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path))
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------------
    def _insert(self, table: str, rows: Iterable[Sequence[Any]], width: int) -> None:
        marks = ",".join("?" * width)
        with self._conn:
            self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", list(rows))

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        self._insert("meta", [(key, json.dumps(value, sort_keys=True, default=str))], 2)

    def add_model(self, model: str, arch: str, training: str, info: dict[str, Any]) -> None:
        """Record one audited model."""
        self._insert("models", [(model, arch, training, json.dumps(info, sort_keys=True, default=str))], 4)

    def add_samples(self, rows: Iterable[tuple[str, int, int, int, int]]) -> None:
        """Record evaluated samples: ``(sample_id, idx, label, has_truth, n_points)``."""
        self._insert("samples", rows, 5)

    def add_predictions(self, rows: Iterable[tuple[str, str, float, str, int, int, int]]) -> None:
        """Record predictions: ``(model, condition, epsilon, sample_id, label, pred, correct)``."""
        self._insert("predictions", rows, 7)

    def add_metrics(self, rows: Iterable[tuple[str, str, float, str, str, str, float]]) -> None:
        """Record per-sample metric values: ``(model, condition, epsilon, explainer, metric, id, value)``."""
        self._insert("metrics", rows, 7)

    def add_figure_sample(
        self, sample_id: str, image: np.ndarray, mask: np.ndarray | None, points: np.ndarray | None
    ) -> None:
        """Store one image (``[C, H, W]`` in [0, 1]) and its truth for the figure grid."""
        mask_blob = array_to_blob(mask.astype(bool)) if mask is not None else None
        pts = json.dumps(points.tolist() if points is not None else [])
        self._insert(
            "figure_samples", [(sample_id, array_to_blob(image.astype(np.float16)), mask_blob, pts)], 4
        )

    def add_figure_maps(self, rows: Iterable[tuple[str, str, float, str, str, np.ndarray]]) -> None:
        """Store maps for the figure grid: ``(model, condition, epsilon, explainer, sample_id, map)``."""
        self._insert(
            "figure_maps",
            ((m, c, e, x, s, array_to_blob(_unit_range(a).astype(np.float16))) for m, c, e, x, s, a in rows),
            6,
        )

    def mark_unit_done(self, unit: str) -> None:
        """Record that a unit of work finished."""
        self._insert("units", [(unit, time.time())], 2)

    # -- reading -----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key`` or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def unit_done(self, unit: str) -> bool:
        """Whether ``unit`` has finished in this store."""
        return self._conn.execute("SELECT 1 FROM units WHERE unit = ?", (unit,)).fetchone() is not None

    def table(self, name: str) -> pd.DataFrame:
        """Return a whole table as a DataFrame, in a deterministic order."""
        if name not in ("meta", "models", "samples", "predictions", "metrics", "units"):
            raise ValueError(f"unknown table {name!r}")
        df = pd.read_sql_query(f"SELECT * FROM {name}", self._conn)
        return df.sort_values(list(df.columns[: min(len(df.columns), 6)])).reset_index(drop=True)

    def figure_samples(self) -> dict[str, dict[str, Any]]:
        """Images and truth stored for figures, keyed by sample id (sorted)."""
        out: dict[str, dict[str, Any]] = {}
        for sid, image, mask, points in self._conn.execute(
            "SELECT sample_id, image, mask, points FROM figure_samples ORDER BY sample_id"
        ):
            out[sid] = {
                "image": blob_to_array(image).astype(np.float32),
                "mask": blob_to_array(mask) if mask is not None else None,
                "points": np.asarray(json.loads(points), dtype=np.float64).reshape(-1, 2),
            }
        return out

    def figure_maps(self) -> pd.DataFrame:
        """Stored figure maps as a DataFrame with a ``map`` column of float32 arrays."""
        rows = [
            (m, c, e, x, s, blob_to_array(b).astype(np.float32))
            for m, c, e, x, s, b in self._conn.execute(
                "SELECT model, condition, epsilon, explainer, sample_id, map FROM figure_maps "
                "ORDER BY model, condition, epsilon, explainer, sample_id"
            )
        ]
        return pd.DataFrame(rows, columns=["model", "condition", "epsilon", "explainer", "sample_id", "map"])
