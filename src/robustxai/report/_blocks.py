"""The generic render model of a report section: the blocks a section returns and the template draws.

A section (:mod:`robustxai.report._section`) turns a run's data into a list of blocks; ``report.html.j2``
draws each kind with one macro, so a new section needs no template edit. The kinds:

- :class:`~robustxai.report._html_tables.HtmlTable`: a numeric table with CIs, grouped header, guide;
- :class:`PlainTable`: a table of ready-made strings (optional caption and header);
- :class:`Paragraph`: one paragraph, optionally led by a bold phrase ("How to read this.");
- :class:`Bullets`: a list of sentences under an optional sub-heading;
- :class:`FigureBlock`: an embedded PNG with its caption;
- :class:`Snippet`: a section's own small Jinja template (a file in the report templates or a source
  string), rendered autoescaped with the values it brings.

Everything a block holds is text, never markup: the template escapes it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustxai._errors import RobustXAIError
from robustxai.report._html_tables import HtmlTable

__all__ = [
    "Block",
    "Bullets",
    "FigureBlock",
    "Paragraph",
    "PlainTable",
    "Snippet",
    "block_kind",
    "data_uri",
]


@dataclass(frozen=True)
class PlainTable:
    """A table of strings: ``aligns`` per column (``"text"``/``"num"``), else guessed from the cells."""

    rows: list[list[str]]
    columns: list[str] = field(default_factory=list)
    caption: str = ""
    aligns: list[str] | None = None


@dataclass(frozen=True)
class Paragraph:
    """One paragraph; ``lead`` is printed bold before it; ``css_class`` styles it (e.g. ``"howto"``)."""

    text: str
    lead: str = ""
    css_class: str = ""


@dataclass(frozen=True)
class Bullets:
    """Sentences as a bulleted list, under an optional sub-heading (``<h3>``)."""

    items: list[str]
    heading: str = ""
    css_class: str = "summary"


@dataclass(frozen=True)
class FigureBlock:
    """An image (a ``data:`` URI, so the report stays one file) with its alt text and caption."""

    src: str
    alt: str
    caption: str = ""
    css_class: str = ""


@dataclass(frozen=True)
class Snippet:
    """A section's own template: ``template`` names a file in the report templates, or ``source`` is one.

    The template sees ``values`` as its variables and is autoescaped like the rest of the report.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    template: str = ""
    source: str = ""


#: What a section may return, in display order.
Block = HtmlTable | PlainTable | Paragraph | Bullets | FigureBlock | Snippet

_KINDS: dict[type, str] = {
    HtmlTable: "table",
    PlainTable: "plain_table",
    Paragraph: "paragraph",
    Bullets: "bullets",
    FigureBlock: "figure",
    Snippet: "snippet",
}


def block_kind(block: object) -> str:
    """The template macro that draws ``block`` (``"table"``, ``"plain_table"``, …).

    Raises:
        RobustXAIError: If ``block`` is not one of the block types (a section returned something else).
    """
    for kind_type, kind in _KINDS.items():
        if isinstance(block, kind_type):
            return kind
    raise RobustXAIError(f"a report section returned {type(block).__name__}, which is not a report block")


def data_uri(path: Path | None) -> str | None:
    """A PNG file as a ``data:image/png;base64,…`` URI (``None`` for no file)."""
    return (
        None
        if path is None
        else "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    )
