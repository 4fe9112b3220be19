"""The self-contained HTML report and :func:`build_report`, the report layer's entry point.

The report is rendered with Jinja2 (autoescape on: model names, warnings and config values are text, never
markup). Figures are embedded as base64 PNG data URIs and the CSS is inline, so ``report.html`` can be
mailed or archived on its own.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import jinja2

from robustxai._atomic import write_text
from robustxai.metrics import headline_metric
from robustxai.report.figures import grid_figures, robustness_figure
from robustxai.report.header import dataset_description, mapping_rows, models_rows
from robustxai.report.html_explain import correlation_html, impact_html, localisation_html, stability_html
from robustxai.report.html_tables import (
    DASH,
    Cell,
    HtmlTable,
    Lookup,
    column_aligns,
    metric_names,
    metric_table,
)
from robustxai.report.manipulation import manipulation_section
from robustxai.report.multilabel import multilabel_html, multilabel_table
from robustxai.report.numbers import fmt_number, wilson_interval
from robustxai.report.ratings import ratings_section
from robustxai.report.run_tables import report_tables, run_tables, write_tables
from robustxai.report.summary import SummarySection, summary_sections
from robustxai.report.tables import ReportTables, attacked_conditions, condition_label, primary_ranks
from robustxai.report.verdicts import chance_levels, chance_warnings, class_names
from robustxai.results.layout import REPORT_OUTPUTS, refuse_symlinks
from robustxai.results.run import RunData, load_run
from robustxai.results.schema import CLEAN, Condition
from robustxai.results.store import approximate_pairs, warning_lines

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE = "report.html"


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


def _data_uri(path: Path | None) -> str | None:
    return (
        None
        if path is None
        else "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    )


def _embed_figures(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manipulation section with its per-model figure paths turned into data URIs."""
    if section is None:
        return None
    figures = {
        model: {name: _data_uri(path) for name, path in figs.items()}
        for model, figs in section.get("figures", {}).items()
    }
    return {**section, "figures": figures}


def render_report(
    run: RunData,
    tables: ReportTables,
    summary: list[SummarySection],
    figures: dict[str, Path | None],
    manipulation: dict[str, Any] | None = None,
    multilabel: HtmlTable | None = None,
    ratings: list[dict[str, Any]] | None = None,
) -> str:
    """Render the report HTML from the computed tables, summary and figure files.

    Returns:
        The HTML document.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    look = Lookup(tables, approximate_pairs(run.warnings))
    warnings = (
        [str(w) for w in run.meta.get("warnings") or []] if isinstance(run.meta.get("warnings"), list) else []
    )
    warnings += warning_lines(run.warnings)
    context = {
        "run_name": str(run.meta.get("run_name") or run.path.parent.name),
        "dataset": dataset_description(run.meta.get("dataset")),
        "chance": chance_warnings(chance_levels(run.predictions, class_names(run.meta))),
        "n_images": tables.n_images,
        "n_models": len(tables.models),
        "primary": condition_label(*tables.primary) if tables.primary else "none",
        "summary": summary,
        "aligns": column_aligns,
        "warnings": warnings + tables.notes,
        "models": models_rows(run),
        "table1": robustness_html(tables),
        "multilabel": multilabel,
        "table2": alignment_html(tables, look),
        "localisation": localisation_html(tables, look),
        "impact": impact_html(tables, look),
        "stability": stability_html(tables, look),
        "correlation": correlation_html(tables),
        "robustness_png": _data_uri(figures.get("robustness")),
        "grids": [
            (name.removeprefix("grid:"), _data_uri(path))
            for name, path in figures.items()
            if name.startswith("grid:") and path is not None
        ],
        "config": json.dumps(
            run.meta.get("config", {}), indent=2, sort_keys=True, default=str, ensure_ascii=False
        ),
        "manipulation": _embed_figures(manipulation),
        "versions": mapping_rows(run.meta.get("versions")),
        "timings": mapping_rows(run.meta.get("timings"), seconds=True),
        "ratings": ratings or [],
    }
    return env.get_template(TEMPLATE_NAME).render(**context)


def build_report(run_dir: Path) -> Path:
    """Build ``report.html``, ``tables/*.csv`` and ``figures/*.png`` of a run from its store alone.

    The explanation grid is one figure per model (``figures/grid_<model>.png``).

    Args:
        run_dir: The run directory holding ``results.sqlite``.

    Returns:
        The path of ``report.html``.

    Raises:
        RobustXAIError: If the store is missing, unreadable or holds no predictions, or an output
            (``tables/``, ``figures/``, ``report.html`` or a file in them) is a symbolic link.
    """
    run_dir = Path(run_dir)
    refuse_symlinks(run_dir, REPORT_OUTPUTS)  # nothing written here may leave the run directory
    run = load_run(run_dir)
    tables = report_tables(run)
    per_label = multilabel_table(run)
    write_tables(run_tables(run, tables, per_label), run_dir)
    fig_dir = run_dir / "figures"
    figures: dict[str, Path | None] = {
        "robustness": robustness_figure(tables.robustness, tables.clean, fig_dir / "robustness.png"),
    }
    grids = grid_figures(
        run.figure_samples, run.figure_maps, tables.primary, fig_dir, run.predictions, class_names(run.meta)
    )
    figures.update({f"grid:{model}": path for model, path in grids.items()})
    made = {p for p in figures.values() if p is not None}
    for stale in [fig_dir / "robustness.png", fig_dir / "grid.png", *fig_dir.glob("grid_*.png")]:
        if stale not in made and stale.exists():
            stale.unlink()
    html = render_report(
        run,
        tables,
        summary_sections(tables, run),
        figures,
        manipulation_section(run_dir, run.metrics, run.figure_maps, run.figure_samples),
        multilabel_html(per_label),
        ratings_section(run_dir, run.metrics),
    )
    path = run_dir / REPORT_FILE
    write_text(path, html)  # atomic: never written through a hard link
    logger.info("wrote %s", path)
    return path
