"""The Explanation maps section: one grid figure per model, clean and under the primary attack."""

from __future__ import annotations

from robustxai.report._blocks import FigureBlock, data_uri
from robustxai.report._figures import grid_figures
from robustxai.report._section import ReportContext, report_section
from robustxai.report._verdicts import class_names

_CAPTION = (
    "{model}: for each figure image, a row on the clean image and a row under the primary attack "
    "({primary}); the row label gives the true class and the model's prediction, and whether it is correct. "
    "First column: the image with the expert mask outline (cyan) and expert points (red rings); then one map "
    "per explainer, min-max normalised (colour bar: 0 = least, 1 = most important) with the expert points as "
    "hollow rings. The random baseline is not drawn."
)


@report_section("maps", "Explanation maps", order=700)
def maps_section(ctx: ReportContext) -> list[FigureBlock]:
    """Draw ``figures/grid_<model>.png`` per model (removing stale grids) and show them at page width."""
    run, fig_dir = ctx.run, ctx.figures_dir
    grids = grid_figures(
        run.figure_samples,
        run.figure_maps,
        ctx.tables.primary,
        fig_dir,
        run.predictions,
        class_names(run.meta),
    )
    made = {p for p in grids.values() if p is not None}
    for stale in [fig_dir / "grid.png", *fig_dir.glob("grid_*.png")]:
        if stale not in made and stale.exists():
            stale.unlink()
    out = []
    for model, path in grids.items():
        uri = data_uri(path)
        if uri is not None:
            out.append(
                FigureBlock(
                    uri,
                    f"Explanation maps of {model} for each figure image and explainer, clean and under "
                    f"{ctx.primary_label}",
                    _CAPTION.format(model=model, primary=ctx.primary_label),
                    css_class="grid",
                )
            )
    return out
