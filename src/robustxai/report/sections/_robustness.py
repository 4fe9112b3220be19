"""The Robustness section: Table 1 (accuracy clean and under every attack × ε, ΔAcc, rank) and its figure."""

from __future__ import annotations

from robustxai.report._blocks import Block, FigureBlock, data_uri
from robustxai.report._figures import robustness_figure
from robustxai.report._html_tables import DASH, Cell, HtmlTable
from robustxai.report._numbers import fmt_number, wilson_interval
from robustxai.report._section import ReportContext, report_section
from robustxai.report._tables import ReportTables, attacked_conditions, condition_label, primary_ranks

__all__ = ["robustness_html"]


def robustness_html(tables: ReportTables) -> HtmlTable:
    """Table 1: clean accuracy, accuracy under each attack × ε, ΔAcc under the primary attack and rank."""
    pairs = attacked_conditions(tables.robustness)
    rob = {
        (r["model"], r["attack"], round(float(r["epsilon"]), 9)): r
        for r in tables.robustness.to_dict("records")
    }
    clean = {r["model"]: r for r in tables.clean.to_dict("records")}
    ranks = primary_ranks(tables.robustness, tables.primary)
    primary = condition_label(*tables.primary) if tables.primary else "primary attack"
    columns = ["model", "n images", "clean accuracy (%)"] + [f"{condition_label(*p)} (%)" for p in pairs]
    columns += [f"ΔAcc (%) under {primary}", "rank"]
    if tables.reference_ranks:
        columns.append("reference rank")
    rows: list[list[Cell]] = []
    for model in tables.models:
        c = clean.get(model)
        n_clean = int(c["n"]) if c else 0
        row = [Cell(model), Cell(str(n_clean) if c else DASH)]
        row.append(_accuracy_cell(float(c["accuracy"]), n_clean, n_clean) if c else Cell(DASH))
        for attack, eps in pairs:
            r = rob.get((model, attack, round(eps, 9)))
            row.append(
                _accuracy_cell(float(r["adversarial_accuracy"]), int(r["n"]), n_clean) if r else Cell(DASH)
            )
        p = rob.get((model, tables.primary[0], round(tables.primary[1], 9))) if tables.primary else None
        delta = DASH if p is None else fmt_number(p["delta_accuracy"], 1, 100.0)
        row += [Cell(delta), Cell(str(ranks[model]) if model in ranks else DASH)]
        if tables.reference_ranks:
            ref = tables.reference_ranks.get(model)
            row.append(Cell(DASH if ref is None else str(ref), title="rank given in the config"))
        rows.append(row)
    return HtmlTable(
        "robustness",
        "Table 1 — Robustness (Secure Diagnostics Table 1)",
        columns,
        rows,
        "Accuracy in % on clean images and on adversarial images for each attack and perturbation budget ε "
        "(k/255 = k grey levels of an 8-bit image), with its 95 % Wilson interval in brackets; 'n images' "
        "is the number of test images behind each accuracy (a cell on fewer images says so). ΔAcc is clean "
        f"minus adversarial accuracy under the primary attack ({primary}); rank 1 is the highest accuracy "
        "under that attack and tied models share a rank."
        + (
            " The reference rank is the one the configuration gives (e.g. from a leaderboard or paper), for "
            "comparison with ours."
            if tables.reference_ranks
            else ""
        ),
    )


def _accuracy_cell(accuracy: float, n: int, n_clean: int) -> Cell:
    """An accuracy in % with its 95 % Wilson interval; ``n`` is shown when it differs from the clean n."""
    low, high = wilson_interval(accuracy, n)
    ci = f"[{fmt_number(low, 1, 100.0)}–{fmt_number(high, 1, 100.0)}]" if n > 0 else ""
    if n != n_clean:
        ci += f" n = {n}"
    return Cell(fmt_number(accuracy, 1, 100.0), ci.strip(), title=f"n = {n} images")


@report_section("robustness", "Robustness", order=200)
def robustness_section(ctx: ReportContext) -> list[Block]:
    """Table 1, then the accuracy-against-ε figure (written to ``figures/robustness.png``, or removed)."""
    tables = ctx.tables
    path = ctx.figures_dir / "robustness.png"
    made = robustness_figure(tables.robustness, tables.clean, path)
    if made is None and path.exists():
        path.unlink()  # a stale figure of an earlier report of this run
    blocks: list[Block] = [robustness_html(tables)]
    uri = data_uri(made)
    if uri is not None:
        blocks.append(
            FigureBlock(
                uri,
                "Accuracy against perturbation budget for each model and attack",
                "Accuracy (%) against ε for each attack; each line starts at the model's clean accuracy "
                "(ε = 0), which is repeated as a dashed line.",
            )
        )
    return blocks
