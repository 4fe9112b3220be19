"""The metric registry drives the work: contract tests over every registered map metric, and a throwaway
metric registered inside a test that a tiny audit computes, the CSVs hold and the report shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import robustxai.metrics as M
from robustxai import RobustXAIError, UnknownNameError
from robustxai.audit._config import ExplainConfig, load_config
from robustxai.results._metric_keys import alignment_scores, headline_key, metric_of, stored_keys

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._config, robustxai.audit._stages_eval, "
    "robustxai.results._metric_keys"
)

TOPS = [0.05, 0.15]


def _inputs(b: int = 3, size: int = 16) -> M.MapInputs:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(b, size, size, generator=gen, dtype=torch.float64)
    masks = torch.zeros(b, size, size, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    points = [np.array([[5.0, 6.0], [8.0, 8.0]]) for _ in range(b)]
    reference = torch.rand(b, size, size, generator=gen, dtype=torch.float64)
    return M.MapInputs(maps, masks=masks, points=points, reference=reference)


@pytest.mark.parametrize("name", [m.name for m in M.map_metrics()])
def test_every_map_metric_is_computable_from_its_declaration(name: str) -> None:
    info = M.get_metric(name)
    settings = {kw: getattr(ExplainConfig(), field) for kw, field in info.settings}  # a real config field
    keys = stored_keys(info, TOPS)
    assert keys, name
    for key, top in keys:
        assert metric_of(str(key)) is info  # the stored name parses back to the metric
        params = settings if top is None else {**settings, "top": top}
        values = M.evaluate(info, _inputs(), **params)
        assert values.shape == (3,) and values.dtype == torch.float64
    assert info.display and info.reading
    assert info.table is None or info.higher_is_better is not None or info.table == "alignment"


def test_the_registry_names_the_stored_keys_of_the_audit() -> None:
    names = [str(k) for m in M.map_metrics() for k, _ in stored_keys(m, TOPS)]
    assert names == [
        "point_coverage@5",
        "point_coverage@15",
        "mask_area@5",
        "mask_area@15",
        "pointing_game",
        "relevance_mass",
        "topk_iou@15",
        "rmse@15",
        "map_ssim",
        "map_mse",
        "map_pearson",
    ]
    assert headline_key() == "point_coverage@15"
    assert alignment_scores() == ["point_coverage@15", "pointing_game", "relevance_mass", "topk_iou@15"]
    assert metric_of("ssim") is None and metric_of("map_pointing_game") is None and metric_of("x@1") is None


def test_registration_errors_are_robustxai_errors() -> None:
    with pytest.raises(RobustXAIError, match="registered twice"):
        M.register_metric(M.MetricInfo("rmse", M.rmse, False, "mask", "again"))
    with pytest.raises(RobustXAIError, match="fractions"):
        M.register_metric(M.MetricInfo("bad_top", M.rmse, False, "mask", "x", tops=(1.5,)))
    with pytest.raises(RobustXAIError, match="needs must be one of"):
        M.register_metric(M.MetricInfo("bad_needs", M.rmse, False, "masks", "x"))  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="table must be one of"):
        M.register_metric(M.MetricInfo("bad_table", M.rmse, False, "mask", "x", table="tbl"))  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="not computed per image on maps"):
        M.evaluate(M.get_metric("accuracy"), _inputs())
    with pytest.raises(RobustXAIError, match="needs mask"):
        M.evaluate(M.get_metric("rmse"), M.MapInputs(torch.rand(2, 8, 8)))
    with pytest.raises(UnknownNameError):
        M.unregister_metric("no_such_metric")
    assert not {"bad_top", "bad_needs", "bad_table"} & set(M.list_metrics())


def test_a_metric_reading_a_missing_config_field_is_a_one_line_error() -> None:
    from robustxai.audit._stages_eval import metric_rows

    info = M.MetricInfo(
        "needs_radius", M.relevance_mass, True, "mask", "x", settings=(("radius", "no_such"),)
    )
    M.register_metric(info)
    try:
        with pytest.raises(RobustXAIError, match=r"explain\.no_such"):
            metric_rows(("m", "clean", 0.0, "saliency"), _inputs(), ["a", "b", "c"], ExplainConfig())
    finally:
        M.unregister_metric("needs_radius")


# -- a throwaway metric, added in one place, reaches the audit, the CSVs and the report --------------------


def mask_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the map's total inside the mask; undefined (NaN) for the first image, to test the note."""
    m = maps.double().clamp_min(0)
    inside = (m * masks.to(m.dtype)).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1e-12)
    inside[0] = float("nan")
    return inside


def abs_change(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two maps."""
    return (maps_a.double() - maps_b.double()).abs().flatten(1).mean(1)


@pytest.fixture
def throwaway_metrics() -> Iterator[None]:
    M.register_metric(
        M.MetricInfo(
            "mask_share",
            mask_share,
            True,
            "mask",
            "share of the map inside the mask",
            label="mask share",
            undefined="a throwaway reason",
            table="localisation",
            scale=100.0,
            digits=1,
        )
    )
    M.register_metric(
        M.MetricInfo(
            "abs_change",
            abs_change,
            False,
            "maps_pair",
            "mean |a − b|",
            label="abs change",
            table="stability",
        )
    )
    try:
        yield
    finally:
        M.unregister_metric("mask_share")
        M.unregister_metric("abs_change")


TINY: dict[str, Any] = {
    "name": "tiny-metric",
    "batch_size": 4,
    "data": {"n_train": 24, "n_test": 8, "size": 32, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [{"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}}],
    "attacks": [{"name": "fgsm", "epsilons": [4 / 255]}],
    "explain": {"methods": ["saliency"], "n_images": 4, "batch_size": 4, "tops": [0.15], "attacks": ["fgsm"]},
    "report": {"n_figure": 1},
    "sanity": {"n_images": 2},
    "manipulation": None,
}


@pytest.mark.slow
def test_a_metric_registered_in_one_place_reaches_the_audit_the_csvs_and_the_report(
    tmp_path: Path, throwaway_metrics: None, one_thread: None
) -> None:
    from robustxai._pipeline import run_audit

    result = run_audit(load_config(profile="smoke", **TINY), tmp_path / "run")
    tables = result.run_dir / "tables"
    alignment = pd.read_csv(tables / "alignment.csv")
    rows = alignment[alignment["metric"] == "mask_share"]
    assert set(rows["condition"]) == {"clean", "fgsm"} and (rows["n"] >= 1).all()
    stability = pd.read_csv(tables / "stability.csv")
    assert "map_abs_change" in set(stability["metric"]) and "map_abs_change" not in set(alignment["metric"])
    assert "mask_share" in set(pd.read_csv(tables / "correlation.csv")["alignment_metric"])
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "mask share (%) ↑" in html and "abs change ↓" in html  # Table 3 and the stability table
    assert "Localisation: pointing game, relevance mass and mask share" in html
    assert re.search(r"saliency / mask_share \d+ \(a throwaway reason\)", html)  # the undefined-values note
