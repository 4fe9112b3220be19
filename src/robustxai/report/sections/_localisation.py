"""The Localisation section: Table 3, pointing game and relevance mass (when the run has them)."""

from __future__ import annotations

from robustxai.report._html_explain import localisation_html
from robustxai.report._html_tables import HtmlTable
from robustxai.report._section import ReportContext, report_section


@report_section("localisation", "Localisation", order=310)
def localisation_section(ctx: ReportContext) -> list[HtmlTable]:
    """Table 3, or nothing when the run has neither metric."""
    table = localisation_html(ctx.tables, ctx.look)
    return [] if table is None else [table]
