"""The Robustness and explanation quality section: Table 7, Spearman's ρ across models."""

from __future__ import annotations

from robustxai.report._html_explain import correlation_html
from robustxai.report._html_tables import HtmlTable
from robustxai.report._section import ReportContext, report_section


@report_section("correlation", "Robustness and explanation quality", order=500)
def correlation_section(ctx: ReportContext) -> list[HtmlTable]:
    """Table 7, or nothing when the run has no correlation rows."""
    table = correlation_html(ctx.tables)
    return [] if table is None else [table]
