"""Per-model batch size ("auto" rule, planning, invariance) and the channels_last layout (issue 16 item 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai import ConfigError
from robustxai.audit._batching import (
    auto_batch,
    choose_batch,
    explain_rows,
    is_convolutional,
    model_batch,
    settle_models,
    timing_spec,
)
from robustxai.audit._config import AuditConfig, profile_dict, validate_config
from robustxai.audit._passes import unit_work
from robustxai.audit._plan import AuditData, plan_units
from robustxai.audit._stages_eval import ExplainShard, explanation_shard, robustness_shard
from robustxai.audit._timing import PassTime, TimingCache
from robustxai.data import SyntheticFracture

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._batching, robustxai.audit._config, robustxai.audit._passes, "
    "robustxai.audit._plan, robustxai.audit._stages_eval, robustxai.audit._timing"
)

MiB = 1 << 20


def _config(models: list[dict[str, Any]] | None = None, **top: Any) -> AuditConfig:
    raw = profile_dict("smoke")
    raw["models"] = models or [{"name": "a"}]
    raw["attacks"] = [{"name": "pgd", "epsilons": [4 / 255], "params": {"steps": 2, "random_start": False}}]
    raw["explain"].update(methods=["saliency", "integrated_gradients", "gradcam"], n_images=6, batch_size=4)
    raw["explain"]["params"] = {"integrated_gradients": {"n_steps": 4}}
    raw["batch_size"] = 8
    return validate_config({**raw, **top})


def _times(per_image_ms: dict[int, float], act_mib: float = 10.0, param_mib: float = 1.0) -> list[PassTime]:
    """A fake timing table: per-image forward+backward ms at each batch, activations per image."""
    return [
        PassTime(b, ms * b / 2000, ms * b / 1000, None, int(act_mib * MiB * b), int(param_mib * MiB))
        for b, ms in per_image_ms.items()
    ]


def test_auto_rule_on_a_fake_timing_table() -> None:
    table = _times({1: 10.0, 2: 6.0, 4: 5.0, 8: 4.9, 16: 4.0})
    # 2 and 4 cut the per-image time by ≥ 5 %, 8 by 2 % only: 4 (16 is never reached)
    assert choose_batch(table, free_bytes=64 << 30, cap=64) == 4
    assert choose_batch(table, free_bytes=64 << 30, cap=2) == 2  # the audit's batch size caps it
    # 10 MiB per image, 1 MiB of parameters, 25 % of 100 MiB free: 2 rows fit (21 MiB), 4 do not (41 MiB)
    assert choose_batch(table, free_bytes=100 * MiB, cap=64) == 2
    assert choose_batch(table, free_bytes=10 * MiB, cap=64) == 1
    assert choose_batch(_times({1: 10.0, 2: 9.8}), free_bytes=64 << 30, cap=64) == 1  # no gain: stay at 1


def test_auto_measures_only_as_far_as_it_goes() -> None:
    table = {t.batch: t for t in _times({1: 10.0, 2: 6.0, 4: 5.0, 8: 4.9, 16: 4.0, 32: 3.0})}
    asked: list[int] = []

    def get(b: int) -> PassTime:
        asked.append(b)
        return table[b]

    assert auto_batch(get, 64 << 30, 64)[0] == 4
    assert asked == [1, 2, 4, 8]
    asked.clear()
    assert auto_batch(get, 100 * MiB, 64)[0] == 2 and asked == [1, 2]  # 4 rows would not fit: not timed


def test_config_batch_size_and_layout() -> None:
    cfg = _config([{"name": "a", "batch_size": 4}, {"name": "b"}, {"name": "c", "batch_size": "auto"}])
    assert [m.batch_size for m in cfg.models] == [4, None, "auto"]
    assert model_batch(cfg, "a") == 4 and model_batch(cfg, "b") == 8
    assert explain_rows(cfg, "a") == 4 and explain_rows(cfg, "b") is None
    with pytest.raises(ConfigError, match="must be resolved"):
        model_batch(cfg, "c")
    for bad in (0, -2, "big", 2.5, True, "8", 8.0, "Auto"):
        with pytest.raises(ConfigError, match="batch_size"):
            _config([{"name": "a", "batch_size": bad}])
    refused = r"^[^\n]*models\.0\.channels_last: Input should be a valid boolean or 'auto', got [^\n]*$"
    for bad_layout in ("always", "yes", "true", "no", 1, 0, "AUTO", None):  # "yes" was read as true
        with pytest.raises(ConfigError, match=refused):
            _config([{"name": "a", "channels_last": bad_layout}])
    for good in (True, False, "auto"):
        assert _config([{"name": "a", "channels_last": good}]).models[0].channels_last == good
    assert profile_dict("default")["models"][0].get("batch_size") is None  # defaults: the audit's batch


def test_a_models_batch_size_shards_its_units() -> None:
    cfg = _config([{"name": "a"}, {"name": "b", "batch_size": 2}])
    data = AuditData(SyntheticFracture(20, size=32, seed=1), 6, __import__("pathlib").Path("."))
    units = plan_units(cfg, data)
    rob = [u for u in units if u.kind == "robustness"]
    assert {len(u.indices) for u in rob if u.model == "a"} == {20}  # 4 × 8 rows
    assert {len(u.indices) for u in rob if u.model == "b"} == {8, 4}  # 4 × 2 rows
    firsts = [u.indices[0] for u in rob]
    assert firsts == sorted(firsts)  # shard-major: consecutive units read the same images
    expl = [u for u in units if u.kind == "explanation" and u.model == "b" and u.explainer == "saliency"]
    assert all(d.startswith("robustness/b/") for u in expl for d in u.deps)
    shape = (1, 32, 32)
    work = unit_work(next(u for u in rob if u.model == "b" and u.condition != ("clean", 0.0)), cfg, shape)
    assert {w.rows for w in work} == {2}  # the plan counts passes of the model's own batch
    ig = next(u for u in units if u.model == "b" and u.explainer == "integrated_gradients")
    assert max(w.rows for w in unit_work(ig, cfg, shape)) == 2  # and caps the explainer's rows per pass


def _shard_numbers(model: rx.ModelWrapper, cfg: AuditConfig, images: torch.Tensor) -> dict[str, Any]:
    labels = torch.tensor([i % 2 for i in range(len(images))])
    ids = [f"s{i}" for i in range(len(images))]
    torch.manual_seed(0)
    rows, adv, _ = robustness_shard("a", model, cfg, ("pgd", 4 / 255), images, labels, ids)
    shard = ExplainShard(ids, {("clean", 0.0): images, ("pgd", 4 / 255): adv}, images[:, 0] > 0.5, [], 0)
    shard.points = [np.zeros((0, 2)) for _ in ids]
    out: dict[str, Any] = {"pred": [r[5] for r in rows], "adv": adv}
    for method in ("saliency", "integrated_gradients", "gradcam"):
        metric_rows, _, _ = explanation_shard("a", model, cfg, method, shard, set())
        out[method] = np.array([r[-1] for r in metric_rows])
    return out


def test_batch_size_and_layout_change_no_number(tiny_model: rx.ModelWrapper) -> None:
    images = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = _shard_numbers(tiny_model, _config(), images)
    for models in ([{"name": "a", "batch_size": 3}], [{"name": "a", "batch_size": 1}]):
        got = _shard_numbers(tiny_model, _config(models), images)
        assert got["pred"] == ref["pred"]
        torch.testing.assert_close(got["adv"], ref["adv"], rtol=0, atol=1e-6)
        for method in ("saliency", "integrated_gradients", "gradcam"):
            np.testing.assert_allclose(got[method], ref[method], rtol=1e-4, atol=1e-5, equal_nan=True)
    cfg = _config([{"name": "a", "channels_last": True}])
    settled, lines = settle_models(cfg, {"a": tiny_model}, (1, 32, 32), TimingCache(None))
    assert settled.models[0].channels_last is True and "channels_last" in lines[0]
    conv = next(m for m in tiny_model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    got = _shard_numbers(tiny_model, cfg, images)
    assert got["pred"] == ref["pred"]
    for method in ("saliency", "integrated_gradients", "gradcam"):
        np.testing.assert_allclose(got[method], ref[method], rtol=1e-4, atol=1e-5, equal_nan=True)


def test_channels_last_never_converts_a_transformer(tiny_model: rx.ModelWrapper) -> None:
    timm = pytest.importorskip("timm")
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=16, num_heads=2
    )
    assert is_convolutional(tiny_model) and not is_convolutional(vit)
    cfg = _config([{"name": "a", "channels_last": True}])
    settled, lines = settle_models(cfg, {"a": vit}, (3, 32, 32), TimingCache(None))
    assert settled.models[0].channels_last is False and "ignored" in lines[0]
    assert vit.patch_embed.proj.weight.is_contiguous()  # still the default layout


def test_auto_settles_an_int_and_says_why(tiny_model: rx.ModelWrapper) -> None:
    cfg = _config([{"name": "a", "batch_size": "auto", "channels_last": "auto"}], batch_size=4)
    timing = TimingCache(None)
    settled, lines = settle_models(cfg, {"a": tiny_model}, (1, 32, 32), timing)
    chosen = settled.models[0].batch_size
    assert isinstance(chosen, int) and 1 <= chosen <= 4
    assert any(f"batch size {chosen} (auto" in line and "GiB free" in line for line in lines)
    layout = settled.models[0].channels_last
    assert isinstance(layout, bool) and any("memory layout (auto:" in line for line in lines)
    assert (timing_spec(settled, "a", (1, 32, 32))[-1] == "channels_last") == layout
    measured = timing.measured
    again, _ = settle_models(cfg, {"a": tiny_model}, (1, 32, 32), timing)
    assert timing.measured == measured and again.models[0] == settled.models[0]  # cached: nothing re-timed
    kept, lines = settle_models(cfg, {"a": tiny_model}, (1, 32, 32), timing, earlier={"a": 3})
    assert kept.models[0].batch_size == 3 and "resumed" in lines[-1]


def test_a_cpu_pass_never_budgets_more_than_its_cap() -> None:
    from robustxai.audit._batching import AUTO_CPU_PASS_BYTES, pass_budget

    assert pass_budget(64 << 30, "cpu") == AUTO_CPU_PASS_BYTES  # 16 GiB would be 25 % of it
    assert pass_budget(1 << 30, "cpu") == 0.25 * (1 << 30)  # a small machine: the fraction decides
    assert pass_budget(64 << 30, "cuda") == 0.25 * (64 << 30)  # a GPU's own free memory decides
    # a 224-px backbone saving 82 MiB per image: the probe stops before 8 rows on a CPU
    table = {
        b: PassTime(b, 0.1 * b, 0.3 * b / (1 + b / 8), None, b * 82 * MiB, 90 * MiB) for b in (1, 2, 4, 8)
    }
    asked: list[int] = []

    def get(b: int) -> PassTime:
        asked.append(b)
        return table[b]

    batch, _ = auto_batch(get, 64 << 30, 64, pass_budget(64 << 30, "cpu"))
    assert batch == 4 and asked == [1, 2, 4]
