"""Number formatting and proportion intervals shared by every part of the report.

This module is the report's only number formatter: :func:`fmt_number` (fixed digits), :func:`fmt_percent`
(a share as ``"12.3 %"``), :func:`fmt_general` (shortest form, ``:g``) and :func:`fmt_effect` (an effect
size) write every number the report shows, so a value that rounds to zero is ``0.00``, never ``-0.00``, and
an undefined value (NaN, ±inf, ``None``, not a number, an integer beyond a float such as ``10**400``) is
the one marker :data:`DASH` everywhere — in tables, sentences and captions alike.
``tests/test_one_implementation.py`` fails on a format spec anywhere else in ``report/``. The Wilson and
Newcombe intervals give accuracies and their differences an honest sampling uncertainty.
"""

from __future__ import annotations

import math

#: The one marker of an undefined number (the em dash most tables already used; "n/a" and "" are gone).
DASH = "—"
_Z95 = 1.959963984540054


def fmt_number(value: object, digits: int = 2, scale: float = 1.0, sign: bool = False, unit: str = "") -> str:
    """``scale × value`` with ``digits`` decimals and ``unit``; NaN, ±inf and non-numbers become a bare dash.

    A result that rounds to zero is written without a minus sign ("-0.00" would claim a direction that the
    shown precision cannot carry). ``sign`` writes ``+`` before positive numbers.
    """
    try:
        v = float(value) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer no float holds (10**400)
        return DASH
    if not math.isfinite(v):
        return DASH
    text = f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:.{digits}f}"
    return text + unit


def fmt_percent(value: object, digits: int = 1) -> str:
    """A share as a percentage with its unit (``0.123`` → ``"12.3 %"``); undefined values are a bare dash."""
    return fmt_number(value, digits, 100.0, unit=" %")


def fmt_general(value: object, digits: int | None = None) -> str:
    """``value`` in Python's general notation (``:g``, or ``.{digits}g`` significant digits).

    For settings such as ε or a threshold, whose shortest exact form reads better than fixed decimals. NaN,
    ±inf and non-numbers are a dash, and ``-0.0`` is written ``0``.
    """
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer no float holds (10**400)
        return DASH
    if not math.isfinite(v):
        return DASH
    return format(v + 0.0, "g" if digits is None else f".{digits}g")


def fmt_effect(value: object) -> str:
    """An effect size or its bound: three decimals, or two significant digits when it is below 0.001.

    So a small but real effect (``0.00042``) is not shown as ``0.000``; NaN is a dash.
    """
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer no float holds (10**400)
        return DASH
    if math.isfinite(v) and v != 0.0 and abs(v) < 0.001:
        return fmt_general(v, 2)
    return fmt_number(v, 3)


def wilson_interval(p: float, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials (NaN when ``n`` is 0)."""
    if n <= 0 or math.isnan(p):
        return (math.nan, math.nan)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float]:
    """Newcombe's interval for ``p1 − p2`` from two Wilson intervals.

    It treats the two accuracies as independent; on the same images (paired) it is conservative.
    """
    l1, u1 = wilson_interval(p1, n1)
    l2, u2 = wilson_interval(p2, n2)
    d = p1 - p2
    return (d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))
