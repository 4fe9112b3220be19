"""Explainers against references that do not go through the code under test: the incremental occlusion engine
on an affine CNN (exact patch contributions), Guided Grad-CAM by hand (its implementation calls Captum's), and
the default ``max_abs`` channel reduction on RGB images against Captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

import robustxai as rx
from robustxai.explain import _incremental as incremental
from robustxai.explain._boxes import Box
from robustxai.explain._fxgraph import cached_trace
from test_explain_methods import _exact_occlusion, _fixed_captum_deeplift

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.explain._boxes, robustxai.explain._fxgraph, robustxai.explain._incremental"
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


# --- Occlusion: the incremental engine on an affine CNN ----------------------------------------------------


def _affine_cnn(size: int) -> rx.ModelWrapper:
    """Normalisation, padded conv, average pool, strided conv, linear: affine, and local up to the flatten."""
    torch.manual_seed(4)
    features = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten()
    )
    n = features(torch.zeros(1, 2, size, size)).shape[1]
    net = nn.Sequential(*features, nn.Linear(n, 3))
    names = ["a", "b", "c"]
    wrapped = rx.wrap_model(net, names, mean=(0.5, 0.4), std=(0.25, 0.5), in_channels=2, cam_layer=None)
    return wrapped.eval().double()


@pytest.mark.parametrize("baseline", ["zero", "mean"])
@pytest.mark.parametrize(("size", "window", "stride"), [(24, 5, 3), (24, 4, 4), (23, 6, 5)])
def test_incremental_occlusion_on_an_affine_cnn_is_the_exact_patch_contribution(
    baseline, size, window, stride
) -> None:
    """The engine's boxes (growing through the conv and pool halos, moved inside at the border) against the
    closed form Σ_patch w·(x − reference), w = the input gradient, the same for every image of an affine
    model. (At 23 px the pool drops the last row and column: their weights are 0.)"""
    model = _affine_cnn(size)
    x = torch.rand(3, 2, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    engine = incremental.Engine(model, x, *cached_trace(model, torch.float64))
    plan = engine.plan(Box(window, window, np.zeros(1, dtype=int), np.zeros(1, dtype=int)))
    boxed = [node for node, box in plan.items() if box is not None and node is not engine.input]
    assert any(node.op == "call_module" for node in boxed)  # the engine evaluates convolutions on boxes
    xg = x.clone().requires_grad_(True)
    model(xg)[:, 1].sum().backward()
    weight = xg.grad[0]
    assert torch.equal(xg.grad, weight.expand_as(xg.grad))  # affine: one weight map for every image
    expl = rx.create_explainer("occlusion", window=window, stride=stride, baseline=baseline)
    e = expl.explain(model, x, target=1)
    assert e.engine == "incremental"
    expected = _exact_occlusion(weight, x, window, stride, baseline)
    assert float(expected.abs().max()) > 0.01  # the attributions here are of order 0.05
    torch.testing.assert_close(e.attributions, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(e.maps, expected[:, 0], atol=1e-6, rtol=1e-5)


# --- Guided Grad-CAM by hand -------------------------------------------------------------------------------


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients, and only where the input was positive."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


def _guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """∂f_t/∂x with every ``nn.ReLU``'s output replaced by :class:`_GuidedReLU` of its input."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(m.inplace for m in relus)
    handles = [m.register_forward_hook(lambda m, i, o: _GuidedReLU.apply(i[0])) for m in relus]
    try:
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    finally:
        for handle in handles:
            handle.remove()
    return grad


def _upsampled_gradcam(model: rx.ModelWrapper, x: torch.Tensor, target: torch.Tensor, mode: str):
    """ReLU(Σ_k w_k A_k), w_k the spatial mean of ∂f_t/∂A_k, upsampled as Captum does (F.interpolate's
    default ``align_corners``, i.e. False for bilinear)."""
    acts: list[torch.Tensor] = []
    handle = model.get_cam_layer().register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), acts[0])
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts[0]).sum(1, keepdim=True)).detach()
    align = False if mode == "bilinear" else None
    return F.interpolate(cam, size=tuple(x.shape[-2:]), mode=mode, align_corners=align)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_gradcam_equals_guided_backprop_times_gradcam_by_hand(tiny_model, images, mode) -> None:
    """The values are of order 1e-5 here, so the tolerance is relative to the largest one."""
    target = torch.tensor([1, 1, 0, 0])
    expl = rx.create_explainer("guided_gradcam", interpolate_mode=mode)
    e = expl.explain(tiny_model, images, target=target)
    ref = _guided_backprop(tiny_model, images, target) * _upsampled_gradcam(tiny_model, images, target, mode)
    scale = float(ref.abs().max())
    assert scale > 0
    torch.testing.assert_close(e.attributions, ref, atol=1e-5 * scale, rtol=0)
    torch.testing.assert_close(e.maps, ref.abs().amax(1), atol=1e-5 * scale, rtol=0)


# --- RGB: the default channel reduction (max |·| over channels) against Captum -----------------------------


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient", "integrated_gradients", "deeplift"])
def test_rgb_maps_are_captums_attributions_max_abs_over_channels(name) -> None:
    """Every other Captum comparison has one channel, where any channel reduction of |·| is the identity."""
    torch.manual_seed(2)
    model = rx.create_model("smallcnn", in_channels=3, widths=(4, 8, 8, 8)).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 1, 1, 0])
    expl = rx.create_explainer(name, **({"n_steps": 8} if name == "integrated_gradients" else {}))
    e = expl.explain(model, x, target=target)
    if name == "saliency":
        ref = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    elif name == "input_x_gradient":
        ref = InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target)
    elif name == "integrated_gradients":
        ref = IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=8, method="riemann_middle"
        )
    else:  # Captum with the captum#1104 fix: smallcnn has ReLU → MaxPool in every block
        ref = _fixed_captum_deeplift(model, x, torch.zeros_like(x), target)
    torch.testing.assert_close(e.attributions, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.maps, ref.abs().amax(dim=1), atol=1e-5, rtol=0)
