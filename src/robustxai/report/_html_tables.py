"""Display tables of the HTML report: cells with CIs, and the model × explainer × condition metric grid.

Shared by the core report tables (:mod:`robustxai.report._html`) and the explanation tables
(:mod:`robustxai.report._html_explain`), so every table formats means, intervals and tooltips the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from robustxai.report._numbers import DASH, fmt_number
from robustxai.report._tables import RANDOM_EXPLAINER, ReportTables, condition_label
from robustxai.results._metric_keys import metric_of
from robustxai.results._schema import Condition, MetricKey
from robustxai.results._store import APPROXIMATE_MARK

__all__ = [
    "DASH",
    "Cell",
    "HtmlTable",
    "Lookup",
    "column_aligns",
    "metric_names",
    "metric_table",
    "stat_cell",
]
_NUMBER = re.compile(r"^\s*(?:[-+−]?\d[\d,]*(?:\.\d+)?\s*%?(?:\s*\(.*\))?|—)\s*$")


@dataclass
class Cell:
    """One table cell: the value, an optional compact CI and a tooltip."""

    text: str
    ci: str = ""
    title: str = ""


@dataclass
class HtmlTable:
    """A display table: optional grouped header, column names, rows of cells and a reading guide."""

    key: str
    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    how_to_read: str
    groups: list[tuple[str, int]] = field(default_factory=list)


def key_of(
    model: str, condition: str, eps: float, explainer: str, metric: str
) -> tuple[str, str, float, str, str]:
    """The lookup key of one aggregate row (ε rounded so float noise cannot split keys)."""
    return (model, condition, round(float(eps), 9), explainer, metric)


def stat_cell(row: dict[str, Any] | None, scale: float, digits: int) -> Cell:
    """Format a mean with its CI compactly; the tooltip gives n and the undefined count."""
    if row is None or int(row["n"]) == 0 or math.isnan(float(row["value"])):
        return Cell(DASH, title="no defined values")
    low, high = float(row["ci_low"]), float(row["ci_high"])
    ci = (
        ""
        if math.isnan(low) or math.isnan(high)
        else f"[{fmt_number(low, digits, scale)}–{fmt_number(high, digits, scale)}]"
    )
    missing = int(row.get("n_missing", 0))
    title = f"n = {int(row['n'])} images" + (f" ({missing} undefined, left out)" if missing else "")
    return Cell(fmt_number(row["value"], digits, scale), ci, title)


def _text(cell: object) -> str:
    return cell.text if isinstance(cell, Cell) else str(cell)


def column_aligns(rows: list[list[Any]]) -> list[str]:
    """``"num"`` (right-aligned) for a column whose cells are all numbers or dashes, else ``"text"`` (left).

    Works on rows of :class:`Cell` or of plain strings (the manipulation tables); a column with no cells
    at all is text.
    """
    width = max((len(r) for r in rows), default=0)
    out = []
    for j in range(width):
        cells = [_text(r[j]) for r in rows if j < len(r)]
        real = [c for c in cells if c.strip() not in ("", DASH)]
        out.append("num" if real and all(_NUMBER.match(c) for c in cells if c.strip()) else "text")
    return out


def direction_arrow(metric: str) -> str:
    """`` ↑`` or `` ↓`` after a column header: the registered metric's direction (``""`` if it has none).

    Stored names carry a top-k suffix (``point_coverage@15``) or the stability prefix (``map_ssim``); the
    direction is the registered metric's ``higher_is_better``. ``mask_area`` (declared with no direction) and
    names of no registered map metric get no arrow.
    """
    info = metric_of(metric)
    if info is None or info.higher_is_better is None:
        return ""
    return " ↑" if info.higher_is_better else " ↓"


def metric_names(alignment: pd.DataFrame, prefix: str) -> list[str]:
    """Metric names ``prefix@k`` present in the table, sorted by ``k``."""
    keys = {MetricKey.parse(m) for m in alignment["metric"]}
    found = {key for key in keys if key.name == prefix and key.top_percent is not None}
    return [str(key) for key in sorted(found, key=lambda key: (key.top_percent, str(key)))]


class Lookup:
    """Index the alignment and baseline tables by their keys.

    ``approximate`` holds the ``(model, explainer)`` pairs whose maps are approximate on that model (their
    run warnings, :func:`~robustxai.results._store.approximate_pairs`): tables mark their rows.
    """

    def __init__(self, tables: ReportTables, approximate: set[tuple[str, str]] | None = None) -> None:
        self.approximate = approximate or set()
        self.rows = {
            key_of(r["model"], r["condition"], r["epsilon"], r["explainer"], r["metric"]): r
            for r in tables.alignment.to_dict("records")
        }
        self.base = {
            key_of("", r["condition"], r["epsilon"], RANDOM_EXPLAINER, r["metric"]): r
            for r in tables.baseline.to_dict("records")
        }
        pairs = {
            (str(m), str(e))
            for m, e in zip(tables.alignment["model"], tables.alignment["explainer"], strict=True)
        }
        self.pairs = sorted(p for p in pairs if p[1] not in (RANDOM_EXPLAINER, ""))

    def get(self, model: str, cond: Condition, explainer: str, metric: str) -> dict[str, Any] | None:
        """The aggregate row of one cell, or ``None``; the random explainer with no model is the baseline."""
        if explainer == RANDOM_EXPLAINER and not model:
            return self.base.get(key_of("", cond[0], cond[1], explainer, metric))
        return self.rows.get(key_of(model, cond[0], cond[1], explainer, metric))


def _explainer_cell(look: Lookup, model: str, explainer: str) -> Cell:
    """The explainer's name, marked when its maps are approximate on this model (see the warnings)."""
    if (model, explainer) not in look.approximate:
        return Cell(explainer)
    return Cell(
        f"{explainer} {APPROXIMATE_MARK}",
        title=f"{APPROXIMATE_MARK} approximate on this model: not the method's exact definition (warnings)",
    )


def metric_table(
    tables: ReportTables,
    look: Lookup,
    metrics: list[tuple[str, str, float, int]],
    conditions: list[Condition],
) -> tuple[list[tuple[str, int]], list[str], list[list[Cell]]]:
    """Rows model × explainer (+ random baseline); columns condition × metric (name, header, scale, dp).

    Each metric's header ends in ↑ (higher is better) or ↓ (lower is better), from the metric registry.
    """
    groups = [("", 2)] + [(condition_label(*c), len(metrics)) for c in conditions]
    columns = ["model", "explainer"] + [
        header + direction_arrow(name) for _ in conditions for name, header, _, _ in metrics
    ]
    keys = [
        (m, e) for m, e in look.pairs if any(look.get(m, c, e, x[0]) for c in conditions for x in metrics)
    ]
    keys.append(("", RANDOM_EXPLAINER))
    rows: list[list[Cell]] = []
    for model, explainer in keys:
        cells = [look.get(model, c, explainer, name) for c in conditions for name, _, _, _ in metrics]
        if not model and not any(cells):
            continue
        label = (
            [Cell("random map"), Cell("baseline")]
            if not model
            else [Cell(model), _explainer_cell(look, model, explainer)]
        )
        rows.append(
            label
            + [
                stat_cell(cell, scale, digits)
                for cell, (_, _, scale, digits) in zip(cells, metrics * len(conditions), strict=True)
            ]
        )
    return groups, columns, rows
