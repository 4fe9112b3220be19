"""The built-in report sections, one file each; importing this package registers them.

Order (lower first; ``lead`` sections come before the table of contents): claims 10, the short answer 20,
models at chance 30, summary 100, warnings 110, models 120, robustness 200, multi-label 210, alignment 300,
localisation 310, IoU / RMSE 320, stability 400, correlation 500, manipulation 600, maps 700, ratings 800,
run details 900. A new section is one more file here and one more import below (or a file anywhere that
calls :func:`robustxai.report.register_section`).
"""

from __future__ import annotations

from robustxai.report.sections import (
    _alignment as alignment,
    _answer as answer,
    _chance as chance,
    _claims as claims,
    _correlation as correlation,
    _details as details,
    _impact as impact,
    _localisation as localisation,
    _manipulation as manipulation,
    _maps as maps,
    _models as models,
    _multilabel as multilabel,
    _ratings as ratings,
    _robustness as robustness,
    _stability as stability,
    _summary as summary,
    _warnings as warnings,
)

__all__ = [
    "alignment",
    "answer",
    "chance",
    "claims",
    "correlation",
    "details",
    "impact",
    "localisation",
    "manipulation",
    "maps",
    "models",
    "multilabel",
    "ratings",
    "robustness",
    "stability",
    "summary",
    "warnings",
]
