"""The Summary section: plain-language sentences in headed groups (:mod:`robustxai.report._summary`)."""

from __future__ import annotations

from robustxai.report._blocks import Bullets
from robustxai.report._section import ReportContext, report_section
from robustxai.report._summary import summary_sections


@report_section("summary", "Summary", order=100)
def summary_section(ctx: ReportContext) -> list[Bullets]:
    """One bulleted group per summary heading (robustness, clean and attacked explanations, …)."""
    return [Bullets(s.sentences, heading=s.title) for s in summary_sections(ctx.tables, ctx.run)]
