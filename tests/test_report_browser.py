"""The report in a real browser (Debian's chromium through Playwright): screenshots and a layout check.

At 1400 and 1100 px wide, every table's columns must be visible in the viewport or sit inside a scroll box
of their own whose first column is sticky, and each explanation grid must fill its container (it is drawn at
page width, so a shrunk grid means labels too small to read). Full-page screenshots go to
``$ROBUSTXAI_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored) for CI to keep.

Run on any report: ``python tests/test_report_browser.py RUN_DIR/report.html [OUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chromium import ARGS, CHROMIUM, NEEDS_CHROMIUM, artifacts_dir

WIDTHS = (1400, 1100)

#: Returns one problem string per table column that is neither visible nor in a sticky-first-column scroll
#: box, and per grid image narrower than 90 % of its container.
LAYOUT_JS = """
() => {
  const problems = [];
  const vw = document.documentElement.clientWidth;
  const scrollBox = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX;
      if (ox === 'auto' || ox === 'scroll') return p;
    }
    return null;
  };
  document.querySelectorAll('table').forEach((table, t) => {
    const name = (table.caption ? table.caption.textContent : `table ${t}`).trim().slice(0, 60);
    const box = scrollBox(table);
    const rows = Array.from(table.rows);
    const last = rows.length ? rows[rows.length - 1] : null;
    if (!last) return;
    const cells = Array.from(last.cells);
    const allVisible = cells.every((c) => {
      const r = c.getBoundingClientRect();
      return r.left >= -0.5 && r.right <= vw + 0.5;
    });
    if (allVisible) return;
    if (!box) { problems.push(`${name}: columns beyond the viewport and no scroll box`); return; }
    const b = box.getBoundingClientRect();
    if (b.left < -0.5 || b.right > vw + 0.5) problems.push(`${name}: scroll box wider than the viewport`);
    const loose = rows.filter((row) => row.cells[0] && getComputedStyle(row.cells[0]).position !== 'sticky');
    if (loose.length) problems.push(`${name}: ${loose.length} rows without a sticky first column`);
  });
  document.querySelectorAll('img[alt*="xplanation maps"]').forEach((img, i) => {
    const w = img.getBoundingClientRect().width;
    const c = img.parentElement.getBoundingClientRect().width;
    if (w < 0.9 * c) problems.push(`grid ${i}: ${w.toFixed(0)} px wide in a ${c.toFixed(0)} px container`);
    if (img.naturalWidth && w < 0.85 * img.naturalWidth) {  // shrunk: its labels shrink with it
      problems.push(`grid ${i}: shrunk to ${(100 * w / img.naturalWidth).toFixed(0)} % of its size`);
    }
  });
  return problems;
}
"""


def check_report(report: Path, out_dir: Path, stem: str = "report") -> dict[int, list[str]]:
    """Screenshot ``report`` at each width into ``out_dir``; return the layout problems found per width."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[int, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(report.resolve().as_uri())
                page.wait_for_load_state("load")
                page.screenshot(path=str(out_dir / f"{stem}-{width}.png"), full_page=True)
                found[width] = list(page.evaluate(LAYOUT_JS))
                page.close()
        finally:
            browser.close()
    return found


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_report_layout_in_chromium(tmp_path: Path) -> None:
    from robustxai.report import build_report
    from test_report import make_store

    make_store(tmp_path)
    report = build_report(tmp_path)
    out = artifacts_dir()
    found = check_report(report, out)
    for width in WIDTHS:
        assert (out / f"report-{width}.png").stat().st_size > 10_000
    assert found == {w: [] for w in WIDTHS}, json.dumps(found, indent=1)


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_layout_check_catches_a_wide_table_without_a_scroll_box(tmp_path: Path) -> None:
    cells = "".join(f"<td>column {i} with a long value</td>" for i in range(40))
    page = tmp_path / "wide.html"
    page.write_text(f"<html><body><table><caption>wide</caption><tr>{cells}</tr></table></body></html>")
    found: dict[int, Any] = check_report(page, tmp_path, "wide")
    assert all(any("no scroll box" in p for p in found[w]) for w in WIDTHS), found


if __name__ == "__main__":
    target = Path(sys.argv[1])
    result = check_report(
        target, Path(sys.argv[2]) if len(sys.argv) > 2 else artifacts_dir(), target.parent.name
    )
    print(json.dumps(result, indent=1))
