"""The Expert ratings section: blinded rating studies of the studio, with agreement and metric validity."""

from __future__ import annotations

from robustxai.report._blocks import Snippet
from robustxai.report._ratings import ratings_section
from robustxai.report._section import ReportContext, report_section


@report_section("ratings", "Expert ratings", order=800)
def ratings_part(ctx: ReportContext) -> list[Snippet]:
    """One block per study with answers (``ratings.html.j2``); no answers: no section."""
    studies = ratings_section(ctx.run_dir, ctx.run.metrics)
    return [Snippet({"ratings": studies}, template="ratings.html.j2")] if studies else []
