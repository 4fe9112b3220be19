"""The manipulation audit stage (rows, ReLU-model maps, unit kind), its config and its report section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import robustxai as rx
from robustxai import ConfigError, RobustXAIError
from robustxai.audit import load_config, validate_config
from robustxai.audit._plan import AuditData, plan_units, run_unit
from robustxai.audit._stages_manip import (
    IMAGE_EXPLAINER,
    ORIGINAL_CONDITION,
    ManipulationShard,
    check_manipulation_config,
    manipulation_shard,
    map_metrics,
    prepare_manipulation,
)
from robustxai.data import SyntheticFracture
from robustxai.manipulate import SoftplusSurrogate, create_manipulation, explained_class
from robustxai.metrics import MetricInfo, minmax, mse, pearson, register_metric, ssim, unregister_metric
from robustxai.report._manipulation import COLUMNS, manipulation_section, manipulation_table
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._plan, robustxai.audit._stages_manip, robustxai.report._manipulation"
)

MANIP = {"methods": ["saliency", "gradcam"], "transfer_from": ["gradcam"], "n_images": 4, "iterations": 3}


def _cfg(**manip: object) -> rx.AuditConfig:
    raw = load_config(profile="smoke").model_dump()
    raw["manipulation"] = {**MANIP, "batch_size": 4, **manip}
    return validate_config(raw)


def _shard(images: torch.Tensor, labels: torch.Tensor, n_figure: int = 2) -> ManipulationShard:
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[0, 20:26, 2:8] = True
    points = [np.zeros((0, 2)), np.array([[5.0, 5.0]]), np.zeros((0, 2)), np.zeros((0, 2))]
    return ManipulationShard([f"s{i}" for i in range(4)], images, labels, masks, points, n_figure)


@pytest.mark.slow
def test_shard_rows_layout_and_transfer(tiny_model, images, labels) -> None:
    rows, fig = manipulation_shard("m", tiny_model, _cfg(), "gradcam", _shard(images, labels))
    keys = {(c, x, metric) for _, c, _, x, metric, _, _ in rows}
    for ev in ("gradcam", "saliency"):  # gradcam is in transfer_from, so saliency is scored on its images
        for metric in ("target_ssim", "unsuccessful", "map_ssim", "map_mse", "map_pearson"):
            assert ("manipulate:gradcam", ev, metric) in keys
    for metric in ("image_ssim", "prediction_unchanged", "label@1", "clean_score@0", "adv_score@1"):
        assert ("manipulate:gradcam", "", metric) in keys
    assert all(r[0] == "m" and r[2] == 0.0 for r in rows)
    unchanged = [r[6] for r in rows if r[4] == "prediction_unchanged"]
    assert unchanged == [1.0] * 4  # keep_prediction guarantees it
    assert all(0 <= r[6] <= 1 for r in rows if r[4] in ("unsuccessful", "image_ssim"))
    fig_keys = {(c, x, s) for _, c, _, x, s, _ in fig}
    assert (ORIGINAL_CONDITION, "target", "s0") in fig_keys
    assert ("manipulate:gradcam", IMAGE_EXPLAINER, "s1") in fig_keys
    assert not any(s in ("s2", "s3") for _, _, _, _, s, _ in fig)  # only n_figure images are drawn
    sal_rows, _ = manipulation_shard("m", tiny_model, _cfg(), "saliency", _shard(images, labels))
    assert {r[3] for r in sal_rows} == {"", "saliency"}  # saliency is not in transfer_from


def test_reported_maps_come_from_the_relu_model(tiny_model, images, labels) -> None:
    cfg = _cfg(iterations=4, lr=0.02)
    shard = _shard(images, labels, n_figure=4)
    rows, fig = manipulation_shard("m", tiny_model, cfg, "saliency", shard)
    # The attack is deterministic, so the same call gives the same adversarial images.
    attack = create_manipulation("manipulate", method="saliency", iterations=4, lr=0.02, target_size=0.25)
    targets = attack.target_maps(images, None, [shard.masks[0].numpy(), shard.points[1], None, None])
    adv = attack(tiny_model, images, labels, target_maps=targets)
    cls = explained_class(tiny_model, images)
    relu_maps = rx.create_explainer("saliency").explain(tiny_model, adv, target=cls).maps
    beta_end = attack.schedule.end
    soft_maps = attack.explainer.map_for_attack(
        SoftplusSurrogate(tiny_model, beta_end), adv, cls, create_graph=False
    )
    stored = {s: m for _, c, _, x, s, m in fig if c == "manipulate:saliency" and x == "saliency"}
    for i, sid in enumerate(shard.ids):
        np.testing.assert_allclose(stored[sid], relu_maps[i].numpy(), rtol=1e-5, atol=1e-9)
        assert not np.allclose(stored[sid], soft_maps[i].numpy(), rtol=1e-3, atol=1e-9)
    target_ssim = [r[6] for r in rows if r[3] == "saliency" and r[4] == "target_ssim"]
    np.testing.assert_allclose(target_ssim, ssim(targets, relu_maps).numpy(), rtol=1e-9)


def test_map_metrics_against_skimage() -> None:
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(3, 16, 16, generator=gen), torch.rand(3, 16, 16, generator=gen)
    t = torch.zeros(3, 16, 16)
    t[:, :5, -5:] = 1
    out = map_metrics(a, b, t)
    an, bn = minmax(a.double()).numpy(), minmax(b.double()).numpy()
    for i in range(3):
        assert out["map_ssim"][i].item() == pytest.approx(structural_similarity(an[i], bn[i], data_range=1.0))
        ref_t = structural_similarity(t[i].double().numpy(), bn[i], data_range=1.0)
        assert out["target_ssim"][i].item() == pytest.approx(ref_t)
        assert out["map_mse"][i].item() == pytest.approx(((an[i] - bn[i]) ** 2).mean())
        assert out["map_pearson"][i].item() == pytest.approx(np.corrcoef(an[i].ravel(), bn[i].ravel())[0, 1])
    assert torch.equal(out["unsuccessful"], (out["target_ssim"] < 0.6).double())
    same = map_metrics(t, t, t)
    assert torch.allclose(same["target_ssim"], torch.ones(3, dtype=torch.float64))
    assert same["unsuccessful"].sum() == 0 and same["map_mse"].sum() == 0


def test_map_metrics_iterate_the_registrys_pair_metrics() -> None:
    """The stability columns come from the metric registry: the same numbers; a new pair metric appears."""
    gen = torch.Generator().manual_seed(5)
    a, b = torch.rand(2, 12, 12, generator=gen), torch.rand(2, 12, 12, generator=gen)
    t = torch.zeros(2, 12, 12)
    t[:, :4, :4] = 1
    out = map_metrics(a, b, t)
    for key, fn in {"map_ssim": ssim, "map_mse": mse, "map_pearson": pearson}.items():
        assert torch.equal(out[key], fn(a, b))  # bit for bit what the stage computed by hand before

    def l1(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
        return (minmax(maps_a.double()) - minmax(maps_b.double())).abs().flatten(1).mean(dim=1)

    register_metric(MetricInfo("throwaway_l1", l1, False, "maps_pair", "mean absolute difference"))
    try:
        extra = map_metrics(a, b, t)
    finally:
        unregister_metric("throwaway_l1")
    assert torch.equal(extra["map_throwaway_l1"], l1(a, b))
    assert list(out) == [k for k in extra if k != "map_throwaway_l1"]


def test_peak_in_target_is_where_the_attacked_map_peaks() -> None:
    t = torch.zeros(3, 16, 16)
    t[:, :5, -5:] = 1
    m = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(4)) * 0.5
    m[0, 2, 13] = 1.0  # inside the square
    m[1, 10, 2] = 1.0  # outside
    m[2, 4, 11] = 1.0  # on its corner: inside
    peak = map_metrics(m, m, t)["peak_in_target"]
    assert peak.tolist() == [1.0, 0.0, 1.0] and peak.dtype == torch.float64
    tied = m.clone()
    tied[0, 10, 2] = tied[0, 12, 3] = 1.0  # argmax keeps (2, 13), inside; two of three maxima are outside
    tied[1, 0, 12] = tied[1, 1, 12] = 1.0  # and here two of three are inside
    assert map_metrics(tied, tied, t)["peak_in_target"].tolist() == [0.0, 1.0, 1.0]


def test_config_and_checks() -> None:
    assert load_config(profile="smoke").manipulation is not None
    assert load_config(profile="default").manipulation is not None
    with pytest.raises(ConfigError, match="manipulation.n_image"):
        validate_config({**load_config(profile="smoke").model_dump(), "manipulation": {"n_image": 3}})
    with pytest.raises(ConfigError, match="iterations"):
        _cfg(iterations=0)
    with pytest.raises(RobustXAIError, match="unknown manipulation method"):
        check_manipulation_config(_cfg(methods=["saliancy"]))
    with pytest.raises(RobustXAIError, match="Did you mean 'occlusion'"):
        check_manipulation_config(_cfg(evaluate=["oclusion"]))
    check_manipulation_config(_cfg(evaluate=["occlusion"]))
    with pytest.raises(ConfigError, match="unknown model"):
        check_manipulation_config(_cfg(models=["standrd"]))


def test_unit_kind_plans_and_runs(tmp_path: Path, tiny_model) -> None:
    cfg = _cfg(n_images=3, batch_size=2)
    data = AuditData(SyntheticFracture(16, size=32, seed=5), n_images=3, run_dir=tmp_path)
    assert len(data.subset) == 3
    units = [u for u in plan_units(cfg, data) if u.kind == "manipulation"]
    assert len(units) == len(cfg.models) * 2 * 2  # models × methods × shards of ≤ 2 images
    assert [u.indices for u in units[:2]] == [(0, 1), (2,)]
    only = [u for u in plan_units(_cfg(n_images=3, models=["attention"]), data) if u.kind == "manipulation"]
    assert {u.model for u in only} == {"attention"} and len(only) == 2
    unit = units[0]
    result = run_unit(unit, tiny_model, cfg, prepare_manipulation(unit, cfg, data))
    assert {r[1] for r in result.rows["metrics"]} == {f"manipulate:{unit.explainer}"}
    again = run_unit(unit, tiny_model, cfg, prepare_manipulation(unit, cfg, data))
    assert result.rows["metrics"] == again.rows["metrics"]  # pure: same unit, same rows


def test_report_section(tmp_path: Path, tiny_model, images, labels) -> None:
    cfg = _cfg()
    store = Store(tmp_path / "results.sqlite")
    for method in ("saliency", "gradcam"):
        rows, fig = manipulation_shard("tiny", tiny_model, cfg, method, _shard(images, labels))
        store.add_metrics(rows)
        store.add_figure_maps(fig)
    metrics = store.table("metrics")
    store.close()
    table = manipulation_table(metrics)
    assert list(table.columns) == COLUMNS
    own = table[table["method"] == table["attacked_via"]]
    assert set(own["method"]) == {"saliency", "gradcam"} and (own["n"] == 4).all()
    assert (own["prediction_unchanged"] == 1.0).all()
    sal = metrics[(metrics["condition"] == "manipulate:saliency") & (metrics["explainer"] == "saliency")]
    expected = sal[sal["metric"] == "target_ssim"]["value"].mean()
    assert own.set_index("method").at["saliency", "target_ssim"] == pytest.approx(expected)
    section = manipulation_section(tmp_path)
    assert section is not None and section["csv"].is_file()
    assert section["csv"].read_text().splitlines()[0] == ",".join(COLUMNS)
    assert section["table1"]["tiny"]["columns"] == ["", "gradcam", "saliency"]
    assert section["transfer"]["tiny"]["rows"][0][0] == "gradcam"
    figs = section["figures"]["tiny"]
    assert figs["grid"].is_file() and figs["boxplot"].is_file()


def test_report_section_without_rows(tmp_path: Path) -> None:
    Store(tmp_path / "results.sqlite").close()
    assert manipulation_section(tmp_path) is None
    with pytest.raises(RobustXAIError, match="no run store"):
        manipulation_section(tmp_path / "missing")
