"""One number formatter and one min-max outside ``report/``: no module writes its own again.

``report/numbers.fmt_number`` writes every number (NaN a dash, no "-0.00"); ``_arrays.minmax`` /
``minmax_array`` normalise every map and image (a constant one becomes zeros). ``report/`` itself is
restructured separately and is left out of this scan.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from robustxai.report.numbers import fmt_number
from robustxai.web.runview import heat_png

SRC = Path(__file__).resolve().parents[1] / "src" / "robustxai"
#: ``(v - lo) / (hi - lo)`` where lo and hi are not the data's min and max (a display or DICOM window).
WINDOWS = {"web/annotations.py", "data/dicom.py"}


def _outside_report() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "report"]


def test_no_second_number_formatter() -> None:
    own = [
        f"{p.relative_to(SRC)}:{node.name}"
        for p in _outside_report()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and re.fullmatch(r"_?fmt\w*", node.name)
    ]
    assert own == []


def test_no_second_minmax() -> None:
    pattern = re.compile(r"\(\w+ - lo\) / \((hi - lo|span)\)")
    own = [
        p.relative_to(SRC).as_posix()
        for p in _outside_report()
        if p.name != "_arrays.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert [p for p in own if p not in WINDOWS] == []


def test_the_formatter_never_writes_minus_zero() -> None:
    assert fmt_number(-0.0001) == "0.00" and fmt_number(float("nan")) == "—" and fmt_number(None) == "—"
    assert fmt_number(0.12345, 3) == "0.123"


def test_a_constant_map_draws_without_dividing_by_zero() -> None:
    assert heat_png(np.full((4, 4), 3.0)).startswith(b"\x89PNG")
