"""The Models section: architecture, training, origin and validation accuracy of each audited model."""

from __future__ import annotations

from robustxai.report._blocks import PlainTable
from robustxai.report._header import models_rows
from robustxai.report._section import ReportContext, report_section

COLUMNS = [
    "model",
    "architecture",
    "training",
    "obtained",
    "validation accuracy (%)",
    "robust validation accuracy (%)",
]


@report_section("models", "Models", order=120)
def models_section(ctx: ReportContext) -> list[PlainTable]:
    """One row per model of the store; a store without a models table: no section."""
    rows = models_rows(ctx.run)
    if not rows:
        return []
    return [PlainTable(rows, COLUMNS, aligns=["text"] * 4 + ["num"] * 2)]
