"""Results layer: the run store, its schema, and the loading of a run into DataFrames.

The audit writes through :class:`Store`; the report, the export and ``open_run`` read through
:func:`load_run` and :func:`read_rows`. Neither side imports the other: this layer is what they share.
"""

from __future__ import annotations

from robustxai.results._run import ROW_TABLES, RunData, RunRows, load_run, read_rows
from robustxai.results._schema import CLEAN, CLEAN_CONDITION, MANIPULATION_PREFIX, Condition, MetricKey
from robustxai.results._store import STORE_FILE, Store

__all__ = [
    "CLEAN",
    "CLEAN_CONDITION",
    "MANIPULATION_PREFIX",
    "ROW_TABLES",
    "STORE_FILE",
    "Condition",
    "MetricKey",
    "RunData",
    "RunRows",
    "Store",
    "load_run",
    "read_rows",
]
