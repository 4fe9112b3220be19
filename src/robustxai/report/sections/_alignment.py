"""The Explanation alignment section: Table 2, point coverage at each top-k %, clean and under attack."""

from __future__ import annotations

from robustxai.metrics import headline_metric
from robustxai.report._html_tables import HtmlTable, Lookup, metric_names, metric_table
from robustxai.report._section import ReportContext, report_section
from robustxai.report._tables import ReportTables
from robustxai.results._schema import CLEAN, Condition

__all__ = ["alignment_html"]


def _clean_and_primary(tables: ReportTables) -> list[Condition]:
    """The conditions Tables 2–3 show: clean, then the primary attack when there is one."""
    return [(CLEAN, 0.0)] + ([tables.primary] if tables.primary else [])


def alignment_html(tables: ReportTables, look: Lookup) -> HtmlTable:
    """Table 2: point coverage at each top-k %, clean and under the primary attack, with a random baseline."""
    names = metric_names(tables.alignment, headline_metric().name)
    metrics = [(n, f"top {n.split('@')[1]} %", 100.0, 1) for n in names]
    conds = _clean_and_primary(tables)
    groups, columns, rows = metric_table(tables, look, metrics, conds)
    return HtmlTable(
        "alignment",
        "Table 2 — Explanation alignment (Secure Diagnostics Table 2)",
        columns,
        rows,
        "Share (%) of the expert's points that fall inside the top k % most important pixels of the map, "
        "averaged over images, with a 95 % bootstrap interval in brackets. The random-map row is what chance "
        "gives (about k % for small k); the summary calls a map above chance only when its paired "
        "difference from the random map on the same images has a 95 % interval above 0. Under attack, the "
        "map explains the model's prediction on the adversarial image. In this and the following tables ↑ "
        "marks a higher-is-better column and ↓ a lower-is-better one.",
        groups,
    )


@report_section("alignment", "Explanation alignment", order=300)
def alignment_section(ctx: ReportContext) -> list[HtmlTable]:
    """Table 2 (always drawn, as before: an empty table says the run has no point coverage)."""
    return [alignment_html(ctx.tables, ctx.look)]
