"""The Explanation stability section: Table 6, clean vs attacked maps (SSIM, MSE, Pearson)."""

from __future__ import annotations

from robustxai.report._html_explain import stability_html
from robustxai.report._html_tables import HtmlTable
from robustxai.report._section import ReportContext, report_section


@report_section("stability", "Explanation stability", order=400)
def stability_section(ctx: ReportContext) -> list[HtmlTable]:
    """Table 6, or nothing when the run compared no clean and attacked maps."""
    table = stability_html(ctx.tables, ctx.look)
    return [] if table is None else [table]
