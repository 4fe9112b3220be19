"""The Multi-label models section: per-label AUC and accuracy, clean and under each attack × ε."""

from __future__ import annotations

from robustxai.report._html_tables import HtmlTable
from robustxai.report._multilabel import multilabel_html
from robustxai.report._section import ReportContext, report_section


@report_section("multilabel", "Multi-label models", order=210)
def multilabel_section(ctx: ReportContext) -> list[HtmlTable]:
    """The per-label table, or nothing for a run without multi-label models."""
    table = multilabel_html(ctx.per_label)
    return [] if table is None else [table]
