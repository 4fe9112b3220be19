"""The manipulation attack's descent does no model pass twice (issue 16: the default audit's speed)."""

from __future__ import annotations

import pytest
import torch

from robustxai.manipulate import _search as search_module, create_manipulation

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.manipulate._search"

SETTINGS = {
    "method": "gradcam",
    "lr": 0.05,
    "map_loss": "ssim",
    "image_loss": "ssim",
    "optimizer": "sgd",
    "ssim_floor": 0.97,
    "select": "real",
    "target_sigma": 1.0,
}


def _target() -> torch.Tensor:
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    return target


def _real_forwards(model, images, labels, iterations: int) -> int:
    """Forward passes of the real model (not its Softplus copy) in one attack call of ``iterations`` steps."""
    calls = [0]

    def count(module, _inputs, _output) -> None:
        if module is model:  # the surrogate is a deep copy: its hook (this function) sees itself
            calls[0] += 1

    handle = model.register_forward_hook(count)
    try:
        create_manipulation("manipulate", iterations=iterations, **SETTINGS)(
            model, images, labels, target_maps=_target()
        )
    finally:
        handle.remove()
    return calls[0]


def test_each_step_runs_the_real_model_twice(tiny_model, images, labels) -> None:
    # per step: the logits of the loss (which also decide whether the prediction held) and the real map
    extra = _real_forwards(tiny_model, images, labels, 8) - _real_forwards(tiny_model, images, labels, 4)
    assert extra == 4 * 2


def test_reused_logits_give_the_same_images(tiny_model, images, labels, monkeypatch) -> None:
    attack = create_manipulation("manipulate", iterations=6, **SETTINGS)
    reused = attack(tiny_model, images, labels, target_maps=_target())
    fresh_score = search_module.accepted_score

    def recompute(p, adv, logits=None):  # the forward pass computed again, as before
        return fresh_score(p, adv, None)

    monkeypatch.setattr(search_module, "accepted_score", recompute)
    again = attack(tiny_model, images, labels, target_maps=_target())
    assert torch.equal(reused, again)


@pytest.mark.parametrize("select", ["last", "real"])
def test_selection_rules_still_keep_the_prediction(tiny_model, images, labels, select) -> None:
    settings = {**SETTINGS, "select": select}
    adv = create_manipulation("manipulate", iterations=4, **settings)(
        tiny_model, images, labels, target_maps=_target()
    )
    with torch.no_grad():
        assert torch.equal(tiny_model(adv).argmax(1), tiny_model(images).argmax(1))
