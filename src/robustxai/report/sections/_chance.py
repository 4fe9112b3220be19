"""The Models at chance accuracy alert: drawn before everything else that speaks of a model at chance."""

from __future__ import annotations

from robustxai.report._blocks import Bullets
from robustxai.report._section import ReportContext, report_section
from robustxai.report._verdicts import chance_levels, chance_warnings, class_names


@report_section("chance", "Models at chance accuracy", order=30, lead=True, css_class="alert")
def chance_section(ctx: ReportContext) -> list[Bullets]:
    """One sentence per model whose clean accuracy is not distinguishable from chance; none: no section."""
    lines = chance_warnings(chance_levels(ctx.run.predictions, class_names(ctx.run.meta)))
    return [Bullets(lines, css_class="")] if lines else []
