"""Number formatting and proportion intervals shared by every part of the report.

One formatter (:func:`fmt_number`) writes every number the report shows, so a value that rounds to zero is
``0.00``, never ``-0.00``, and NaN is a dash everywhere. The Wilson and Newcombe intervals give accuracies
and their differences an honest sampling uncertainty.
"""

from __future__ import annotations

import math

DASH = "—"
_Z95 = 1.959963984540054


def fmt_number(value: object, digits: int = 2, scale: float = 1.0, sign: bool = False) -> str:
    """``scale × value`` with ``digits`` decimals; NaN, ±inf and non-numbers become a dash.

    A result that rounds to zero is written without a minus sign ("-0.00" would claim a direction that the
    shown precision cannot carry). ``sign`` writes ``+`` before positive numbers.
    """
    try:
        v = float(value) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(v):
        return DASH
    text = f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:.{digits}f}"
    return text


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
