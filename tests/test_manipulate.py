"""The explanation-manipulation attack: differentiable maps, softplus surrogate, targets, the attack."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam, InputXGradient
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.explain._differentiable import differentiable_methods
from robustxai.manipulate import (
    Manipulate,
    create_manipulation,
    default_target,
    explained_class,
    list_manipulations,
)
from robustxai.manipulate._softplus import SmoothReLU, SoftplusSurrogate, _GuidedSoftplus, beta_schedule
from robustxai.metrics import ssim

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.explain._differentiable, robustxai.manipulate._softplus, "
    "robustxai.manipulate._strategies"
)

SRC = Path(__file__).resolve().parents[1] / "src" / "robustxai"


@pytest.fixture(params=["smallcnn", "smallcnn-attention"])
def relu_model(request: pytest.FixtureRequest) -> rx.ModelWrapper:
    torch.manual_seed(0)
    return rx.create_model(request.param, widths=(4, 8, 8, 8)).eval()


def _attack_map(method: str, net, images, cls, **params) -> torch.Tensor:
    explainer = rx.create_explainer(method, **params)
    return explainer.map_for_attack(net, images, cls, create_graph=False)


# -- the differentiable maps are the registered explainers' own (one implementation per method) -------------
def test_every_gradient_method_offers_a_differentiable_map() -> None:
    assert differentiable_methods() == [
        "gradcam",
        "guided_gradcam",
        "input_x_gradient",
        "integrated_gradients",
        "saliency",
        "smoothgrad",
        "xrai",
    ]


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("saliency", {}),
        ("input_x_gradient", {}),
        ("integrated_gradients", {"n_steps": 5}),
        ("smoothgrad", {"n_samples": 3, "noise": 0.1, "seed": 2}),
        ("gradcam", {}),
    ],
)
def test_differentiable_map_equals_the_explainer(method, params, relu_model, images) -> None:
    # IG and SmoothGrad used to have a second implementation in the attack (midpoint mean, its own noise)
    # that agreed only to rounding / in distribution; now the attack differentiates the explainer itself.
    cls = explained_class(relu_model, images)
    ours = _attack_map(method, relu_model, images, cls, **params)
    ref = rx.create_explainer(method, **params).explain(relu_model, images, target=cls).maps
    assert torch.equal(ours, ref) if method != "gradcam" else torch.allclose(ours, ref, atol=1e-6)


def test_input_x_gradient_equals_captum(relu_model, images) -> None:
    cls = explained_class(relu_model, images)
    ours = _attack_map("input_x_gradient", relu_model, images, cls)
    ref = InputXGradient(relu_model).attribute(images.clone().requires_grad_(True), target=cls)
    torch.testing.assert_close(ours, ref.abs().amax(dim=1))


def test_guided_gradcam_of_sharp_surrogate_equals_captum(tiny_model, images) -> None:
    cls = explained_class(tiny_model, images)
    sur = SoftplusSurrogate(tiny_model, beta=1e5)
    ours = _attack_map("guided_gradcam", sur, images, cls)
    with warnings.catch_warnings():  # Captum warns that it hooks the ReLUs
        warnings.simplefilter("ignore", UserWarning)
        ref = GuidedGradCam(tiny_model, tiny_model.get_cam_layer()).attribute(
            images, target=cls, interpolate_mode="bilinear"
        )
    tol = 5e-3 * float(ref.detach().abs().max())  # Softplus(1e5) vs ReLU near zero pre-activations
    torch.testing.assert_close(ours, ref.abs().amax(dim=1), atol=tol, rtol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        registry = rx.create_explainer("guided_gradcam").explain(tiny_model, images, target=cls).maps
    torch.testing.assert_close(ours, registry, atol=tol, rtol=1e-3)


def test_guided_gradcam_needs_a_surrogate(tiny_model, images) -> None:
    cls = explained_class(tiny_model, images)
    with pytest.raises(RobustXAIError, match="SoftplusSurrogate"):
        _attack_map("guided_gradcam", tiny_model, images, cls)
    with pytest.raises(RobustXAIError, match="unknown manipulation method"):
        create_manipulation("manipulate", method="occlusion")  # no differentiable map


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad", "gradcam", "xrai"])
def test_maps_stay_on_the_graph(method, tiny_model, images) -> None:
    sur = SoftplusSurrogate(tiny_model, beta=10.0)
    x = images.clone().requires_grad_(True)
    cls = explained_class(tiny_model, images)
    maps = rx.create_explainer(method).map_for_attack(sur, x, cls)
    (grad,) = torch.autograd.grad(maps.sum(), x)
    assert grad.abs().sum() > 0  # a second derivative exists for the smooth surrogate


def test_no_upward_imports_around_manipulate() -> None:
    """attacks/ and explain/ sit above manipulate/ in DESIGN.md's layer order; neither may import it."""

    def imported(folder: str) -> set[str]:
        names: set[str] = set()
        for path in (SRC / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module)
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
        return names

    for folder, banned in (("attacks", ("manipulate", "explain")), ("explain", ("manipulate",))):
        bad = {m for m in imported(folder) if any(m.startswith(f"robustxai.{b}") for b in banned)}
        assert not bad, f"{folder}/ imports {bad}"


# -- the surrogate ---------------------------------------------------------------------------------------
def test_surrogate_leaves_model_untouched(relu_model, images) -> None:
    before = {k: v.clone() for k, v in relu_model.state_dict().items()}
    out = relu_model(images)
    sur = SoftplusSurrogate(relu_model, beta=10.0)
    assert sur(images).shape == out.shape
    assert any(isinstance(m, SmoothReLU) for m in sur.model.modules())
    assert not any(isinstance(m, SmoothReLU) for m in relu_model.modules())
    assert all(p.requires_grad for p in relu_model.parameters())
    for k, v in relu_model.state_dict().items():
        assert torch.equal(v, before[k])
    torch.testing.assert_close(relu_model(images), out)
    assert F.relu(torch.tensor([-1.0])).item() == 0.0  # nothing global stays patched


def test_surrogate_approaches_relu_model_and_smooths_functional_relu(tiny_attention_model, images) -> None:
    ref = tiny_attention_model(images)
    soft = SoftplusSurrogate(tiny_attention_model, beta=1.0)
    sharp = SoftplusSurrogate(tiny_attention_model, beta=1e5)
    assert (soft(images) - ref).abs().max() > 1e-3
    torch.testing.assert_close(sharp(images), ref, atol=1e-4, rtol=1e-4)

    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x) + torch.relu(x) + x.relu()

    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(SoftplusSurrogate(Functional(), beta=3.0)(x), 3 * F.softplus(x, beta=3.0))


def test_the_built_in_cnns_run_without_the_function_mode_and_give_the_same_numbers(images) -> None:
    from robustxai.manipulate import _softplus

    seen = []
    real = _softplus._SoftplusMode.__torch_function__

    def spy(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        seen.append(func)
        return real(self, func, types, args, kwargs)

    for arch in ("smallcnn", "smallcnn-attention"):
        torch.manual_seed(0)
        model = rx.create_model(arch, widths=[4, 8, 8, 8]).eval()
        sur = SoftplusSurrogate(model, beta=5.0)
        assert not sur._mode  # only modules that call no functional ReLU
        x = images.clone().requires_grad_(True)
        (fast,) = torch.autograd.grad(sur(x).sum(), x, create_graph=True)
        sur._mode = True  # the reference: every call through the function mode
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_softplus._SoftplusMode, "__torch_function__", spy)
            (moded,) = torch.autograd.grad(sur(x).sum(), x, create_graph=True)
        assert seen  # the reference did go through the mode
        assert torch.equal(fast, moded)

    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x)

    hooked = rx.create_model("smallcnn", widths=[4, 8, 8, 8]).eval()
    hooked.net.head.register_forward_hook(lambda m, a, out: F.relu(out))  # a hook may call F.relu
    wrapped = nn.Sequential(rx.create_model("smallcnn", widths=[4, 8, 8, 8]), Functional())
    for model in (hooked, wrapped, Functional()):
        assert SoftplusSurrogate(model, beta=5.0)._mode


def test_guided_softplus_backward_rule_and_double_backward() -> None:
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    g = torch.randn(20, dtype=torch.float64)
    (grad,) = torch.autograd.grad(_GuidedSoftplus.apply(x, 4.0), x, g)
    torch.testing.assert_close(grad, g.clamp(min=0) * torch.sigmoid(4.0 * x))
    assert torch.autograd.gradgradcheck(lambda t: _GuidedSoftplus.apply(t, 4.0), (x,))


def test_beta_schedule() -> None:
    geo = beta_schedule(10, 100, 3)
    assert geo == pytest.approx([10, 10**1.5, 100])
    assert beta_schedule(10, 100, 3, "linear") == pytest.approx([10, 55, 100])
    assert beta_schedule(5, 50, 1) == [5.0]
    with pytest.raises(RobustXAIError, match="beta_start"):
        beta_schedule(100, 10, 3)
    with pytest.raises(RobustXAIError, match="geometric"):
        beta_schedule(1, 10, 3, "cubic")
    with pytest.raises(RobustXAIError, match="> 0"):
        SoftplusSurrogate(nn.ReLU(), beta=0.0)


# -- targets ---------------------------------------------------------------------------------------------
def test_default_target_is_the_farthest_corner() -> None:
    mask = np.zeros((32, 32), dtype=bool)
    mask[2:6, 24:30] = True  # top-right finding → bottom-left target
    t = default_target(mask, (32, 32), 8)
    assert t.sum() == 64 and t[24:, :8].all()
    t_pts = default_target(np.array([[30.0, 29.0]]), (32, 32), 8)  # (x, y) bottom-right → top-left
    assert t_pts[:8, :8].all() and t_pts.sum() == 64
    t_none = default_target(None, (32, 40), 10)
    assert t_none[:10, 30:].all() and t_none.sum() == 100  # top-right, as in the paper


def test_default_target_errors() -> None:
    with pytest.raises(RobustXAIError, match="target size"):
        default_target(None, (32, 32), 0)
    with pytest.raises(RobustXAIError, match="mask must have shape"):
        default_target(np.zeros((8, 8), dtype=bool), (32, 32), 8)
    with pytest.raises(RobustXAIError, match=r"points \[N, 2\]"):
        default_target(np.zeros((3, 3)), (32, 32), 8)


# -- the attack ------------------------------------------------------------------------------------------
def _mass_in(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (maps * target).sum(dim=(1, 2)) / maps.sum(dim=(1, 2)).clamp_min(1e-30)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_attack_moves_relu_map_towards_target_and_keeps_prediction(
    method, tiny_model, images, labels
) -> None:
    attack = create_manipulation("manipulate", method=method, eps=16 / 255, iterations=20, lr=4e-3)
    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0
    adv = attack(tiny_model, images, labels, target_maps=target)
    cls = explained_class(tiny_model, images)
    explainer = rx.create_explainer(method)
    before, after = (
        explainer.explain(tiny_model, images, target=cls).maps,
        explainer.explain(tiny_model, adv, target=cls).maps,
    )
    # The real (ReLU) model's map moves into the target: more of its mass there, and more similar to it.
    assert _mass_in(after, target).mean() > 1.5 * _mass_in(before, target).mean()
    assert ssim(target.expand(4, 32, 32), after).mean() > ssim(target.expand(4, 32, 32), before).mean()
    torch.testing.assert_close(tiny_model(adv).argmax(1), tiny_model(images).argmax(1))
    assert (adv - images).abs().max() <= 16 / 255 + 1e-6


def test_attack_does_not_touch_the_model(tiny_model, images, labels) -> None:
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    create_manipulation("manipulate", method="guided_gradcam", iterations=2)(tiny_model, images, labels)
    assert all(p.grad is None for p in tiny_model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    assert not any(isinstance(m, SmoothReLU) for m in tiny_model.modules())


@pytest.mark.parametrize(
    "method", ["input_x_gradient", "integrated_gradients", "smoothgrad", "guided_gradcam", "xrai"]
)
def test_every_method_runs_and_changes_the_image(method, tiny_model, images, labels) -> None:
    attack = create_manipulation("manipulate", method=method, iterations=3, ig_steps=2, sg_samples=2)
    adv = attack(tiny_model, images, labels)
    assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, images)


def test_unbounded_eps_and_params(tiny_model, images, labels) -> None:
    attack = create_manipulation("manipulate", iterations=5, lr=0.05, keep_prediction=False)
    assert attack.params()["eps"] is None and attack.eps == 1.0
    adv = attack(tiny_model, images, labels)
    assert (adv - images).abs().max() > 0.05  # not held to a small ball
    assert adv.min() >= 0 and adv.max() <= 1


def test_alpha_scaling_with_image_size() -> None:
    objective = Manipulate().objective
    a512 = objective.alphas((512, 512))
    assert a512 == pytest.approx((1e14 * attack_gain()[0], 1e3 * attack_gain()[1]))
    a64 = objective.alphas((64, 64))
    assert a64[0] == pytest.approx(a512[0] / 64**2) and a64[1] == pytest.approx(a512[1] / 64)
    made = create_manipulation("manipulate", alpha_map=5.0, alpha_pred=2.0)
    assert made.objective.alphas((64, 64)) == (5.0, 2.0)


def attack_gain() -> tuple[float, float]:
    from robustxai.manipulate import _strategies as strategies

    return strategies.MAP_GAIN, strategies.PRED_GAIN


def test_attack_errors(tiny_model, images, labels) -> None:
    with pytest.raises(RobustXAIError, match="unknown manipulation method"):
        create_manipulation("manipulate", method="saliancy")
    with pytest.raises(RobustXAIError, match="iterations"):
        create_manipulation("manipulate", iterations=0)
    with pytest.raises(RobustXAIError, match="iterations"):
        create_manipulation("manipulate", iterations=2.7)  # used to become 2 silently
    with pytest.raises(RobustXAIError, match="target_size"):
        create_manipulation("manipulate", target_size=1.5)
    with pytest.raises(RobustXAIError, match="beta_start"):
        create_manipulation("manipulate", beta_start=100, beta_end=10)
    attack = create_manipulation("manipulate", iterations=1)
    with pytest.raises(RobustXAIError, match="target_maps must have shape"):
        attack(tiny_model, images, labels, target_maps=torch.ones(4, 16, 16))
    with pytest.raises(RobustXAIError, match="non-negative"):
        attack(tiny_model, images, labels, target_maps=-torch.ones(4, 32, 32))
    with pytest.raises(RobustXAIError, match="one entry per image"):
        attack(tiny_model, images, labels, truths=[None])
    with pytest.raises(RobustXAIError, match="labels"):
        attack(tiny_model, images, labels.float())


# -- the data contract every attack keeps (manipulation lives in its own registry) ---------------------------
def test_registry_and_unknown_names() -> None:
    assert list_manipulations() == ["manipulate"]
    assert "manipulate" not in rx.list_attacks()  # not an evasion attack: sweeps would misread it
    with pytest.raises(RobustXAIError, match="Did you mean 'manipulate'"):
        create_manipulation("manipulat")
    with pytest.raises(RobustXAIError, match="unknown keyword"):
        create_manipulation("manipulate", steps=3)


@pytest.mark.parametrize("eps", [0.0, 2 / 255, 0.3])
def test_stays_in_eps_ball_and_unit_range(eps, tiny_model, images, labels) -> None:
    attack = create_manipulation("manipulate", eps=eps, iterations=4, lr=0.05, keep_prediction=False)
    adv = attack(tiny_model, images, labels)
    assert adv.shape == images.shape and adv.dtype == images.dtype and not adv.requires_grad
    assert (adv - images).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    edges = torch.zeros(4, 1, 32, 32)
    edges[2:] = 1.0
    out = attack(tiny_model, edges, labels)
    assert out.min() >= 0 and out.max() <= 1


def test_rejects_bad_input(tiny_model, images, labels) -> None:
    attack = create_manipulation("manipulate", iterations=1)
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        attack(tiny_model, images * 3 - 1, labels)
    with pytest.raises(RobustXAIError, match="shape"):
        attack(tiny_model, images[0], labels)
    with pytest.raises(RobustXAIError, match="labels"):
        attack(tiny_model, images, labels[:2])
    with pytest.raises(RobustXAIError, match="≥ 0"):
        create_manipulation("manipulate", eps=-0.01)


@pytest.mark.slow
def test_smooth_perturbation_is_blurred_and_bounded(tiny_model, images, labels) -> None:
    kw = {"iterations": 4, "lr": 0.05, "eps": 8 / 255, "keep_prediction": False}
    sharp = create_manipulation("manipulate", **kw)(tiny_model, images, labels) - images
    smooth = create_manipulation("manipulate", smooth=1.5, **kw)(tiny_model, images, labels) - images

    def roughness(d: torch.Tensor) -> float:  # mean neighbour difference relative to the mean magnitude
        return float((d[..., 1:] - d[..., :-1]).abs().mean() / d.abs().mean())

    assert roughness(smooth) < 0.5 * roughness(sharp)
    assert smooth.abs().max() <= 8 / 255 + 1e-6 and smooth.abs().max() > 0
    with pytest.raises(RobustXAIError, match="smooth"):
        create_manipulation("manipulate", smooth=-1.0)
