"""Report layer: tables, figures and a self-contained HTML report, computed from a run's store alone.

The entry point is :func:`build_report`, which reads ``run_dir/results.sqlite`` and writes ``tables/*.csv``
(robustness, alignment, claims, …), ``figures/*.png`` and ``report.html``. The report is its registered
sections in order (:func:`report_section` adds one; see :mod:`robustxai.report._section`).
"""

from __future__ import annotations

from robustxai.report._html import build_report
from robustxai.report._section import ReportContext, Section, list_sections, register_section, report_section
from robustxai.report._summary import summarize
from robustxai.report._tables import ReportTables, compute_tables
from robustxai.results._run import load_run

__all__ = [
    "ReportContext",
    "ReportTables",
    "Section",
    "build_report",
    "compute_tables",
    "list_sections",
    "load_run",
    "register_section",
    "report_section",
    "summarize",
]
