"""The Warnings section: the run's warnings (metadata and store) and the report's own notes."""

from __future__ import annotations

from robustxai.report._blocks import Bullets
from robustxai.report._section import ReportContext, report_section
from robustxai.results._store import warning_lines


def run_warnings(ctx: ReportContext) -> list[str]:
    """The audit's warnings, then the store's per-unit warnings, then the report's notes."""
    meta = ctx.run.meta.get("warnings")
    lines = [str(w) for w in meta or []] if isinstance(meta, list) else []
    return lines + warning_lines(ctx.run.warnings) + ctx.tables.notes


@report_section("warnings", "Warnings", order=110, css_class="warnings")
def warnings_section(ctx: ReportContext) -> list[Bullets]:
    """The warnings as a list; no warnings: no section."""
    lines = run_warnings(ctx)
    return [Bullets(lines, css_class="")] if lines else []
