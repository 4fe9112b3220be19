"""The short answer for a clinical reviewer, second in the report (:mod:`robustxai.report._answer`)."""

from __future__ import annotations

from robustxai.report._answer import reviewer_answer
from robustxai.report._blocks import Snippet
from robustxai.report._section import ReportContext, report_section

_ANSWER = """<dl class="answer">
{% for line in lines %}
  <dt>{{ line.label }}</dt><dd>{{ line.text }}</dd>
{% endfor %}
</dl>
"""


@report_section("answer", "In short: which model, which map, how far to trust it", order=20, lead=True)
def answer_section(ctx: ReportContext) -> list[Snippet]:
    """Five labelled lines; a run without predictions per model gives none."""
    lines = reviewer_answer(ctx.tables, ctx.run)
    return [Snippet({"lines": lines}, source=_ANSWER)] if lines else []
