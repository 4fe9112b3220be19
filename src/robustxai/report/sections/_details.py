"""The Run details section: the resolved configuration, package versions and stage timings."""

from __future__ import annotations

import json

from robustxai.report._blocks import Block, PlainTable, Snippet
from robustxai.report._header import mapping_rows
from robustxai.report._section import ReportContext, report_section

_CONFIG = """<details>
  <summary>Resolved configuration</summary>
  <pre>{{ config }}</pre>
</details>
"""


@report_section("details", "Run details", order=900)
def details_section(ctx: ReportContext) -> list[Block]:
    """The configuration (folded), then the versions and timings tables when the run recorded them."""
    config = json.dumps(
        ctx.run.meta.get("config", {}), indent=2, sort_keys=True, default=str, ensure_ascii=False
    )
    blocks: list[Block] = [Snippet({"config": config}, source=_CONFIG)]
    versions = mapping_rows(ctx.run.meta.get("versions"))
    if versions:
        blocks.append(PlainTable([list(r) for r in versions], caption="Versions", aligns=["text", "text"]))
    timings = mapping_rows(ctx.run.meta.get("timings"), seconds=True)
    if timings:
        blocks.append(PlainTable([list(r) for r in timings], caption="Timings", aligns=["text", "num"]))
    return blocks
