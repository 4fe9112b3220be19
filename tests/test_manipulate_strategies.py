"""The manipulation attack's strategies: the SSIM objective, presets, the result object, flat keywords."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai._arrays import minmax
from robustxai.manipulate import PRESETS, Manipulate, Objective, create_manipulation, explained_class
from robustxai.manipulate._strategies import image_ssim
from robustxai.metrics import peak_in_region, ssim
from robustxai.metrics._similarity import ssim_per_image

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._arrays, robustxai.manipulate._strategies, robustxai.metrics._similarity"
)


# -- the SSIM objective (ssim_loss.py, map_loss / image_loss / ssim_floor / select) -----------------------
def test_torch_ssim_equals_skimage() -> None:
    from skimage.metrics import structural_similarity

    gen = torch.Generator().manual_seed(3)
    a = torch.rand(3, 20, 17, generator=gen, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(3, 20, 17, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ref = [structural_similarity(x.numpy(), y.numpy(), data_range=1.0) for x, y in zip(a, b, strict=True)]
    torch.testing.assert_close(
        ssim_per_image(a, b), torch.tensor(ref, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        ssim_per_image(a.float(), b.float()).double(), torch.tensor(ref), atol=1e-5, rtol=0
    )


def test_torch_ssim_is_differentiable_and_checks_shapes() -> None:
    gen = torch.Generator().manual_seed(4)
    a = torch.rand(2, 9, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 9, 9, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ssim_per_image(minmax(x), b), (a,))
    with pytest.raises(RobustXAIError, match="7×7"):
        ssim_per_image(torch.rand(1, 6, 9), torch.rand(1, 6, 9))
    with pytest.raises(RobustXAIError, match="B, H, W"):
        ssim_per_image(torch.rand(1, 9, 9), torch.rand(2, 9, 9))


def _target_ssim(
    model: nn.Module, method: str, images: torch.Tensor, adv: torch.Tensor, target: torch.Tensor
):
    cls = explained_class(model, images)
    maps = rx.create_explainer(method).explain(model, adv, target=cls).maps
    return ssim(target.expand_as(maps), maps)


def test_ssim_floor_and_real_selection(tiny_model, images, labels) -> None:
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    attack = create_manipulation(
        "manipulate",
        method="gradcam",
        iterations=8,
        lr=0.05,
        map_loss="ssim",
        image_loss="ssim",
        optimizer="sgd",
        ssim_floor=0.97,
        select="real",
        target_sigma=1.0,
    )
    adv = attack(tiny_model, images, labels, target_maps=target)
    assert not torch.equal(adv, images)
    assert bool((image_ssim(adv, images) >= 0.97).all())  # large steps, yet held to the floor
    torch.testing.assert_close(tiny_model(adv).argmax(1), tiny_model(images).argmax(1))
    # the selected iterate's real map is at least as close to the target as the clean image's
    before = _target_ssim(tiny_model, "gradcam", images, images, target)
    after = _target_ssim(tiny_model, "gradcam", images, adv, target)
    assert bool((after >= before - 1e-5).all())


def test_ssim_objective_weights_and_validation() -> None:
    from robustxai.manipulate import _strategies as strategies

    objective = Objective(map_loss="ssim", image_loss="ssim")
    assert objective.weights((64, 64)) == (1.0, strategies.SSIM_ALPHA_PRED, strategies.SSIM_ALPHA_IMAGE)
    assert Objective(map_loss="ssim", alpha_pred=2.0, alpha_image=3.0).weights((8, 8))[1:] == (2.0, 3.0)
    assert Objective().weights((64, 64)) == (*Objective().alphas((64, 64)), 1.0)  # the paper's loss
    for bad in (
        {"map_loss": "l1"},
        {"image_loss": "lpips"},
        {"optimizer": "lbfgs"},
        {"select": "best"},
        {"ssim_floor": 1.5},
        {"target_sigma": -1.0},
        {"alpha_image": -1.0},
    ):
        with pytest.raises(RobustXAIError):
            create_manipulation("manipulate", **bad)


def test_refinement_keeps_the_best_real_map(tiny_model, images, labels) -> None:
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    kw = {
        "method": "saliency",
        "iterations": 6,
        "lr": 0.05,
        "map_loss": "ssim",
        "image_loss": "ssim",
        "optimizer": "sgd",
        "ssim_floor": 0.97,
        "select": "real",
        "beta_start": 3.0,
    }
    plain = create_manipulation("manipulate", **kw)(tiny_model, images, labels, target_maps=target)
    refined = create_manipulation("manipulate", refine_iterations=4, refine_lr=0.5, **kw)(
        tiny_model, images, labels, target_maps=target
    )
    # the refinement starts from the best iterate and only replaces it by a better one
    before = _target_ssim(tiny_model, "saliency", images, plain, target)
    after = _target_ssim(tiny_model, "saliency", images, refined, target)
    assert bool((after >= before - 1e-5).all())
    torch.testing.assert_close(tiny_model(refined).argmax(1), tiny_model(images).argmax(1))
    for bad in ({"refine_iterations": -1}, {"refine_lr": 0.0}, {"refine_iterations": 3, "select": "last"}):
        with pytest.raises(RobustXAIError):
            create_manipulation("manipulate", **{"select": "real", **bad})


def test_ssim_map_loss_normalises_tiny_maps_exactly() -> None:
    # The attack's old min-max added 1e-12 to the span, so a map with a tiny spread never reached 1 and the
    # SSIM loss of a map equal to its target (up to scale) stayed above 0; metrics.minmax was right.
    target = torch.zeros(1, 9, 9)
    target[0, :3, :3] = 1.0
    maps = target * 1e-9
    assert float(minmax(maps).max()) == 1.0
    assert float(Objective(map_loss="ssim").map_term(maps, target / target.sum(), target)) == 0.0


def test_presets_hold_the_default_profiles_settings() -> None:
    old_profile_params = {  # default.toml's [manipulation] params before presets existed
        "map_loss": "ssim",
        "image_loss": "ssim",
        "alpha_image": 0.1,
        "optimizer": "sgd",
        "ssim_floor": 0.981,
        "select": "real",
        "target_sigma": 2.0,
        "refine_iterations": 100,
    }
    explicit = create_manipulation("manipulate", method="gradcam", **old_profile_params)
    assert create_manipulation("manipulate", method="gradcam", preset="ssim") == explicit
    assert create_manipulation("manipulate", preset="paper") == Manipulate()  # the class defaults
    override = create_manipulation("manipulate", preset="ssim", alpha_image=0.3)
    assert override.objective.alpha_image == 0.3 and override.selection.rule == "real"
    assert set(PRESETS) == {"paper", "ssim", "peak"}
    with pytest.raises(RobustXAIError, match="preset"):
        create_manipulation("manipulate", preset="fast")


def test_run_returns_the_calls_diagnostics(tiny_model, images, labels) -> None:
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    kw = {"method": "saliency", "iterations": 3, "lr": 0.05, "preset": "ssim", "refine_iterations": 0}
    attack = create_manipulation("manipulate", **kw)
    result = attack.run(tiny_model, images, labels, target_maps=target)
    assert torch.equal(result.images, attack(tiny_model, images, labels, target_maps=target))
    assert result.targets.shape == (4, 32, 32) and result.real_scores is not None
    cls = explained_class(tiny_model, images)
    real = rx.create_explainer("saliency").explain(tiny_model, result.images, target=cls).maps
    ok = torch.isfinite(result.real_scores)
    torch.testing.assert_close(
        result.real_scores[ok].double(), ssim(result.targets, real)[ok], atol=1e-5, rtol=0
    )
    assert not hasattr(attack, "last_scores")  # nothing per call is kept on the attack
    plain = create_manipulation("manipulate", iterations=2).run(tiny_model, images, labels)
    assert plain.real_scores is None


@pytest.mark.parametrize(
    "bad",
    [
        {"lr": "fast"},
        {"target_sigma": float("nan")},
        {"keep_prediction": "no"},
        {"alpha_image": True},
        {"cam_layer": 3},
        {"preset": ["ssim"]},
        {"select": ["real"]},
        {"beta_start": "3"},
    ],
)
def test_flat_keywords_reject_hostile_values_with_one_line(bad) -> None:
    with pytest.raises(RobustXAIError):  # never a ValueError / TypeError traceback from float() or `in`
        create_manipulation("manipulate", **bad)


# -- the peak term and the "peak" selection (issue 15: the map's maximum inside the target) --------------
def test_peak_term_pushes_the_maximum_into_the_target() -> None:
    inside = torch.zeros(2, 8, 8, dtype=torch.bool)
    inside[:, :2, :2] = True
    maps = torch.zeros(2, 8, 8)
    maps[0, 0, 0], maps[0, 6, 6] = 1.0, 0.2  # peak inside, well above the margin
    maps[1, 0, 0], maps[1, 6, 6] = 0.2, 1.0  # peak outside
    objective = Objective(map_loss="ssim", alpha_peak=1.0)
    per = [objective.peak_term(maps[i : i + 1], inside[i : i + 1]).item() for i in range(2)]
    assert per[0] < 0.01 and per[1] == pytest.approx(0.9, abs=0.02)  # ≈ relu(out − in + margin)
    x = maps.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective.peak_term(x, inside), x)
    assert grad[1, 6, 6] > 0 > grad[1, 0, 0]  # lowers the outside peak, raises the inside one
    with pytest.raises(RobustXAIError):
        create_manipulation("manipulate", alpha_peak=-1.0)


def test_peak_selection_prefers_maps_that_peak_in_the_target(tiny_model, images, labels) -> None:
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    kw = {"method": "saliency", "iterations": 4, "lr": 0.05, "preset": "ssim", "refine_iterations": 0}
    result = create_manipulation("manipulate", select="peak", alpha_peak=1.0, **kw).run(
        tiny_model, images, labels, target_maps=target
    )
    assert result.real_scores is not None
    cls = explained_class(tiny_model, images)
    real = rx.create_explainer("saliency").explain(tiny_model, result.images, target=cls).maps
    peak = peak_in_region(real, target > 0.5)
    ok = torch.isfinite(result.real_scores)
    expected = ssim(result.targets, real) + peak.double()  # SSIM, + 1 where the peak is inside
    torch.testing.assert_close(result.real_scores[ok].double(), expected[ok], atol=1e-5, rtol=0)
