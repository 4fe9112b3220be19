"""Report layer: tables, figures and a self-contained HTML report, computed from a run's store alone.

The entry point is :func:`build_report`, which reads ``run_dir/results.sqlite`` and writes
``tables/robustness.csv``, ``tables/alignment.csv``, ``figures/*.png`` and ``report.html``.
"""

from __future__ import annotations

from robustxai.report.html import build_report
from robustxai.report.summary import summarize
from robustxai.report.tables import ReportTables, compute_tables
from robustxai.results.run import load_run

__all__ = ["ReportTables", "build_report", "compute_tables", "load_run", "summarize"]
