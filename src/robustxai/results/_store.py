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
- ``warnings(model, code, message)``: warnings raised while auditing a model (e.g. failed sanity checks);
  ``model`` is ``""`` for run-wide ones, such as the per-sample ground-truth warnings (code ``truth``).
- ``units(unit, finished_at)``: finished units of work, so a re-run can skip them. A unit's rows and its
  ``units`` row are written in one transaction (:meth:`Store.write_unit`), so a crash never leaves half a
  unit: either all of its rows are there and it is marked done, or none are and it runs again.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustxai._arrays import minmax_array
from robustxai._errors import RobustXAIError
from robustxai._types import JsonValue
from robustxai.results._schema import (
    FORMAT_KEY,
    STORE_FORMAT,
    FigureMapRow,
    MetricRow,
    PredictionRow,
    SampleRow,
    StoreRow,
    WarningRow,
)

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
CREATE TABLE IF NOT EXISTS warnings(model TEXT, code TEXT, message TEXT, PRIMARY KEY(model, code, message));
"""

#: Tables a unit may write, with their widths (figure maps are encoded by :meth:`Store.write_unit`).
UNIT_TABLES = {
    "predictions": len(PredictionRow._fields),
    "metrics": len(MetricRow._fields),
    "figure_maps": len(FigureMapRow._fields),
    "warnings": len(WarningRow._fields),
}
TABLES = ("meta", "models", "samples", "predictions", "metrics", "units", "warnings")

STORE_FILE = "results.sqlite"


#: ``warnings.code`` of the per-sample ground-truth warnings (a dropped mask, points outside the image, an
#: image without truth); there can be one per test image, so listings show the first
#: :data:`TRUTH_LINES_SHOWN`.
TRUTH_CODE = "truth"
#: ``warnings.code`` of a model × explainer whose maps the explainer itself calls approximate on that model
#: (e.g. DeepLIFT on a model its rules do not cover); the message starts with ``"<explainer>: "`` and the
#: report marks the pair's cells with :data:`APPROXIMATE_MARK`.
APPROXIMATE_CODE = "approximate"
APPROXIMATE_MARK = "†"


def approximate_pairs(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """``(model, explainer)`` pairs of a ``warnings`` table whose maps are approximate on that model."""
    if rows.empty or "code" not in rows:
        return set()
    found = rows[rows["code"] == APPROXIMATE_CODE]
    return {
        (str(m), str(msg).split(":", 1)[0]) for m, msg in zip(found["model"], found["message"], strict=True)
    }


#: ``warnings.code`` of a model that could not be audited (non-finite weights or outputs): its units were
#: skipped and its results are missing from the tables.
FAILED_CODE = "failed"
TRUTH_LINES_SHOWN = 10


def warning_lines(rows: pd.DataFrame, truth_shown: int | None = TRUTH_LINES_SHOWN) -> list[str]:
    """One line per row of a ``warnings`` table (e.g. a failed sanity check), model first, sorted.

    The table's key is the whole row, so a warning raised by every shard of a model (DeepLIFT's summation
    check) is one row, and one line. Of the per-sample ground-truth warnings (code :data:`TRUTH_CODE`) only
    the first ``truth_shown`` are listed, followed by a line that counts the rest (``None``: all of them).
    """
    if rows.empty:
        return []
    lines: list[str] = []
    n_truth, after_truth = 0, 0
    for r in rows.sort_values(["model", "code", "message"]).to_dict("records"):
        if r["code"] == TRUTH_CODE:
            n_truth += 1
            if truth_shown is not None and n_truth > truth_shown:
                continue
            after_truth = len(lines) + 1
        lines.append(f"{r['model']}: {r['message']}" if r["model"] else str(r["message"]))
    if truth_shown is not None and n_truth > truth_shown:
        lines.insert(
            after_truth,
            f"… and {n_truth - truth_shown} more ground-truth warnings ({n_truth} in all: every one is in "
            "the run's warnings table, e.g. rx.open_run(run_dir).warnings)",
        )
    return lines


def array_to_blob(array: np.ndarray) -> bytes:
    """Serialise an array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    """Inverse of :func:`array_to_blob`."""
    array: np.ndarray = np.load(io.BytesIO(blob), allow_pickle=False)
    return array


def _unit_range(a: np.ndarray) -> np.ndarray:
    """Min-max normalise a map before float16 storage, so tiny attributions do not underflow to zero."""
    return minmax_array(a)


def _encode_maps(rows: Iterable[Sequence[object]]) -> list[tuple[object, ...]]:
    """Figure-map rows (:class:`FigureMapRow`) with the map as a float16 ``.npy`` blob, min-max normalised."""
    return [
        (m, c, e, x, s, array_to_blob(_unit_range(np.asarray(a)).astype(np.float16)))
        for m, c, e, x, s, a in rows
    ]


def store_problem(path: Path) -> str | None:
    """Why ``path`` is not an intact robustxai store (``None`` when it is one), without changing it.

    An intact store opens read-only, passes SQLite's ``quick_check`` (which reads every page, so a truncated
    file is caught) and holds robustxai's marker row (or, for stores of earlier versions, a ``versions`` row
    naming robustxai). Every SQLite error becomes the reason; nothing here deletes or repairs a file.
    """
    query = "SELECT key, value FROM meta WHERE key IN (?, 'versions')"
    # Without a write-ahead log there is nothing but the file to read: open it immutable, so not even the
    # ``-shm`` side file SQLite makes for a WAL-mode database appears next to it.
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{immutable}", uri=True)
        try:
            check = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                return f"SQLite's integrity check fails: {'; '.join(check[:2])}"
            rows = {str(k): str(v) for k, v in conn.execute(query, (FORMAT_KEY,))}
        finally:
            conn.close()
    except sqlite3.Error as err:  # "file is not a database", "malformed", "no such table: meta" …
        return f"{type(err).__name__}: {err}"
    if FORMAT_KEY in rows:
        return None if rows[FORMAT_KEY] == json.dumps(STORE_FORMAT) else f"unknown format {rows[FORMAT_KEY]}"
    return None if "robustxai" in rows.get("versions", "") else "it holds no robustxai marker row"


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
        self._conn.execute("PRAGMA synchronous=FULL")  # a committed unit survives a power cut
        self._conn.executescript(SCHEMA)
        marker = (FORMAT_KEY, json.dumps(STORE_FORMAT))
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", marker)
        self._conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------------
    def _insert(self, table: str, rows: Iterable[Sequence[object]], width: int) -> None:
        marks = ",".join("?" * width)
        with self._conn:
            self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", list(rows))

    def set_meta(self, key: str, value: object) -> None:
        """Store a JSON-serialisable value under ``key``."""
        self._insert("meta", [(key, json.dumps(value, sort_keys=True, default=str))], 2)

    def add_model(
        self, model: str, arch: str, training: str, info: Mapping[str, object], keep_existing: bool = False
    ) -> None:
        """Record one audited model; with ``keep_existing`` an earlier record (a resumed run's) is kept."""
        row = (model, arch, training, json.dumps(info, sort_keys=True, default=str))
        verb = "INSERT OR IGNORE" if keep_existing else "INSERT OR REPLACE"
        with self._conn:
            self._conn.execute(f"{verb} INTO models VALUES (?,?,?,?)", row)

    def add_samples(self, rows: Iterable[SampleRow]) -> None:
        """Record evaluated samples: ``(sample_id, idx, label, has_truth, n_points)``."""
        self._insert("samples", rows, 5)

    def add_predictions(self, rows: Iterable[PredictionRow]) -> None:
        """Record predictions: ``(model, condition, epsilon, sample_id, label, pred, correct)``."""
        self._insert("predictions", rows, 7)

    def add_metrics(self, rows: Iterable[MetricRow]) -> None:
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

    def add_figure_maps(self, rows: Iterable[FigureMapRow]) -> None:
        """Store maps for the figure grid: ``(model, condition, epsilon, explainer, sample_id, map)``."""
        self._insert("figure_maps", _encode_maps(rows), 6)

    def add_warnings(self, rows: Iterable[WarningRow]) -> None:
        """Record warnings: ``(model, code, message)`` (``model`` is ``""`` for run-wide warnings)."""
        self._insert("warnings", rows, 3)

    def replace_warnings(self, code: str, messages: Iterable[str]) -> None:
        """Make ``messages`` the run-wide warnings of ``code``, replacing earlier ones (one transaction).

        For warnings that describe the data as read now, such as the ground-truth lines: a resumed run whose
        annotations were fixed must not keep the old complaints.
        """
        rows = [WarningRow("", code, m) for m in messages]
        with self._conn:
            self._conn.execute("DELETE FROM warnings WHERE model = '' AND code = ?", (code,))
            self._conn.executemany("INSERT OR REPLACE INTO warnings VALUES (?,?,?)", rows)

    def delete_warnings(self, code: str) -> None:
        """Remove every warning of ``code`` (of all models), e.g. the failures a new run decides afresh."""
        with self._conn:
            self._conn.execute("DELETE FROM warnings WHERE code = ?", (code,))

    def mark_unit_done(self, unit: str) -> None:
        """Record that a unit of work finished."""
        self._insert("units", [(unit, time.time())], 2)

    def write_unit(self, unit: str, rows: Mapping[str, Sequence[StoreRow]]) -> None:
        """Write one unit's rows and mark it done, all in one transaction.

        Args:
            unit: The unit's id.
            rows: Rows by table name (keys of :data:`UNIT_TABLES`), in each table's layout.

        Raises:
            RobustXAIError: For a table a unit may not write.
        """
        unknown = sorted(set(rows) - set(UNIT_TABLES))
        if unknown:
            raise RobustXAIError(
                f"a unit cannot write table(s) {', '.join(unknown)}; known: {', '.join(UNIT_TABLES)}"
            )
        with self._conn:  # one transaction: commits on success, rolls back on any error or interrupt
            for table, table_rows in rows.items():
                width = UNIT_TABLES[table]
                data = _encode_maps(table_rows) if table == "figure_maps" else table_rows
                marks = ",".join("?" * width)
                self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", list(data))
            self._conn.execute("INSERT OR REPLACE INTO units VALUES (?, ?)", (unit, time.time()))

    # -- reading -----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: JsonValue = None) -> JsonValue:
        """Return the value stored under ``key`` or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        value: JsonValue = json.loads(row[0])
        return value

    def unit_done(self, unit: str) -> bool:
        """Whether ``unit`` has finished in this store."""
        return self._conn.execute("SELECT 1 FROM units WHERE unit = ?", (unit,)).fetchone() is not None

    def done_units(self) -> set[str]:
        """The ids of every finished unit."""
        return {row[0] for row in self._conn.execute("SELECT unit FROM units")}

    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name`` (stores written by older versions may lack some)."""
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self._conn.execute(query, (name,)).fetchone() is not None

    def warnings(self) -> pd.DataFrame:
        """Stored warnings as a DataFrame ``model, code, message`` (empty for stores without the table)."""
        if not self.has_table("warnings"):
            return pd.DataFrame(columns=["model", "code", "message"])
        return self.table("warnings")

    def table(self, name: str) -> pd.DataFrame:
        """Return a whole table as a DataFrame, in a deterministic order."""
        if name not in TABLES:
            raise RobustXAIError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        df = pd.read_sql_query(f"SELECT * FROM {name}", self._conn)
        return df.sort_values(list(df.columns[: min(len(df.columns), 6)])).reset_index(drop=True)

    def figure_samples(self) -> dict[str, dict[str, np.ndarray | None]]:
        """Images and truth stored for figures, keyed by sample id (sorted)."""
        out: dict[str, dict[str, np.ndarray | None]] = {}
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
