"""The self-contained HTML report and :func:`build_report`, the report layer's entry point.

The report is the registered sections (:mod:`robustxai.report._section`; the built-in ones are in
:mod:`robustxai.report.sections`) in order: the lead sections (claims, the short answer), a table of contents,
then the rest. The template draws every section generically from its blocks (:mod:`robustxai.report._blocks`),
so neither this file nor the template changes when a section is added.

The report is rendered with Jinja2 (autoescape on: model names, warnings and config values are text, never
markup). Figures are embedded as base64 PNG data URIs and the CSS is inline, so ``report.html`` can be
mailed or archived on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2
from markupsafe import Markup

import robustxai.report.sections  # noqa: F401  (registers the built-in sections)
from robustxai._atomic import write_text
from robustxai.report._blocks import Snippet, block_kind
from robustxai.report._header import dataset_description
from robustxai.report._html_tables import column_aligns
from robustxai.report._multilabel import multilabel_table
from robustxai.report._run_tables import report_tables, run_tables, write_tables
from robustxai.report._section import ReportContext, SectionView, build_sections
from robustxai.results._layout import REPORT_OUTPUTS, refuse_symlinks
from robustxai.results._run import load_run

__all__ = ["REPORT_FILE", "build_report", "render_report"]

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE = "report.html"


def _environment() -> jinja2.Environment:
    """The report's Jinja2 environment: autoescaped, strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def snippet(block: Snippet) -> Markup:
        template = env.get_template(block.template) if block.template else env.from_string(block.source)
        return Markup(template.render(**block.values))  # noqa: S704  (autoescaped by the environment)

    env.globals.update(aligns=column_aligns, kind=block_kind, snippet=snippet)
    return env


def render_report(ctx: ReportContext, sections: list[SectionView] | None = None) -> str:
    """Render the report HTML: the header, the lead sections, the table of contents, the other sections.

    Args:
        ctx: The run's loaded data.
        sections: The built sections (default: :func:`~robustxai.report._section.build_sections` of ``ctx``).

    Returns:
        The HTML document.
    """
    views = build_sections(ctx) if sections is None else sections
    run, tables = ctx.run, ctx.tables
    context = {
        "run_name": str(run.meta.get("run_name") or run.path.parent.name),
        "dataset": dataset_description(run.meta.get("dataset")),
        "n_images": tables.n_images,
        "n_models": len(tables.models),
        "primary": ctx.primary_label,
        "lead": [s for s in views if s.lead],
        "body": [s for s in views if not s.lead],
        "contents": views,
    }
    return _environment().get_template(TEMPLATE_NAME).render(**context)


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
    frames = run_tables(run, tables, per_label)
    write_tables(frames, run_dir)
    ctx = ReportContext(run=run, tables=tables, frames=frames, per_label=per_label, run_dir=run_dir)
    html = render_report(ctx)
    path = run_dir / REPORT_FILE
    write_text(path, html)  # atomic: never written through a hard link
    logger.info("wrote %s", path)
    return path
