"""The IoU / RMSE section: Tables 4–5 (explainability-impact paper), maps against the mask under attack."""

from __future__ import annotations

from robustxai.report._html_explain import impact_html
from robustxai.report._html_tables import HtmlTable
from robustxai.report._section import ReportContext, report_section


@report_section("impact", "Alignment with the expert mask under attack", order=320)
def impact_section(ctx: ReportContext) -> list[HtmlTable]:
    """Table 4 (top-k IoU) and Table 5 (RMSE), each when the run has it."""
    return impact_html(ctx.tables, ctx.look)
