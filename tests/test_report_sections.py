"""The report's section registry: a section added in one place appears in report.html, in order and contents.

Also the opening of the report (the Claims section, then the short answer, then the contents) and the
one-table path of ``tables/claims.csv``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from robustxai import RobustXAIError, UnknownNameError
from robustxai.claims import claims_frame, evaluate_claims
from robustxai.report import build_report
from robustxai.report._blocks import Block, Bullets, Paragraph, PlainTable, Snippet
from robustxai.report._section import (
    FunctionSection,
    ReportContext,
    get_section,
    list_sections,
    register_section,
    report_section,
    unregister_section,
)
from robustxai.results import Store, load_run
from test_report import make_store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.report._blocks, robustxai.report._section"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    make_store(tmp_path)
    return tmp_path


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Ids registered by a test, unregistered afterwards even when it fails."""
    ids: list[str] = []
    yield ids
    for section_id in ids:
        if section_id in {s.id for s in list_sections()}:
            unregister_section(section_id)


def _part(html: str, section_id: str) -> str:
    """The HTML of one drawn section."""
    return html.split(f'<section id="{section_id}"')[1].split("<section id=")[0]


def _throwaway(ctx: ReportContext) -> list[Block]:
    n = len(ctx.tables.models)
    return [
        Paragraph(f"{n} models <b>counted</b> by a plug-in", lead="Plug-in."),
        PlainTable([[m, str(i)] for i, m in enumerate(ctx.tables.models)], ["model", "index"], "Plug-in"),
        Snippet({"who": "<i>me</i>"}, source="<p class='mine'>written by {{ who }}</p>"),
    ]


@dataclass(frozen=True)
class _LeadSection:
    """A section written as a class (the protocol), drawn before the table of contents."""

    id: str = "lead-plugin"
    title: str = "Lead plug-in"
    order: int = 15
    lead: bool = True
    css_class: str = "alert"

    def build(self, ctx: ReportContext) -> Sequence[Block]:
        return [Bullets([f"primary attack: {ctx.primary_label}"], heading="what the plug-in saw")]


@pytest.fixture(scope="module")
def plugged(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of the test store with four throwaway sections registered (and removed afterwards)."""
    run = tmp_path_factory.mktemp("plugged")
    make_store(run)
    report_section("throwaway", "A throwaway section", order=450)(_throwaway)
    register_section(_LeadSection())
    register_section(FunctionSection("empty-plugin", "Nothing here", 460, lambda ctx: None))
    register_section(FunctionSection("blank-plugin", "Nothing either", 470, lambda ctx: []))
    try:
        return build_report(run).read_text(encoding="utf-8")
    finally:
        for section_id in ("throwaway", "lead-plugin", "empty-plugin", "blank-plugin"):
            unregister_section(section_id)


def test_a_section_registered_in_a_test_appears_in_the_report(plugged: str) -> None:
    html = plugged
    part = _part(html, "throwaway")
    assert "<h2>A throwaway section</h2>" in part
    assert "<strong>Plug-in.</strong> 3 models &lt;b&gt;counted&lt;/b&gt; by a plug-in" in part  # escaped
    assert '<td class="text">attention</td><td class="num">1</td>' in part
    assert "<p class='mine'>written by &lt;i&gt;me&lt;/i&gt;</p>" in part
    assert '<li><a href="#throwaway">A throwaway section</a></li>' in html
    # order 450: after stability (400), before correlation (500)
    assert html.index('id="stability"') < html.index('id="throwaway"')
    assert html.index('id="throwaway"') < html.index('id="correlation"')
    assert "throwaway" not in {s.id for s in list_sections()}  # the fixture removed it again


def test_a_lead_section_comes_before_the_contents(plugged: str) -> None:
    html = plugged
    assert '<section id="lead-plugin" class="alert">' in html
    assert html.index('id="claims"') < html.index('id="lead-plugin"') < html.index('id="answer"')
    assert html.index('id="lead-plugin"') < html.index('id="contents"')
    assert "<h3>what the plug-in saw</h3>" in html and "primary attack: pgd ε=4/255" in html


def test_a_section_with_nothing_to_show_is_left_out(plugged: str) -> None:
    assert "Nothing here" not in plugged and "Nothing either" not in plugged
    assert 'id="empty-plugin"' not in plugged


def test_a_section_returning_something_else_is_a_one_line_error(run_dir: Path, cleanup: list[str]) -> None:
    register_section(FunctionSection("bad-plugin", "Bad", 480, lambda ctx: ["a bare string"]))
    cleanup.append("bad-plugin")
    with pytest.raises(RobustXAIError, match="returned str, which is not a report block"):
        build_report(run_dir)


def test_registry_refuses_duplicates_and_bad_ids_and_names_unknown_ones(cleanup: list[str]) -> None:
    with pytest.raises(RobustXAIError, match="registered twice"):
        register_section(FunctionSection("summary", "Again", 1, lambda ctx: None))
    with pytest.raises(RobustXAIError, match="must be letters"):
        register_section(FunctionSection('x" onclick="y', "Evil", 1, lambda ctx: None))
    for taken in ("contents", "table-robustness"):  # the page's own ids
        with pytest.raises(RobustXAIError, match="taken by the page itself"):
            register_section(FunctionSection(taken, "Clash", 1, lambda ctx: None))
    with pytest.raises(UnknownNameError, match="Did you mean 'summary'"):
        get_section("sumary")
    original = get_section("summary")
    replaced = FunctionSection("summary", "Summary (replaced)", 100, lambda ctx: None)
    try:
        register_section(replaced, replace=True)
        assert get_section("summary") is replaced
    finally:
        register_section(original, replace=True)
    ids = [s.id for s in list_sections()]
    assert ids[:3] == ["claims", "answer", "chance"] and ids[-1] == "details"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The test store's run directory and its report, built once."""
    run = tmp_path_factory.mktemp("plain")
    make_store(run)
    return run, build_report(run).read_text(encoding="utf-8")


def test_report_opens_with_claims_then_the_short_answer_then_the_contents(plain: tuple[Path, str]) -> None:
    html = plain[1]
    order = ['id="claims"', 'id="answer"', 'id="contents"', 'id="summary"']
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert html.index('id="claims"') < html.index("<h2")  # the first section of the page
    for section_id in ("summary", "robustness", "alignment", "stability", "maps", "details"):
        assert f'<a href="#{section_id}">' in html
    answer = _part(html, "answer")
    for label in ("Model", "Map method", "Under attack", "Manipulation", "How far to trust it"):
        assert f"<dt>{label}</dt>" in answer
    claims = _part(html, "claims")
    assert 'class="badge inconclusive"' in claims and "--profile paper" in claims


def test_claims_csv_is_the_claims_frame_and_the_section_shows_each_claim(plain: tuple[Path, str]) -> None:
    run_dir, html = plain
    written = pd.read_csv(run_dir / "tables" / "claims.csv", keep_default_na=False, na_values=[""])
    expected = claims_frame(evaluate_claims(load_run(run_dir)))
    pd.testing.assert_frame_equal(written, expected.replace("", float("nan")), check_dtype=False)
    claims = _part(html, "claims")
    for claim_id in dict.fromkeys(expected["claim_id"]):
        assert f"· {claim_id}</span>" in claims
    assert f"Every result by scope ({len(expected)} rows)" in claims


def test_the_paper_profile_is_not_pointed_to_from_a_paper_run(run_dir: Path) -> None:
    with Store(run_dir) as store:
        store.set_meta("config", {"name": "paper", "seed": 0})
    html = build_report(run_dir).read_text(encoding="utf-8")
    assert "--profile paper gathers" not in html
