"""The Explanation manipulation section (trustworthiness paper, Table 1 and Figs. 2–3), per model.

The numbers and figures come from :func:`robustxai.report._manipulation.manipulation_section`; this file only
lays them out as blocks.
"""

from __future__ import annotations

from typing import Any

from robustxai.report._blocks import Block, FigureBlock, Paragraph, PlainTable, data_uri
from robustxai.report._manipulation import manipulation_section
from robustxai.report._section import ReportContext, report_section


def _model_blocks(model: str, section: dict[str, Any]) -> list[Block]:
    """Table 1 of one model, its transfer matrix, then its Fig. 2 grid and Fig. 3 box plots."""
    t = section["table1"][model]
    blocks: list[Block] = [
        PlainTable(t["rows"], t["columns"], f"Manipulation of {model} (the paper's Table 1)")
    ]
    transfer = section["transfer"][model]
    if transfer:
        blocks.append(
            PlainTable(
                transfer["rows"],
                transfer["columns"],
                f"Transfer on {model}: SSIM(target, map) of each method (columns) on images attacked via "
                "another (rows)",
            )
        )
    figs = section["figures"][model]
    grid, boxplot = data_uri(figs["grid"]), data_uri(figs["boxplot"])
    if grid:
        blocks.append(
            FigureBlock(
                grid,
                f"Original maps, attacked images and tampered maps of {model}",
                f"{model}: original maps, attacked images, tampered maps and the transfer row (the paper's "
                "Fig. 2).",
            )
        )
    if boxplot:
        blocks.append(
            FigureBlock(
                boxplot,
                f"SSIM box plots of image pairs and map pairs for {model}",
                f"{model}: SSIM of original vs attacked images against SSIM of original vs tampered maps "
                "(the paper's Fig. 3).",
            )
        )
    return blocks


@report_section("manipulation", "Explanation manipulation (trustworthiness paper)", order=600)
def manipulation_part(ctx: ReportContext) -> list[Block]:
    """How to read it, then one group of tables and figures per model; no manipulation rows: no section."""
    run = ctx.run
    section = manipulation_section(ctx.run_dir, run.metrics, run.figure_maps, run.figure_samples)
    if section is None:
        return []
    blocks: list[Block] = [Paragraph(section["how_to_read"], lead="How to read this.", css_class="howto")]
    for model in section["table1"]:
        blocks += _model_blocks(model, section)
    return blocks
