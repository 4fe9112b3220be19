"""XRAI in the manipulation attack: steered through the IG map it segments, scored on its real map."""

from __future__ import annotations

import numpy as np
import torch

import robustxai as rx
from robustxai.audit import load_config, validate_config
from robustxai.audit._stages_manip import IMAGE_EXPLAINER, ManipulationShard, manipulation_shard
from robustxai.explain._xrai import xrai_regions
from robustxai.manipulate import SoftplusSurrogate, create_manipulation, explained_class
from robustxai.metrics import ssim

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._stages_manip, robustxai.explain._xrai"


def test_xrai_attack_map_is_igs_with_xrais_settings(tiny_model, images) -> None:
    cls = explained_class(tiny_model, images)
    xrai = rx.create_explainer("xrai", n_steps=5, baseline="mean")
    ig = rx.create_explainer("integrated_gradients", n_steps=5, baseline="mean", reduction="max")
    for net in (tiny_model, SoftplusSurrogate(tiny_model, 10.0)):
        ours = xrai.map_for_attack(net, images, cls, create_graph=False)
        assert torch.equal(ours, ig.map_for_attack(net, images, cls, create_graph=False))
    # and it is the very map XRAI segments into its regions
    attr = xrai.map_for_attack(tiny_model, images, cls, create_graph=False)
    p = xrai.pixel_parameters(32, 32)
    value, _ = xrai_regions(attr, xrai.segment(images), int(p["min_pixel_diff"]), xrai.area_threshold)
    np.testing.assert_allclose(
        xrai.explain(tiny_model, images, target=cls).maps.numpy(), value.numpy(), rtol=1e-6
    )


def test_attack_on_xrai_uses_the_attacks_ig_steps() -> None:
    attack = create_manipulation("manipulate", method="xrai", ig_steps=3)
    assert attack.explainer.n_steps == 3  # type: ignore[attr-defined]
    assert attack.passes(2, 8, 8) == create_manipulation(
        "manipulate", method="integrated_gradients", ig_steps=3
    ).passes(2, 8, 8)


def test_stage_scores_the_real_xrai_map(tiny_model, images, labels) -> None:
    raw = load_config(profile="smoke").model_dump()
    raw["manipulation"] = {
        "methods": ["xrai"],
        "transfer_from": [],
        "n_images": 4,
        "iterations": 3,
        "lr": 0.05,
        "batch_size": 4,
        "params": {"ig_steps": 2},
    }
    cfg = validate_config(raw)
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    points = [np.zeros((0, 2))] * 4
    shard = ManipulationShard([f"s{i}" for i in range(4)], images, labels, masks, points, 4)
    rows, fig = manipulation_shard("m", tiny_model, cfg, "xrai", shard)
    adv = torch.stack(
        [torch.as_tensor(m) for _, c, _, x, _, m in fig if c == "manipulate:xrai" and x == IMAGE_EXPLAINER]
    )[:, None]
    assert not torch.equal(adv, images)
    cls = explained_class(tiny_model, images)
    xrai = rx.create_explainer("xrai", **cfg.explain.params.get("xrai", {}))
    real = xrai.explain(tiny_model, adv, target=cls).maps
    stored = np.stack([m for _, c, _, x, _, m in fig if c == "manipulate:xrai" and x == "xrai"])
    np.testing.assert_allclose(stored, real.numpy(), rtol=1e-5, atol=1e-9)
    ig_map = create_manipulation("manipulate", method="xrai").explainer.map_for_attack(
        tiny_model, adv, cls, create_graph=False
    )
    assert not np.allclose(stored, ig_map.numpy())  # the region map, not the IG map it segments
    targets = torch.as_tensor(np.stack([m for _, c, _, x, _, m in fig if x == "target"]))
    target_ssim = [r[6] for r in rows if r[3] == "xrai" and r[4] == "target_ssim"]
    np.testing.assert_allclose(target_ssim, ssim(targets, real).numpy(), rtol=1e-6)
