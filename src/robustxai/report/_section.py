"""Report sections: the :class:`Section` protocol, the registry the report walks, and the context they read.

:func:`~robustxai.report.build_report` walks the registry; :class:`ReportContext` is the run's loaded data.

A section declares an ``id`` (its anchor and registry name), a ``title`` (its heading and its line in the
table of contents), an ``order`` (sections are drawn by ascending order, then id) and ``lead`` (drawn before
the table of contents: the report answers before it lists). Its :meth:`Section.build` turns the context into
blocks (:mod:`robustxai.report._blocks`); ``None`` or no blocks leaves the section out of the report.

Adding a section is one file::

    from robustxai.report._blocks import Paragraph
    from robustxai.report._section import ReportContext, report_section

    @report_section("my-check", "My check", order=650)
    def my_check(ctx: ReportContext) -> list[Paragraph]:
        return [Paragraph(f"{len(ctx.tables.models)} models")]

The built-in sections live in :mod:`robustxai.report.sections`, one file each.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from robustxai._errors import RobustXAIError, UnknownNameError
from robustxai.report._blocks import Block
from robustxai.report._html_tables import Lookup
from robustxai.report._tables import ReportTables, condition_label
from robustxai.results._run import RunData
from robustxai.results._store import approximate_pairs

__all__ = [
    "FunctionSection",
    "ReportContext",
    "Section",
    "SectionView",
    "build_sections",
    "get_section",
    "list_sections",
    "register_section",
    "report_section",
    "unregister_section",
]


@dataclass
class ReportContext:
    """What a section reads: the run's rows, its aggregates and the tables written under ``tables/``.

    Attributes:
        run: The store's rows and metadata (:func:`robustxai.results.load_run`).
        tables: The run's aggregates (:func:`robustxai.report._run_tables.report_tables`).
        frames: The run's tables by name, exactly as written to ``tables/<name>.csv``.
        per_label: The multi-label table (empty for a run without multi-label models).
        run_dir: The run directory; a section may write its figures under :attr:`figures_dir`.
    """

    run: RunData
    tables: ReportTables
    frames: dict[str, pd.DataFrame]
    per_label: pd.DataFrame
    run_dir: Path

    @property
    def figures_dir(self) -> Path:
        """``run_dir/figures``, where sections write their PNGs."""
        return self.run_dir / "figures"

    @property
    def primary_label(self) -> str:
        """The primary attack as displayed (``"pgd ε=4/255"``), or ``"none"``."""
        return condition_label(*self.tables.primary) if self.tables.primary else "none"

    @cached_property
    def look(self) -> Lookup:
        """The alignment rows indexed by cell, approximate maps marked (shared by every metric table)."""
        return Lookup(self.tables, approximate_pairs(self.run.warnings))


@runtime_checkable
class Section(Protocol):
    """One part of the report: a heading, an anchor and the blocks drawn under it."""

    @property
    def id(self) -> str:
        """Registry name and HTML anchor (``#<id>``)."""

    @property
    def title(self) -> str:
        """Heading and table-of-contents line."""

    @property
    def order(self) -> int:
        """Position: lower first."""

    @property
    def lead(self) -> bool:
        """Whether it comes before the table of contents."""

    @property
    def css_class(self) -> str:
        """Extra CSS class of the section box (``"alert"``, ``"warnings"``), or ``""``."""

    def build(self, ctx: ReportContext) -> Sequence[Block] | None:
        """The blocks to draw; ``None`` or empty leaves the section out."""


Builder = Callable[[ReportContext], Sequence[Block] | None]


@dataclass(frozen=True)
class FunctionSection:
    """A :class:`Section` made of its metadata and a function from the context to blocks."""

    id: str
    title: str
    order: int
    builder: Builder
    lead: bool = False
    css_class: str = ""

    def build(self, ctx: ReportContext) -> Sequence[Block] | None:
        """Call the builder."""
        return self.builder(ctx)


@dataclass(frozen=True)
class SectionView:
    """A built section, as the template draws it."""

    id: str
    title: str
    lead: bool
    css_class: str
    blocks: list[Block] = field(default_factory=list)


_SECTIONS: dict[str, Section] = {}
#: HTML ids the page uses itself (the table of contents); tables are ``table-<key>``.
RESERVED_IDS = frozenset({"contents"})


def register_section(section: Section, *, replace: bool = False) -> Section:
    """Add ``section`` to the report; ``replace=True`` swaps out a section registered under its id.

    Raises:
        RobustXAIError: If the id is taken (and ``replace`` is false), is not a plain anchor name, or is one
            the page uses itself (``contents``, ``table-…``).
    """
    if not section.id or not all(ch.isalnum() or ch in "-_" for ch in section.id):
        raise RobustXAIError(f"report section id {section.id!r} must be letters, digits, '-' or '_'")
    if section.id in RESERVED_IDS or section.id.startswith("table-"):
        raise RobustXAIError(f"report section id {section.id!r} is taken by the page itself")
    if section.id in _SECTIONS and not replace:
        raise RobustXAIError(f"report section {section.id!r} is registered twice")
    _SECTIONS[section.id] = section
    return section


def report_section(
    id: str, title: str, order: int, *, lead: bool = False, css_class: str = ""
) -> Callable[[Builder], Builder]:
    """Decorator: register the decorated function as the builder of a :class:`FunctionSection`."""

    def decorate(builder: Builder) -> Builder:
        register_section(FunctionSection(id, title, order, builder, lead, css_class))
        return builder

    return decorate


def get_section(section_id: str) -> Section:
    """The section registered as ``section_id``.

    Raises:
        UnknownNameError: If there is none (the message lists the registered ids).
    """
    try:
        return _SECTIONS[section_id]
    except KeyError:
        close = difflib.get_close_matches(section_id, list(_SECTIONS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown report section {section_id!r}.{hint} Known sections: {', '.join(sorted(_SECTIONS))}"
        ) from None


def unregister_section(section_id: str) -> Section:
    """Remove a section from the report and return it (see :func:`get_section` for the error)."""
    section = get_section(section_id)
    del _SECTIONS[section_id]
    return section


def list_sections() -> list[Section]:
    """The registered sections in report order (``order``, then ``id``)."""
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.id))


def build_sections(ctx: ReportContext) -> list[SectionView]:
    """Build every registered section in order; those with nothing to show are left out."""
    views = []
    for section in list_sections():
        blocks = list(section.build(ctx) or [])
        if blocks:
            views.append(SectionView(section.id, section.title, section.lead, section.css_class, blocks))
    return views
