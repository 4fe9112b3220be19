"""One number formatter and one min-max: no module writes its own again.

``report/_numbers.py`` writes every number (NaN a dash, no "-0.00"), outside ``report/`` and inside it: no
other module of ``report/`` applies a format spec (``f"{x:.2f}"``, ``format(x, ".3g")``, ``"%.2f" % x``)
or spells another marker for an undefined number. ``_arrays.minmax`` / ``minmax_array`` normalise every map
and image (a constant one becomes zeros).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from robustxai.report._numbers import DASH, fmt_effect, fmt_general, fmt_number, fmt_percent
from robustxai.web._runview import heat_png

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.report._numbers, robustxai.web._runview"

SRC = Path(__file__).resolve().parents[1] / "src" / "robustxai"
#: ``(v - lo) / (hi - lo)`` where lo and hi are not the data's min and max (a display or DICOM window).
WINDOWS = {"web/_annotations.py", "data/_dicom.py"}
REPORT = SRC / "report"
#: The one module of ``report/`` that formats numbers.
FORMATTER = REPORT / "_numbers.py"
#: ``"n/a"`` that is not a number's marker: the figure tile of a method a model has no map for.
NOT_APPLICABLE = {"_figures.py"}


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


def _report_modules() -> list[Path]:
    return [p for p in REPORT.rglob("*.py") if p != FORMATTER]


def _format_specs(tree: ast.AST) -> list[int]:
    """Lines with a format spec: ``f"{x:.2f}"``, ``format(x, …)``, ``"%.2f" % x``, ``"{:.2f}".format``."""
    lines = []
    for node in ast.walk(tree):
        spec = isinstance(node, ast.FormattedValue) and node.format_spec is not None
        call = isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id == "format")
            or (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and re.search(r"\{[^{}]*:[^{}]*\}", str(node.func.value.value))
            )
        )
        percent = (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and re.search(r"%[-+ 0#]*\d*(\.\d+)?[dfeEgGs]", node.left.value)
        )
        if spec or call or percent:
            lines.append(getattr(node, "lineno", 0))
    return sorted(lines)


def test_no_number_formatting_in_report_outside_the_formatter() -> None:
    stray = [
        f"{p.relative_to(SRC)}:{line}"
        for p in _report_modules()
        for line in _format_specs(ast.parse(p.read_text(encoding="utf-8")))
    ]
    assert stray == []


def test_the_scan_finds_a_stray_formatter() -> None:
    code = 'a = f"{x:.2f}"\nb = format(x, ".3g")\nc = "%.1f %%" % x\nd = "{:.2f}".format(x)\n'
    code += 'e = f"{x!r} {n}"\nf = "{} {name}".format(x, name=1)\n'
    assert _format_specs(ast.parse(code)) == [1, 2, 3, 4]


def test_no_formatter_functions_or_other_markers_in_report() -> None:
    own = [
        f"{p.relative_to(SRC)}:{node.name}"
        for p in _report_modules()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and re.fullmatch(r"_?(fmt|pct|num)\w*", node.name)
    ]
    markers = [
        f"{p.relative_to(SRC)}:{node.lineno}"
        for p in _report_modules()
        if p.name not in NOT_APPLICABLE
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in ("n/a", "N/A", "nan", "NaN", "-")
    ]
    templates = [
        t.name
        for t in (REPORT / "templates").glob("*.j2")
        if re.search(r"\|\s*(round|format)\b|%\.\d", t.read_text(encoding="utf-8"))
    ]
    assert own == [] and markers == [] and templates == []


def test_every_formatter_has_one_marker_and_no_minus_zero() -> None:
    undefined = [float("nan"), float("inf"), -float("inf"), None, "x"]
    formatters = [fmt_number, fmt_percent, fmt_general, fmt_effect]
    assert {f(v) for f in formatters for v in undefined} == {DASH}
    assert fmt_number(-0.004) == "0.00" and fmt_number(-0.0004, 1, 100.0, unit=" %") == "0.0 %"
    assert fmt_percent(-0.0001) == "0.0 %" and fmt_percent(0.1234) == "12.3 %"
    assert fmt_general(-0.0) == "0" and fmt_general(0.25) == "0.25" and fmt_general(1 / 3, 4) == "0.3333"
    assert fmt_effect(-0.0) == "0.000" and fmt_effect(0.00042) == "0.00042" and fmt_effect(0.1234) == "0.123"
    samples = [-1e-9, -0.0, -0.00049, -0.0049, -0.049]
    shown = [f(v) for f in formatters for v in samples]
    shown += [fmt_number(v, 1, 100.0, sign=True) for v in samples]
    assert not [t for t in shown if re.fullmatch(r"-0(\.0*)?( %)?", t)]
