"""The self-contained HTML report and :func:`build_report`, the report layer's entry point.

The report is rendered with Jinja2 (autoescape on: model names, warnings and config values are text, never
markup). Figures are embedded as base64 PNG data URIs and the CSS is inline, so ``report.html`` can be
mailed or archived on its own.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from pathlib import Path
from typing import Any

import jinja2

from robustxai.audit.store import approximate_pairs, warning_lines
from robustxai.report.figures import grid_figure, robustness_figure
from robustxai.report.html_explain import correlation_html, impact_html, localisation_html, stability_html
from robustxai.report.html_tables import DASH, Cell, HtmlTable, Lookup, metric_names, metric_table
from robustxai.report.manipulation import manipulation_section
from robustxai.report.multilabel import multilabel_html, multilabel_table
from robustxai.report.run_tables import report_tables, run_tables, write_tables
from robustxai.report.summary import summarize
from robustxai.report.tables import (
    CLEAN,
    Condition,
    ReportTables,
    RunData,
    attacked_conditions,
    condition_label,
    load_run,
    primary_ranks,
)

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
    columns = ["model", "clean accuracy (%)"] + [f"{condition_label(*p)} (%)" for p in pairs]
    columns += [f"ΔAcc (%) under {primary}", "rank"]
    if tables.reference_ranks:
        columns.append("reference rank")
    rows: list[list[Cell]] = []
    for model in tables.models:
        c = clean.get(model)
        row = [Cell(model)]
        row.append(Cell(f"{100 * c['accuracy']:.1f}", title=f"n = {c['n']}") if c else Cell(DASH))
        for attack, eps in pairs:
            r = rob.get((model, attack, round(eps, 9)))
            row.append(
                Cell(f"{100 * r['adversarial_accuracy']:.1f}", title=f"n = {r['n']}") if r else Cell(DASH)
            )
        p = rob.get((model, tables.primary[0], round(tables.primary[1], 9))) if tables.primary else None
        delta = DASH if p is None or math.isnan(p["delta_accuracy"]) else f"{100 * p['delta_accuracy']:.1f}"
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
        "(k/255 = k grey levels of an 8-bit image). ΔAcc is clean minus adversarial accuracy under the "
        f"primary attack ({primary}); rank 1 is the highest accuracy under that attack and tied models "
        "share a rank. Hover a number for the number of images behind it."
        + (
            " The reference rank is the one the configuration gives (e.g. from a leaderboard or paper), for "
            "comparison with ours."
            if tables.reference_ranks
            else ""
        ),
    )


def _clean_and_primary(tables: ReportTables) -> list[Condition]:
    """The conditions Tables 2–3 show: clean, then the primary attack when there is one."""
    return [(CLEAN, 0.0)] + ([tables.primary] if tables.primary else [])


def alignment_html(tables: ReportTables, look: Lookup) -> HtmlTable:
    """Table 2: point coverage at each top-k %, clean and under the primary attack, with a random baseline."""
    names = metric_names(tables.alignment, "point_coverage")
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
        "gives (about k % for small k): a model whose interval overlaps the random row's is not "
        "distinguishable from chance. Under attack, the map explains the model's prediction on the "
        "adversarial image. In this and the following tables ↑ marks a higher-is-better column and ↓ a "
        "lower-is-better one.",
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


def _fmt_pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{100.0 * v:.1f}"


def _models_rows(run: RunData) -> list[list[str]]:
    """Model, architecture, training, where it came from, and its validation accuracy (clean, robust)."""
    rows = []
    for r in run.models.to_dict("records"):
        try:
            info = json.loads(r.get("info") or "{}")
        except (TypeError, ValueError):
            info = {}
        origin = str(info.get("source", ""))
        if info.get("init_from"):
            origin += f", initialised from {info['init_from']}"
        rows.append(
            [
                str(r["model"]),
                str(r["arch"] or ""),
                str(r["training"] or ""),
                origin,
                _fmt_pct(info.get("val_accuracy")),
                _fmt_pct(info.get("robust_val_accuracy")),
            ]
        )
    return rows


def _mapping_rows(value: Any, seconds: bool = False) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return []
    out = []
    for k in sorted(value, key=str):
        v = value[k]
        text = (
            f"{v:.1f} s" if seconds and isinstance(v, int | float) else json.dumps(v, default=str).strip('"')
        )
        out.append((str(k), text))
    return out


def render_report(
    run: RunData,
    tables: ReportTables,
    summary: list[str],
    figures: dict[str, Path | None],
    manipulation: dict[str, Any] | None = None,
    multilabel: HtmlTable | None = None,
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
    dataset = run.meta.get("dataset")
    context = {
        "run_name": str(run.meta.get("run_name") or run.path.parent.name),
        "dataset": ", ".join(f"{k} = {v}" for k, v in sorted(dataset.items()))
        if isinstance(dataset, dict)
        else "",
        "n_images": tables.n_images,
        "n_models": len(tables.models),
        "primary": condition_label(*tables.primary) if tables.primary else "none",
        "summary": summary,
        "warnings": warnings + tables.notes,
        "models": _models_rows(run),
        "table1": robustness_html(tables),
        "multilabel": multilabel,
        "table2": alignment_html(tables, look),
        "localisation": localisation_html(tables, look),
        "impact": impact_html(tables, look),
        "stability": stability_html(tables, look),
        "correlation": correlation_html(tables),
        "robustness_png": _data_uri(figures.get("robustness")),
        "grid_png": _data_uri(figures.get("grid")),
        "config": json.dumps(
            run.meta.get("config", {}), indent=2, sort_keys=True, default=str, ensure_ascii=False
        ),
        "manipulation": _embed_figures(manipulation),
        "versions": _mapping_rows(run.meta.get("versions")),
        "timings": _mapping_rows(run.meta.get("timings"), seconds=True),
    }
    return env.get_template(TEMPLATE_NAME).render(**context)


def build_report(run_dir: Path) -> Path:
    """Build ``report.html``, ``tables/*.csv`` and ``figures/*.png`` of a run from its store alone.

    Args:
        run_dir: The run directory holding ``results.sqlite``.

    Returns:
        The path of ``report.html``.

    Raises:
        RobustXAIError: If the store is missing, unreadable or holds no predictions.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    tables = report_tables(run)
    per_label = multilabel_table(run)
    write_tables(run_tables(run, tables, per_label), run_dir)
    fig_dir = run_dir / "figures"
    figures = {
        "robustness": robustness_figure(tables.robustness, tables.clean, fig_dir / "robustness.png"),
        "grid": grid_figure(run.figure_samples, run.figure_maps, tables.primary, fig_dir / "grid.png"),
    }
    for name, made in figures.items():
        stale = fig_dir / f"{name}.png"
        if made is None and stale.exists():
            stale.unlink()
    html = render_report(
        run,
        tables,
        summarize(tables),
        figures,
        manipulation_section(run_dir, run.metrics, run.figure_maps),
        multilabel_html(per_label),
    )
    path = run_dir / REPORT_FILE
    path.write_text(html, encoding="utf-8")
    logger.info("wrote %s", path)
    return path
