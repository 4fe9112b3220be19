"""Reading a finished run back: :func:`open_run` (pandas) and :func:`export_run` (Parquet or CSV files).

Both read only the run's store, through the results layer (:mod:`robustxai.results`), like the report: the
per-sample rows (``predictions``, ``metrics``, ``samples``, ``models``, ``warnings``, ``units``) and every
table the report writes under ``tables/`` (robustness, alignment, stability, correlation, manipulation, …),
computed by the same function that writes those files (:func:`robustxai.report._run_tables.run_tables`),
plus the report's in-page aggregates that have no file of their own (``clean``, ``baseline``,
``random_gaps``). This module sits above both the audit (for the config) and the report (for the
aggregates), which never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from robustxai._atomic import replacing
from robustxai._errors import RobustXAIError
from robustxai._types import JsonValue
from robustxai.audit._config import AuditConfig, validate_config
from robustxai.report._run_tables import report_tables, run_tables
from robustxai.report._tables import write_table_csv
from robustxai.results._layout import refuse_link
from robustxai.results._run import ROW_TABLES, load_run, read_rows

EXPORT_FORMATS = ("parquet", "csv")
#: The report's aggregates that :attr:`Run.tables` and the export add to the ``tables/`` files.
EXTRA_TABLES = ("clean", "baseline", "random_gaps")


@dataclass(repr=False)
class Run:
    """A run opened for analysis: per-sample rows and the report's tables as pandas DataFrames.

    Attributes:
        path: The run directory.
        predictions: One row per model × condition × ε × sample (``label``, ``pred``, ``correct``).
        metrics: One row per model × condition × ε × explainer × metric × sample.
        samples: The evaluated images (ids, labels, whether annotated).
        models: One row per audited model (``info`` is JSON text).
        units: Finished units of work and when they finished.
        warnings: Warnings recorded by the audit stages (``model, code, message``).
        meta: The store's metadata (config, versions, timings, …) as Python values.
    """

    path: Path
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    samples: pd.DataFrame
    models: pd.DataFrame
    units: pd.DataFrame
    warnings: pd.DataFrame
    meta: dict[str, JsonValue]

    @property
    def config(self) -> AuditConfig:
        """The resolved configuration the run was made with."""
        raw = self.meta.get("config")
        if not isinstance(raw, dict):
            raise RobustXAIError(f"the run store in {self.path} records no config")
        return validate_config(raw, f"(stored in {self.path})")

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of ``tables/*.csv`` by file name (``robustness``, …) and the in-page aggregates.

        Empty (``{}``) for a run that holds no predictions yet.
        """
        if self.predictions.empty:
            return {}
        data = load_run(self.path)
        aggregates = report_tables(data)
        out = run_tables(data, aggregates)
        for name in EXTRA_TABLES:  # shown in the report's pages but written to no file of their own
            frame = getattr(aggregates, name)
            if isinstance(frame, pd.DataFrame) and not frame.empty:
                out[name] = frame.reset_index(drop=True)
        return out

    def __repr__(self) -> str:
        """A short summary: the run, its models, how many images, and each table's name and shape."""
        models = ", ".join(str(m) for m in self.models["model"]) if "model" in self.models else ""
        try:
            tables = ", ".join(f"{name} {df.shape[0]}×{df.shape[1]}" for name, df in self.tables.items())
        except RobustXAIError as err:  # a repr never raises: say why the tables are missing
            tables = f"unavailable ({err})"
        return (
            f"Run({str(self.path)!r}, models=[{models}], samples={len(self.samples)}, "
            f"predictions={len(self.predictions)}, metrics={len(self.metrics)}, "
            f"warnings={len(self.warnings)}, tables: {tables or 'none (no predictions yet)'})"
        )


def open_run(path: str | Path) -> Run:
    """Open a run directory (or its ``results.sqlite``) for reading.

    Args:
        path: A run directory written by an audit, or the store file in it.

    Returns:
        The run's rows and metadata; ``.tables`` computes the report's aggregates on first use.

    Raises:
        RobustXAIError: If there is no store or it cannot be read.
    """
    rows = read_rows(path)
    return Run(path=rows.path, warnings=rows.warnings, meta=rows.meta, **rows.frames)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write one table as Parquet, atomically (a hard link named ``path`` keeps its bytes)."""
    with replacing(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def _writer(format: str) -> tuple[str, Callable[[pd.DataFrame, Path], object]]:
    if format == "csv":
        return "csv", write_table_csv
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise RobustXAIError(
                "Parquet export needs pyarrow: pip install 'robustxai[export]' (or use --format csv)"
            ) from None
        return "parquet", _write_parquet
    raise RobustXAIError(f"unknown export format {format!r}; known formats: {', '.join(EXPORT_FORMATS)}")


def export_run(path: str | Path, format: str = "parquet", out: str | Path | None = None) -> dict[str, Path]:
    """Write a run's per-sample rows and aggregate tables as one file per table.

    Args:
        path: The run directory.
        format: ``"parquet"`` (needs pyarrow, the ``export`` extra) or ``"csv"``.
        out: Output folder (default ``<run>/export``); existing files of the same names are replaced.

    Returns:
        The written files by table name (aggregates are prefixed ``table_``, e.g. ``table_robustness``).

    Raises:
        RobustXAIError: For an unknown format, a missing pyarrow, a missing or unreadable store, or an output
            folder or file that is a symbolic link.
    """
    suffix, write = _writer(format)
    run = open_run(path)
    frames: dict[str, pd.DataFrame] = {
        **{name: getattr(run, name) for name in ROW_TABLES},
        "warnings": run.warnings,
    }
    frames.update({f"table_{name}": df for name, df in run.tables.items()})
    folder = Path(out) if out is not None else run.path / "export"
    refuse_link(folder)  # never write through a link (a planted RUN/export -> elsewhere)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in frames.items():
        target = folder / f"{name}.{suffix}"
        refuse_link(target)
        write(frame.reset_index(drop=True), target)
        written[name] = target
    return written
