"""Every table a run writes under ``tables/``, from one code path for the report, the export and ``open_run``.

:func:`run_tables` is the only place that decides which tables a run has and what their rows are:
``robustness``, ``alignment`` (ground-truth alignment only), ``stability`` (clean vs attacked map),
``correlation`` (robustness vs alignment across models), ``manipulation`` and ``multilabel`` (when the run has
such rows), and ``claims`` (the papers' findings, :func:`robustxai.claims.evaluate_claims`).
The report writes them with :func:`write_tables`; :func:`robustxai._export.export_run` and
``rx.open_run(...).tables`` read the very same frames, so an exported table always equals the report's CSV.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from robustxai.claims import claims_frame, evaluate_claims
from robustxai.report._explain_tables import add_correlation
from robustxai.report._manipulation import manipulation_table
from robustxai.report._multilabel import MULTILABEL_COLUMNS, multilabel_table
from robustxai.report._tables import (
    ALIGNMENT_COLUMNS,
    ROBUSTNESS_COLUMNS,
    TABLES_DIR,
    ReportTables,
    compute_tables,
    is_stability_metric,
    write_table_csv,
)
from robustxai.results._run import RunData, load_run

logger = logging.getLogger(__name__)

#: Every table a run may write, in the order they are written (``tables/<name>.csv``).
RUN_TABLES = ("robustness", "stability", "alignment", "correlation", "manipulation", "multilabel", "claims")
#: Tables written (with their header) even without rows, e.g. ``robustness`` of a run without attacks.
ALWAYS_WRITTEN = ("robustness", "alignment", "claims")


def report_tables(run: RunData) -> ReportTables:
    """The report's aggregates of a run, the correlation across models included."""
    return add_correlation(compute_tables(run))


def run_tables(
    run: RunData, tables: ReportTables | None = None, per_label: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """The tables of a run by name (:data:`RUN_TABLES`; an empty one is left out unless in ALWAYS_WRITTEN).

    Map-similarity rows (clean vs attacked map) go to ``stability`` only, so ``alignment`` holds alignment
    with the ground truth alone.

    Args:
        run: The rows loaded by :func:`robustxai.report._tables.load_run`.
        tables: The run's aggregates when the caller has computed them (else computed here).
        per_label: The multi-label table when already computed (else computed here).

    Returns:
        Each table with its columns in file order and a fresh 0..n-1 index.
    """
    tables = tables if tables is not None else report_tables(run)
    frames: dict[str, pd.DataFrame] = {"robustness": tables.robustness[ROBUSTNESS_COLUMNS]}
    alignment = tables.alignment
    if not tables.stability.empty:
        alignment = alignment[~alignment["metric"].map(is_stability_metric)]
        frames["stability"] = tables.stability
    frames["alignment"] = alignment[ALIGNMENT_COLUMNS]
    frames["correlation"] = tables.correlation
    frames["manipulation"] = manipulation_table(run.metrics)
    per_label = per_label if per_label is not None else multilabel_table(run)
    frames["multilabel"] = per_label[MULTILABEL_COLUMNS] if not per_label.empty else per_label
    frames["claims"] = claims_frame(evaluate_claims(run))
    return {
        name: frame.reset_index(drop=True)
        for name, frame in frames.items()
        if name in ALWAYS_WRITTEN or not frame.empty
    }


def load_run_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of the run in ``run_dir`` (see :func:`run_tables`), computed from its store alone.

    Raises:
        RobustXAIError: If the store is missing, unreadable or holds no predictions.
    """
    return run_tables(load_run(Path(run_dir)))


def write_tables(frames: dict[str, pd.DataFrame], run_dir: Path) -> dict[str, Path]:
    """Write ``tables/<name>.csv`` for each frame and remove a stale file of a table the run no longer has.

    Returns:
        The written paths by table name.
    """
    out_dir = Path(run_dir) / TABLES_DIR
    for name in RUN_TABLES:
        if name not in frames:
            (out_dir / f"{name}.csv").unlink(missing_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in frames}
    for name, frame in frames.items():
        write_table_csv(frame, paths[name])
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
