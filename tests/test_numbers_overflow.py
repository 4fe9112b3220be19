"""The report's formatters on integers no float holds: the dash marker, never an OverflowError.

A checkpoint's model.json may hold ``"val_accuracy": 1000...0`` (400 digits), which JSON reads as an integer.
"""

from __future__ import annotations

import pytest

from robustxai.report._numbers import DASH, fmt_effect, fmt_general, fmt_number, fmt_percent

WHITE_BOX = "the report's number formatters, an internal module"


@pytest.mark.parametrize("fmt", [fmt_number, fmt_percent, fmt_general, fmt_effect])
@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_an_integer_beyond_a_float_is_a_dash(fmt: object, value: int) -> None:
    assert fmt(value) == DASH  # type: ignore[operator]
