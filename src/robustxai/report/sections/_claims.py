"""The Claims section, first in the report: the four papers' findings, re-tested on this run.

It shows ``tables/claims.csv`` (the frame :func:`robustxai.report._run_tables.run_tables` computes with
:func:`robustxai.claims.evaluate_claims`, so the page and the file cannot differ) in plain language: one row
per claim with its statement, its verdicts (a badge each, with how many scopes gave it), the evidence of one
representative scope (effect with its 95 % interval, n, the test) and why; every scope's result is one click
away. When the run leaves claims inconclusive and is not the ``paper`` profile, it says which profile
gathers the evidence.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from robustxai.report._blocks import Block, Paragraph, Snippet
from robustxai.report._numbers import DASH, fmt_effect, fmt_number
from robustxai.report._section import ReportContext, report_section

__all__ = ["claim_rows", "claims_section"]

#: The verdicts in the order a reader weighs them (the badge colours follow the template's CSS).
VERDICT_ORDER = ("supported", "contradicted", "inconclusive")
PAPER_PROFILE = "paper"


def _p(value: object) -> str:
    p = float(value)  # type: ignore[arg-type]
    if not math.isfinite(p):
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {fmt_number(p, 3)}"


def _evidence(r: dict[str, Any]) -> dict[str, str]:
    """One result's effect, interval, n, test and why as display strings."""
    low, high = float(r["ci_low"]), float(r["ci_high"])
    ci = "" if math.isnan(low) or math.isnan(high) else f"[{fmt_effect(low)} to {fmt_effect(high)}]"
    n = int(r["n"])
    return {
        "scope": str(r["scope"] or ""),
        "verdict": str(r["verdict"]),
        "effect": fmt_effect(r["effect"]),
        "ci": ci,
        "label": str(r["effect_label"] or ""),
        "n": f"{n} {r['n_unit']}".strip() if n else DASH,
        "test": str(r["test"] or ""),
        "p": _p(r["p_value"]),
        "why": str(r["why"] or ""),
    }


def claim_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per claim (in the frame's order): statement, paper, verdict counts, evidence, every scope.

    The representative scope is the first decided one (supported or contradicted), else the first.
    """
    out = []
    for claim_id, group in frame.groupby("claim_id", sort=False):
        records = group.to_dict("records")
        decided = [r for r in records if r["verdict"] != "inconclusive"]
        counts = group["verdict"].value_counts()
        out.append(
            {
                "claim_id": str(claim_id),
                "statement": str(records[0]["statement"]),
                "paper": str(records[0]["paper"]),
                "verdicts": [(v, int(counts[v])) for v in VERDICT_ORDER if v in counts],
                "n_scopes": len(records),
                "lead": _evidence((decided or records)[0]),
                "scopes": [_evidence(r) for r in records],
            }
        )
    return out


def _profile(ctx: ReportContext) -> str:
    config = ctx.run.meta.get("config")
    return str(config.get("name") or "") if isinstance(config, dict) else ""


@report_section("claims", "Claims: the papers' findings re-tested on this run", order=10, lead=True)
def claims_section(ctx: ReportContext) -> list[Block]:
    """The claims table; a run whose claims frame is missing or empty has no section."""
    frame = ctx.frames.get("claims")
    if frame is None or frame.empty:
        return []
    claims = claim_rows(frame)
    blocks: list[Block] = [
        Paragraph(
            "Each finding of the four papers is stated so that this run can support or contradict it, and is "
            "decided from the numbers below: the measured effect with its 95 % interval (paired on the same "
            "images where possible), the test, and how many models or images it rests on. Inconclusive says "
            "why (too few models, an interval that spans the threshold, a stage the run did not have). "
            "Every row is in tables/claims.csv.",
            lead="How to read this.",
            css_class="howto",
        ),
        Snippet({"claims": claims, "n_rows": len(frame)}, template="claims.html.j2"),
    ]
    undecided = int((frame["verdict"] == "inconclusive").sum())
    if undecided and _profile(ctx) != PAPER_PROFILE:
        blocks.append(
            Paragraph(
                f"{undecided} of {len(frame)} results are inconclusive on this run. Its models, images and "
                "stages were chosen to run quickly, not to decide the papers' claims: "
                "robustxai audit --profile paper gathers the evidence (a ladder of models of graded "
                "robustness, more annotated images, every map method and the manipulation of all seven).",
                lead="Too little evidence?",
                css_class="howto",
            )
        )
    return blocks
