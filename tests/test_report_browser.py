"""The report in a real browser (Debian's chromium through Playwright): screenshots and a layout check.

At 1400 and 1100 px wide, every table's columns must be visible in the viewport or sit inside a scroll box
of their own whose first column is sticky, the page itself must not scroll sideways (no table or box wider
than the window), every column must be reachable inside its box, and each explanation grid must fill its
container (it is drawn at page width, so a shrunk grid means labels too small to read). A report with wide
Tables 1, 2 and 6 (16 attack × ε conditions, six top-k levels, long model names) is checked too. Full-page
screenshots go to ``$ROBUSTXAI_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored) for CI to keep.

Run on any report: ``python tests/test_report_browser.py RUN_DIR/report.html [OUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
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
  const page = document.documentElement.scrollWidth;
  const win = window.innerWidth;
  if (page > win + 0.5) problems.push(`the page scrolls sideways: ${page} px in ${win}`);
  document.querySelectorAll('table').forEach((table, t) => {
    const name = (table.caption ? table.caption.textContent : `table ${t}`).trim().slice(0, 60);
    const box = scrollBox(table);
    const outer = (box || table).getBoundingClientRect();
    const right = outer.right.toFixed(0);
    if (outer.right > vw + 0.5) problems.push(`${name}: its box ends at ${right} px of ${vw}`);
    if (box) {  // every column reachable by scrolling the box: the table lies inside the box's scroll width
      const reach = table.getBoundingClientRect().right - box.getBoundingClientRect().left + box.scrollLeft;
      if (reach > box.scrollWidth + 0.5) problems.push(`${name}: columns beyond the box's scroll width`);
    }
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


#: Tables 1, 2 and 6: the table's width, the visible width of its scroll box and the box's overflow-x.
WIDE_JS = """
() => Array.from(document.querySelectorAll('table'))
  .filter((t) => t.caption && /^Table [126] /.test(t.caption.textContent))
  .map((t) => {
    const box = t.closest('.scroll');
    return {table: t.caption.textContent.slice(0, 7), width: t.getBoundingClientRect().width,
            box: box ? box.clientWidth : null, overflow: box ? getComputedStyle(box).overflowX : null};
  })
"""
WIDE_MODELS = ("resnet50-adversarially-trained-pgd-8", "densenet121-soft-attention-head", "standard")
WIDE_ATTACKS = ("fgsm", "bim", "pgd", "apgd")
WIDE_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


def make_wide_store(run_dir: Path) -> None:
    """A run whose Tables 1, 2 and 6 are far wider than a 1400-px window (16 attack × ε conditions)."""
    from robustxai.results import Store

    rng = np.random.default_rng(0)
    conditions = [("clean", 0.0)] + [(a, e) for a in WIDE_ATTACKS for e in WIDE_EPS]
    metrics = [f"point_coverage@{k}" for k in (5, 10, 15, 25, 50, 85)]
    with Store(run_dir) as store:
        store.set_meta("run_name", "wide tables")
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": 4 / 255})
        for model in WIDE_MODELS:
            store.add_model(model, "smallcnn", "standard", {})
            rows = []
            for cond, eps in conditions:
                store.add_predictions(
                    (model, cond, eps, f"s{i}", i % 2, int(rng.integers(2)), int(rng.integers(2)))
                    for i in range(8)
                )
                for explainer in ("integrated_gradients", "guided_gradcam", "random"):
                    names = metrics + ([] if cond == "clean" else ["map_ssim", "map_mse", "map_pearson"])
                    rows += [
                        (model, cond, eps, explainer, name, f"s{i}", float(rng.uniform()))
                        for name in names
                        for i in range(8)
                    ]
            store.add_metrics(rows)


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
def test_wide_tables_1_2_and_6_scroll_inside_their_box_at_1400_px(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from robustxai.report import build_report

    make_wide_store(tmp_path)
    report = build_report(tmp_path)
    out = artifacts_dir()
    found = check_report(report, out, "report-wide")
    assert found == {w: [] for w in WIDTHS}, json.dumps(found, indent=1)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(report.resolve().as_uri())
            wide = page.evaluate(WIDE_JS)
        finally:
            browser.close()
    assert [w["table"] for w in wide] == ["Table 1", "Table 2", "Table 6"]
    for w in wide:  # wider than their box (so the check above saw real overflow), which scrolls
        assert w["overflow"] == "auto" and w["width"] > w["box"] + 100, w
    assert (out / "report-wide-1400.png").stat().st_size > 10_000


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_layout_check_catches_a_wide_table_without_a_scroll_box(tmp_path: Path) -> None:
    cells = "".join(f"<td>column {i} with a long value</td>" for i in range(40))
    page = tmp_path / "wide.html"
    page.write_text(f"<html><body><table><caption>wide</caption><tr>{cells}</tr></table></body></html>")
    found: dict[int, Any] = check_report(page, tmp_path, "wide")
    assert all(any("no scroll box" in p for p in found[w]) for w in WIDTHS), found
    assert all(any("the page scrolls sideways" in p for p in found[w]) for w in WIDTHS), found
    assert all(any("its box ends at" in p for p in found[w]) for w in WIDTHS), found


if __name__ == "__main__":
    target = Path(sys.argv[1])
    result = check_report(
        target, Path(sys.argv[2]) if len(sys.argv) > 2 else artifacts_dir(), target.parent.name
    )
    print(json.dumps(result, indent=1))
