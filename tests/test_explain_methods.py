"""Issue 4 explainers against independent references: Captum's calls, exact formulas, batching, targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from scipy.ndimage import gaussian_filter
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError, UnknownNameError
from robustxai.explain import explain_targets
from robustxai.explain._references import gaussian_blur
from robustxai.models._smallcnn import SmallCNN

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._references, robustxai.models._smallcnn"

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


class Linear(nn.Module):
    """logit_k = Σ w_k · x + b_k: every attribution method has a closed form on it."""

    def __init__(self, shape: tuple[int, int, int], k: int = 3, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(k, *shape, generator=gen))
        self.bias = nn.Parameter(torch.randn(k, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias


def _no_adjacent_nonlinearities() -> nn.Module:
    """A CNN where no hooked non-linearity feeds another directly (where Captum's DeepLift is exact)."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.AvgPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 2),
    ).eval()


# --- Input × Gradient -------------------------------------------------------------------------------


def test_input_x_gradient_equals_captum_and_formula(tiny_model, images) -> None:
    target = torch.tensor([0, 1, 1, 0])
    e = rx.create_explainer("input_x_gradient").explain(tiny_model, images, target=target)
    ref = InputXGradient(tiny_model).attribute(images.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(e.attributions, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.maps, ref.abs().amax(1), atol=1e-5, rtol=0)
    x = images.clone().requires_grad_(True)
    tiny_model(x).gather(1, target[:, None]).sum().backward()
    torch.testing.assert_close(e.maps, (x.grad * images).abs().amax(1), atol=1e-6, rtol=1e-5)


# --- references and Integrated Gradients with a blurred baseline --------------------------------------


@pytest.mark.parametrize("sigma", [0.7, 1.5, 20.0])
def test_gaussian_blur_equals_scipy(sigma) -> None:
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0)
    torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(ref), atol=1e-12, rtol=0)


def test_gaussian_blur_rejects_bad_sigma() -> None:
    with pytest.raises(RobustXAIError, match="sigma"):
        gaussian_blur(torch.rand(1, 1, 4, 4), -1.0)
    assert torch.equal(gaussian_blur(x := torch.rand(1, 1, 4, 4), 0.0), x)


def test_integrated_gradients_blurred_equals_captum(tiny_model, images) -> None:
    target = torch.tensor([1, 0, 0, 1])
    expl = rx.create_explainer("integrated_gradients", n_steps=8, baseline="blurred", blur_sigma=3.0)
    blurred = torch.from_numpy(gaussian_filter(images.numpy(), sigma=(0, 0, 3.0, 3.0), mode="reflect"))
    torch.testing.assert_close(expl.baselines(images), blurred, atol=1e-6, rtol=0)
    ours = expl.explain(tiny_model, images, target=target).attributions
    ref = IntegratedGradients(tiny_model).attribute(
        images, baselines=blurred, target=target, n_steps=8, method="riemann_middle"
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_integrated_gradients_is_exact_on_a_linear_model() -> None:
    model = Linear((1, 8, 8)).double()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expl = rx.create_explainer("integrated_gradients", n_steps=3, baseline="blurred", blur_sigma=1.0)
    attr = expl.explain(model, x, target=2).attributions
    expected = (x - expl.baselines(x)) * model.weight[2]
    torch.testing.assert_close(attr, expected, atol=1e-12, rtol=1e-6)  # Captum's step sizes are float32


# --- SmoothGrad ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 7, 64])
def test_smoothgrad_equals_captum_noise_tunnel_under_the_same_seed(tiny_model, images, batch_size) -> None:
    target = torch.tensor([1, 0, 1, 0])
    expl = rx.create_explainer("smoothgrad", noise=0.2, n_samples=6, seed=11, batch_size=batch_size)
    ours = expl.explain(tiny_model, images, target=target).attributions
    torch.manual_seed(11)
    ref = NoiseTunnel(Saliency(tiny_model)).attribute(
        images.clone(), nt_type="smoothgrad", nt_samples=6, stdevs=0.2, target=target, abs=True
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_smoothgrad_is_seeded_and_leaves_the_global_generator_alone(tiny_model, images) -> None:
    state = torch.random.get_rng_state()
    a = rx.create_explainer("smoothgrad", n_samples=4, seed=1).explain(tiny_model, images).maps
    assert torch.equal(torch.random.get_rng_state(), state)
    b = rx.create_explainer("smoothgrad", n_samples=4, seed=1).explain(tiny_model, images).maps
    c = rx.create_explainer("smoothgrad", n_samples=4, seed=2).explain(tiny_model, images).maps
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_smoothgrad_without_noise_is_saliency(tiny_model, images) -> None:
    smooth = (
        rx.create_explainer("smoothgrad", noise=0.0, n_samples=3).explain(tiny_model, images, target=1).maps
    )
    plain = rx.create_explainer("saliency").explain(tiny_model, images, target=1).maps
    torch.testing.assert_close(smooth, plain, atol=1e-6, rtol=1e-5)


# --- DeepLIFT -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zero", "mean", "blurred"])
def test_deeplift_summation_to_delta(baseline, images) -> None:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8)).eval().double()
    x = images.double()
    expl = rx.create_explainer("deeplift", baseline=baseline)
    e = expl.explain(model, x)
    with torch.no_grad():
        t = e.targets[:, None]
        gap = model(x).gather(1, t)[:, 0] - model(expl.baselines(x)).gather(1, t)[:, 0]
    assert float(gap.abs().min()) > 1e-4  # a real difference to explain
    torch.testing.assert_close(e.attributions.sum(dim=(1, 2, 3)), gap, atol=1e-10, rtol=0)


def test_deeplift_equals_captum_where_captum_is_exact(images) -> None:
    model = _no_adjacent_nonlinearities()
    target = torch.tensor([0, 1, 1, 0])
    e = rx.create_explainer("deeplift").explain(model, images, target=target)
    ref = DeepLift(model).attribute(
        images.clone().requires_grad_(True), baselines=torch.zeros_like(images), target=target
    )
    torch.testing.assert_close(e.attributions, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.maps, ref.abs().amax(1), atol=1e-5, rtol=0)


def test_deeplift_is_exact_on_a_linear_model() -> None:
    model = Linear((2, 6, 6)).double()
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    attr = rx.create_explainer("deeplift", baseline="mean").explain(model, x, target=1).attributions
    x0 = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(attr, (x - x0) * model.weight[1], atol=1e-12, rtol=0)


class _TwoReLUs(nn.Module):
    """conv → ReLU → conv → ReLU → mean; with ``shared`` both ReLUs are one module called twice."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.c1, self.c2 = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 3)
        self.relu = nn.ReLU()
        self.relu2 = self.relu if shared else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.c2(self.relu(self.c1(x)))).mean(dim=(2, 3))


def test_deeplift_handles_a_reused_relu_per_call(images) -> None:
    """Each call of a reused module gets its own multipliers (Captum keeps only the last input)."""
    x = images.double()
    shared, separate = _TwoReLUs(shared=True).double().eval(), _TwoReLUs(shared=False).double().eval()
    expl = rx.create_explainer("deeplift")
    a = expl.explain(shared, x, target=1).attributions
    torch.testing.assert_close(a, expl.explain(separate, x, target=1).attributions, atol=1e-12, rtol=0)
    with torch.no_grad():
        gap = shared(x)[:, 1] - shared(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), gap, atol=1e-12, rtol=0)


class _DeepLiftOwnInputHooks(DeepLift):
    """Captum's DeepLift with captum#1104 fixed (each multiplier hook on the module's own input copy, as
    upstream PR #1843 does): the oracle where Captum 0.9 itself is wrong (adjacent non-linearities)."""

    def _register_hooks(self, module: nn.Module, attribute_to_layer_input: bool = True) -> None:
        if not self._can_register_hook(module):
            return
        self.forward_handles.append(module.register_forward_hook(self._forward_hook))
        self.forward_handles.append(module.register_forward_pre_hook(self._forward_pre_hook))
        grad_out: dict[torch.device, torch.Tensor] = {}

        def record(grad: torch.Tensor) -> None:
            grad_out[grad.device] = grad

        def forward_hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
            output.register_hook(record)

        def pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
            copy = args[0].clone()

            def replace(grad: torch.Tensor) -> torch.Tensor | None:
                return self._backward_hook(module, grad, grad_out[grad.device]) if grad_out else None

            copy.register_hook(replace)
            return (copy,)

        self.backward_handles.append(module.register_forward_pre_hook(pre_hook))
        self.backward_handles.append(module.register_forward_hook(forward_hook))


def _fixed_captum_deeplift(model: nn.Module, x: torch.Tensor, x0: torch.Tensor, target) -> torch.Tensor:
    return _DeepLiftOwnInputHooks(model).attribute(
        x.clone().requires_grad_(True), baselines=x0, target=target
    )


def test_deeplift_softmax_rule_equals_captum_in_one_pass(images) -> None:
    """The attention head (ReLU → softmax, max-pools, a product) as Captum, in one pass whatever batch_size:
    Captum's softmax rule subtracts a mean over every row of its call."""
    torch.manual_seed(1)
    model = rx.create_model("smallcnn-attention", widths=(4, 8, 8, 8)).eval().double()
    x = torch.cat([images, _with_black_band(images)]).double()
    for batch_size in (None, 2):
        expl = rx.create_explainer("deeplift", baseline="mean", batch_size=batch_size)
        e = expl.explain(model, x)
        ref = _fixed_captum_deeplift(model, x, expl.baselines(x), e.targets)
        torch.testing.assert_close(e.attributions, ref, atol=1e-12, rtol=1e-8)


def _with_black_band(images: torch.Tensor) -> torch.Tensor:
    """Images whose top rows are black: exact ties with the zero reference (|Δin| = 0 inside the net)."""
    x = images.clone()
    x[:, :, :12] = 0
    return x


@pytest.mark.parametrize(
    "act", [nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus], ids=lambda a: a.__name__
)
def test_deeplift_equals_captum_for_each_elementwise_rule(act, images) -> None:
    """Captum's rule for every element-wise non-linearity it knows, ties (|Δin| < eps) included."""
    torch.manual_seed(11)
    model = (
        nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            act(),
            nn.Conv2d(3, 2, 3, padding=1),
            nn.MaxPool2d(2),
            nn.Conv2d(2, 2, 3),
            act(),
            nn.Flatten(),
            nn.Linear(2 * 14 * 14, 3),
        )
        .double()
        .eval()
    )
    x = _with_black_band(images).double()
    target = torch.tensor([0, 1, 2, 1])
    ours = rx.create_explainer("deeplift").explain(model, x, target=target).attributions
    zero = torch.zeros_like(x)
    ref = DeepLift(model).attribute(x.clone().requires_grad_(True), baselines=zero, target=target)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-8)
    with torch.no_grad():
        gap = (model(x) - model(zero)).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(ours.sum(dim=(1, 2, 3)), gap, atol=1e-10, rtol=0)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh], ids=lambda a: a.__name__)
def test_deeplift_with_a_large_eps_equals_captum_image_by_image(act) -> None:
    """|Δin| < eps in many places (image and reference rows then take different ordinary gradients) and at
    max-pool inputs: a batch gives what Captum gives one image at a time. (On a batch Captum's max-pool rule
    hands every row the first image's ordinary gradient, ``grad_input[0]``.)"""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), act(), nn.Conv2d(3, 2, 3), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * 3 * 3, 2),
    )  # fmt: skip
    model = model.double().eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expl = rx.create_explainer("deeplift", eps=0.3, baseline="mean")
    ours = expl.explain(model, x, target=1).attributions
    ref = torch.cat(
        [
            DeepLift(model, eps=0.3).attribute(
                x[i : i + 1].clone().requires_grad_(True), baselines=expl.baselines(x[i : i + 1]), target=1
            )
            for i in range(len(x))
        ]
    )
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-8)


def test_deeplift_equals_captum_with_the_adjacent_module_fix_on_smallcnn(images) -> None:
    """On smallcnn (ReLU → MaxPool in every block) the own rules give Captum's DeepLift with the #1104 fix."""
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8)).eval().double()
    x = torch.cat([images, _with_black_band(images)]).double()
    expl = rx.create_explainer("deeplift", baseline="mean")
    e = expl.explain(model, x)
    ref = _fixed_captum_deeplift(model, x, expl.baselines(x), e.targets)
    torch.testing.assert_close(e.attributions, ref, atol=1e-12, rtol=1e-8)


def test_deeplift_sums_to_delta_with_overlapping_pools_and_inplace_relus(images) -> None:
    """Overlapping max-pool windows (where Captum's un-pooling drops terms), 1-d and 3-d pools, in-place."""

    class Pools(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(5)
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
            self.pool1 = nn.MaxPool1d(2)
            self.pool3 = nn.MaxPool3d((2, 2, 2), return_indices=True)
            self.fc = nn.Linear(4 * 128 + 2 * 8 * 8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pool2(self.relu(self.conv(x)))  # [B, 4, 16, 16]
            a = self.pool1(h.flatten(2))  # [B, 4, 128]
            b, _ = self.pool3(h[:, None])  # [B, 1, 2, 8, 8]
            return self.fc(torch.cat([a.flatten(1), b.flatten(1)], dim=1))

    model = Pools().double().eval()
    x = _with_black_band(images).double()
    expl = rx.create_explainer("deeplift", baseline="blurred", blur_sigma=2.0)
    e = expl.explain(model, x)
    with torch.no_grad():
        t = e.targets[:, None]
        gap = model(x).gather(1, t)[:, 0] - model(expl.baselines(x)).gather(1, t)[:, 0]
    assert float(gap.abs().min()) > 1e-6
    torch.testing.assert_close(e.attributions.sum(dim=(1, 2, 3)), gap, atol=1e-10, rtol=0)
    assert model.relu.inplace and model.pool3.return_indices and not model.pool2.return_indices


def test_deeplift_batch_size_does_not_change_the_numbers(images) -> None:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8)).eval().double()
    x = images.double()
    maps = [rx.create_explainer("deeplift", batch_size=bs).explain(model, x).maps for bs in (None, 1, 2, 5)]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], atol=1e-12, rtol=0)


def test_deeplift_leaves_the_model_as_it_was_after_an_error(images) -> None:
    """Hooks removed and switched flags restored even when the forward pass raises."""

    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.relu = nn.ReLU(inplace=True)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pool(self.relu(self.conv(x)))
            if torch.is_grad_enabled():
                raise ValueError("boom")
            return h.mean(dim=(2, 3))

    model = Fails().eval()
    with pytest.raises(ValueError, match="boom"):
        rx.create_explainer("deeplift").explain(model, images, target=0)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert model.relu.inplace is True and model.pool.return_indices is False
    with torch.no_grad():
        assert model(images).shape == (4, 2)


def test_attention_head_uses_each_nonlinearity_module_once(tiny_attention_model, images) -> None:
    """Guided Backprop (Captum) needs every ReLU a module of its own, called once per forward pass."""
    seen: dict[str, int] = {}
    for name, module in tiny_attention_model.named_modules():
        if type(module) in SUPPORTED_NON_LINEAR:
            module.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, seen.get(n, 0) + 1))
    tiny_attention_model(images)
    assert seen and set(seen.values()) == {1}
    head = tiny_attention_model.net.head
    calls: list[str] = []
    for name in ("attn_relu", "attn_softmax", "pool_f", "pool_u", "out_relu"):
        getattr(head, name).register_forward_hook(lambda m, i, o, n=name: calls.append(n))
    tiny_attention_model(images)
    assert sorted(calls) == ["attn_relu", "attn_softmax", "out_relu", "pool_f", "pool_u"]


def test_attention_head_keeps_its_state_dict_keys() -> None:
    keys = set(SmallCNN(widths=(4, 8, 8, 8), attention=True).head.state_dict())
    assert keys == {"attn_conv.weight", "attn_conv.bias", "fc.weight", "fc.bias"}


# --- Occlusion -------------------------------------------------------------------------------------------


def _exact_occlusion(weight: torch.Tensor, x: torch.Tensor, window: int, stride: int, base: str):
    """Per-pixel mean over covering windows of Σ_patch w·(x − reference), windows cut at the border.

    ``weight`` ``[C, H, W]``: the target logit's weights of an affine model (the same for every image).
    """
    w = weight.detach().numpy()
    xs = x.numpy()
    b, c, h, wd = xs.shape
    out = np.zeros_like(xs)
    for i in range(b):
        ref = np.zeros_like(xs[i]) if base == "zero" else np.full_like(xs[i], xs[i].mean())
        contrib = w * (xs[i] - ref)
        total, count = np.zeros((h, wd)), np.zeros((h, wd))
        rows = range(0, max(h - window, 0) + stride, stride)
        cols = range(0, max(wd - window, 0) + stride, stride)
        for r in rows:
            for q in cols:
                r1, q1 = min(r + window, h), min(q + window, wd)
                total[r:r1, q:q1] += contrib[:, r:r1, q:q1].sum()
                count[r:r1, q:q1] += 1
        out[i] = total / count
    return torch.from_numpy(out)


@pytest.mark.parametrize(("mode", "path"), [("train", "captum"), ("eval", "incremental")])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
@pytest.mark.parametrize(("size", "window", "stride"), [(12, 5, 3), (16, 4, 4), (10, 3, 1)])
def test_occlusion_on_a_linear_model_is_the_exact_patch_contribution(
    baseline, size, window, stride, mode, path
) -> None:
    """A module in training mode goes through Captum's passes; in eval mode through the incremental engine."""
    model = Linear((2, size, size)).double().train(mode == "train")
    x = torch.rand(3, 2, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    expl = rx.create_explainer("occlusion", window=window, stride=stride, baseline=baseline)
    e = expl.explain(model, x, target=1)
    assert e.engine == path
    expected = _exact_occlusion(model.weight[1], x, window, stride, baseline)
    torch.testing.assert_close(e.attributions, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e.maps, expected[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("baseline", [0, "mean"])
def test_occlusion_equals_captum(tiny_model, images, baseline) -> None:
    target = torch.tensor([0, 1, 0, 1])
    expl = rx.create_explainer("occlusion", window=6, stride=4, baseline=baseline)
    e = expl.explain(tiny_model, images, target=target)
    assert e.engine == "incremental"
    ref_base = 0.0 if baseline == 0 else images.mean(dim=(1, 2, 3), keepdim=True)
    ref = Occlusion(tiny_model).attribute(
        images, sliding_window_shapes=(1, 6, 6), strides=(1, 4, 4), baselines=ref_base, target=target
    )
    torch.testing.assert_close(e.attributions, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.maps, ref.amax(1), atol=1e-5, rtol=0)


def test_occlusion_default_geometry() -> None:
    occ = rx.create_explainer("occlusion")
    assert occ.geometry(64, 64) == (8, 4)
    assert occ.geometry(224, 224) == (28, 14)
    assert occ.geometry(32, 48) == (4, 2)
    with pytest.raises(RobustXAIError, match="exceeds the image"):
        rx.create_explainer("occlusion", window=40).geometry(32, 32)
    with pytest.raises(RobustXAIError, match="must not exceed the window"):
        rx.create_explainer("occlusion", window=4, stride=5)
    with pytest.raises(RobustXAIError, match="must not exceed the window"):
        rx.create_explainer("occlusion", stride=5).geometry(32, 32)


# --- Guided Grad-CAM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("model_fixture", ["tiny_model", "tiny_attention_model"])
def test_guided_gradcam_equals_captum(model_fixture, mode, images, request) -> None:
    model = request.getfixturevalue(model_fixture)
    target = torch.tensor([1, 1, 0, 0])
    e = rx.create_explainer("guided_gradcam", interpolate_mode=mode).explain(model, images, target=target)
    layer = model.get_cam_layer()
    ref = GuidedGradCam(model, layer).attribute(
        images.clone().requires_grad_(True), target=target, interpolate_mode=mode
    )
    scale = float(ref.abs().max())  # of order 1e-5 on these tiny models: the tolerance is relative to it
    assert scale > 0
    torch.testing.assert_close(e.attributions, ref, atol=1e-5 * scale, rtol=0)
    # and it is what its name says: Guided Backprop times the upsampled Grad-CAM
    guided = GuidedBackprop(model).attribute(images.clone().requires_grad_(True), target=target)
    cam = LayerGradCam(model, layer).attribute(images, target=target, relu_attributions=True)
    up = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode=mode)
    torch.testing.assert_close(e.attributions, guided * up, atol=1e-5 * scale, rtol=0)


# --- batching: batch_size bounds memory, never the numbers ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "sizes"),
    [
        ("integrated_gradients", {"n_steps": 10}, [None, 1, 9, 64]),
        ("smoothgrad", {"n_samples": 5}, [None, 1, 3, 64]),
        ("deeplift", {}, [None, 1, 3, 64]),
        ("occlusion", {"window": 8, "stride": 8}, [None, 1, 8, 1000]),
    ],
)
def test_batch_size_does_not_change_the_numbers(tiny_model, images, name, params, sizes) -> None:
    maps = [
        rx.create_explainer(name, batch_size=bs, **params).explain(tiny_model, images).maps for bs in sizes
    ]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["integrated_gradients", "smoothgrad", "deeplift", "lime", "xrai", "occlusion"]
)
@pytest.mark.parametrize("bad", [0, -3, 2.5, "64", True])
def test_batch_size_must_be_a_positive_integer(name, bad) -> None:
    with pytest.raises(RobustXAIError, match="batch_size"):
        rx.create_explainer(name, batch_size=bad)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("integrated_gradients", {"n_steps": 0}, "n_steps"),
        ("integrated_gradients", {"baseline": "noise"}, "baseline"),
        ("integrated_gradients", {"baseline": "blurred", "blur_sigma": 0}, "blur_sigma"),
        ("smoothgrad", {"noise": -0.1}, "noise"),
        ("smoothgrad", {"noise": float("nan")}, "noise"),
        ("smoothgrad", {"n_samples": 0}, "n_samples"),
        ("smoothgrad", {"seed": 1.5}, "seed"),
        ("deeplift", {"baseline": "one"}, "baseline"),
        ("deeplift", {"eps": 0}, "eps"),
        ("occlusion", {"window": 0}, "window"),
        ("occlusion", {"stride": 2.0}, "stride"),
        ("occlusion", {"baseline": 1}, "baseline"),
        ("occlusion", {"baseline": True}, "baseline"),
        ("guided_gradcam", {"interpolate_mode": "cubic"}, "interpolate_mode"),
    ],
)
def test_bad_hyper_parameters_are_clear_errors(name, params, match) -> None:
    with pytest.raises(RobustXAIError, match=match):
        rx.create_explainer(name, **params)


def test_unknown_keyword_lists_the_accepted_ones() -> None:
    with pytest.raises(UnknownNameError, match="accepts: noise, n_samples, seed, batch_size, reduction"):
        rx.create_explainer("smoothgrad", stdevs=0.1)


# --- several targets per image and multi-label models ---------------------------------------------------


def _multilabel_model() -> rx.ModelWrapper:
    torch.manual_seed(5)
    net = SmallCNN(1, 4, widths=(4, 8, 8, 8))
    names = ["effusion", "fracture", "nodule", "edema"]
    return rx.ModelWrapper(net, names, mean=(0.5,), std=(0.25,), task="multilabel", cam_layer=net.cam_layer)


@pytest.mark.parametrize("name", ["saliency", "occlusion", "gradcam"])
def test_explain_targets_stacks_single_target_maps(name, images) -> None:
    model = _multilabel_model().eval()
    expl = rx.create_explainer(name)
    expl = rx.create_explainer(name, window=8, stride=8) if name == "occlusion" else expl
    maps = explain_targets(expl, model, images, [2, 0])
    assert maps.shape == (4, 2, 32, 32)
    torch.testing.assert_close(maps[:, 0], expl.explain(model, images, target=2).maps)
    torch.testing.assert_close(maps[:, 1], expl.explain(model, images, target=0).maps)
    assert explain_targets(expl, model, images, "all").shape == (4, 4, 32, 32)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ([], "non-empty"),
        ("some", "'all'"),
        ([4], r"\[0, 3\]"),
        ([True], "integer"),
        (torch.tensor([1]), "list"),
    ],
)
def test_explain_targets_rejects_bad_targets(targets, match, images) -> None:
    with pytest.raises(RobustXAIError, match=match):
        explain_targets(rx.create_explainer("saliency"), _multilabel_model().eval(), images, targets)


def test_multilabel_target_rule(images) -> None:
    model = _multilabel_model().eval()
    expl = rx.create_explainer("saliency")
    with torch.no_grad():
        assert torch.equal(expl.explain(model, images).targets, model(images).argmax(1))
    labels = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 1]])
    assert expl.explain(model, images, target="label", labels=labels).targets.tolist() == [1, 0, 3, 1]
    labels[2] = 0
    with pytest.raises(RobustXAIError, match=r"image\(s\) \[2\] have none"):
        expl.explain(model, images, target="label", labels=labels)
    with pytest.raises(RobustXAIError, match=r"shape \[4, K\]"):
        expl.explain(model, images, target="label", labels=torch.tensor([0, 1, 1, 0]))
    with pytest.raises(RobustXAIError, match="only 0 and 1"):
        expl.explain(model, images, target="label", labels=torch.full((4, 4), 2))


def test_multiclass_label_target_checks_the_labels(tiny_model, images) -> None:
    expl = rx.create_explainer("saliency")
    with pytest.raises(RobustXAIError, match="integer class indices"):
        expl.explain(tiny_model, images, target="label", labels=torch.tensor([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(RobustXAIError, match=r"shape \[4\]"):
        expl.explain(tiny_model, images, target="label", labels=torch.tensor([0, 1]))
