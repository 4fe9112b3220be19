"""The store's vocabulary (``robustxai.results._schema``): row records match the tables, keys round-trip."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from robustxai import RobustXAIError
from robustxai.results._schema import (
    CLEAN,
    CLEAN_CONDITION,
    FigureMapRow,
    MetricKey,
    MetricRow,
    PredictionRow,
    SampleRow,
    WarningRow,
    is_manipulation,
    manipulation_condition,
    manipulation_method,
)
from robustxai.results._store import UNIT_TABLES, Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.results._schema, robustxai.results._store"


@pytest.mark.parametrize(
    ("table", "record"),
    [
        ("samples", SampleRow),
        ("predictions", PredictionRow),
        ("metrics", MetricRow),
        ("figure_maps", FigureMapRow),
        ("warnings", WarningRow),
    ],
)
def test_row_records_have_the_columns_of_their_table(tmp_path: Path, table: str, record: type) -> None:
    """A record's fields are its table's columns, in order: the store writes records positionally."""
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    assert list(record._fields) == columns
    if table in UNIT_TABLES:
        assert UNIT_TABLES[table] == len(columns)


def test_records_round_trip_through_the_store(tmp_path: Path) -> None:
    """Typed rows written by the audit read back as the same values."""
    with Store(tmp_path) as store:
        store.write_unit(
            "u",
            {
                "predictions": [PredictionRow("m", CLEAN, 0.0, "s0", 1, 1, 1)],
                "metrics": [MetricRow("m", CLEAN, 0.0, "saliency", "point_coverage@15", "s0", 0.5)],
                "warnings": [WarningRow("m", "code", "message")],
            },
        )
        assert store.table("predictions").iloc[0].tolist() == ["m", "clean", 0.0, "s0", 1, 1, 1]
        assert store.table("metrics")["metric"].tolist() == ["point_coverage@15"]
        with pytest.raises(RobustXAIError, match="cannot write table"):
            store.write_unit("v", {"samples": [SampleRow("s", 0, 0, 0, 0)]})  # type: ignore[dict-item]


def test_metric_keys_format_and_parse() -> None:
    """The names the audit writes are the ones it always wrote; parsing splits at the first ``@``."""
    assert str(MetricKey.at_top("point_coverage", 0.15)) == "point_coverage@15"
    assert str(MetricKey.at_top("mask_area", 0.05)) == "mask_area@5"
    assert str(MetricKey("pointing_game")) == "pointing_game"
    assert MetricKey.parse("score@a@b") == MetricKey("score", "a@b")
    assert MetricKey.parse("map_pearson").base == "pearson"
    assert MetricKey.parse("rmse@15").top_percent == 15
    assert MetricKey.parse("score@cat").top_percent is None
    assert MetricKey.parse("x@²").top_percent is None  # a digit, but no decimal number


@given(st.text(alphabet=st.characters(blacklist_characters="@"), min_size=1), st.text())
def test_metric_key_round_trips(name: str, qualifier: str) -> None:
    """Any name without ``@`` and any qualifier survive format → parse."""
    key = MetricKey(name, qualifier)
    assert MetricKey.parse(str(key)) == key


def test_conditions() -> None:
    """The clean condition is one name, and manipulation conditions are built and parsed in one place."""
    assert CLEAN_CONDITION == (CLEAN, 0.0)
    assert manipulation_condition("saliency") == "manipulate:saliency"
    assert is_manipulation("manipulate:saliency") and not is_manipulation("pgd")
    assert manipulation_method("manipulate:gradcam") == "gradcam"
    assert manipulation_method(CLEAN) is None
