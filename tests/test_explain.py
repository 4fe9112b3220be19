"""Explainer contract (every registered explainer) and reference checks against Captum and IG completeness."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

import robustxai as rx
from robustxai import RobustXAIError, UnknownNameError

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._base"

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


@pytest.mark.parametrize("name", rx.list_explainers())
def test_explainer_rejects_unknown_keywords(name) -> None:
    with pytest.raises(UnknownNameError, match="unknown keyword"):
        rx.create_explainer(name, not_a_parameter=1)


@pytest.mark.parametrize("name", rx.list_explainers())
@pytest.mark.parametrize("model_fixture", ["tiny_model", "tiny_attention_model"])
def test_explainer_returns_finite_maps(name, model_fixture, images, request) -> None:
    model = request.getfixturevalue(model_fixture)
    explainer = rx.create_explainer(name)
    if explainer.applicable(model) is not None:  # declared not applicable (attention rollout on a CNN)
        with pytest.raises(RobustXAIError):  # and refused in one line if called anyway
            explainer.explain(model, images)
        return
    maps = explainer.explain(model, images).maps
    assert maps.shape == (images.shape[0], images.shape[2], images.shape[3])
    assert torch.isfinite(maps).all()
    assert not maps.requires_grad


@pytest.mark.parametrize("name", rx.list_explainers())
def test_explainer_rejects_out_of_range_images(name, tiny_model, images) -> None:
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        rx.create_explainer(name).explain(tiny_model, images + 1)


@pytest.mark.parametrize("name", rx.list_explainers())
def test_explainer_rgb_images(name, images) -> None:
    model = rx.create_model("smallcnn", in_channels=3, widths=(4, 8, 8, 8)).eval()
    rgb = images.expand(-1, 3, -1, -1).contiguous()
    if rx.create_explainer(name).applicable(model) is not None:
        return
    explanation = rx.create_explainer(name).explain(model, rgb)
    assert explanation.maps.shape == (4, 32, 32)
    assert explanation.attributions.shape[0] == 4


def test_target_rule(tiny_model, images, labels) -> None:
    expl = rx.create_explainer("saliency")
    predicted = tiny_model(images).argmax(1)
    assert torch.equal(expl.explain(tiny_model, images).targets, predicted)
    assert torch.equal(expl.explain(tiny_model, images, target="label", labels=labels).targets, labels)
    assert torch.equal(expl.explain(tiny_model, images, target=1).targets, torch.ones(4, dtype=torch.long))
    with pytest.raises(RobustXAIError, match="needs labels"):
        expl.explain(tiny_model, images, target="label")
    with pytest.raises(RobustXAIError, match="target"):
        expl.explain(tiny_model, images, target="nonsense")


def test_saliency_equals_captum(tiny_model, images) -> None:
    target = torch.tensor([0, 1, 0, 1])
    ours = rx.create_explainer("saliency").explain(tiny_model, images, target=target).maps
    ref = Saliency(tiny_model).attribute(images.clone().requires_grad_(True), target=target, abs=True)
    torch.testing.assert_close(ours, ref.abs().amax(1), atol=1e-5, rtol=0)


def test_saliency_is_abs_input_gradient(tiny_model, images) -> None:
    x = images.clone().requires_grad_(True)
    tiny_model(x)[:, 1].sum().backward()
    ours = rx.create_explainer("saliency").explain(tiny_model, images, target=1).maps
    torch.testing.assert_close(ours, x.grad.abs().amax(1), atol=1e-6, rtol=0)


def test_integrated_gradients_equals_captum(tiny_model, images) -> None:
    target = torch.tensor([1, 1, 0, 0])
    expl = rx.create_explainer("integrated_gradients", n_steps=16, method="riemann_trapezoid")
    ours = expl.explain(tiny_model, images, target=target).attributions
    ref = IntegratedGradients(tiny_model).attribute(
        images, baselines=torch.zeros_like(images), target=target, n_steps=16, method="riemann_trapezoid"
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_integrated_gradients_mean_baseline_equals_captum(tiny_model, images) -> None:
    """The per-image mean reference, built here image by image, and the default rule (``riemann_middle``)."""
    x = images * torch.tensor([1.0, 0.4, 0.7, 0.2]).view(-1, 1, 1, 1)  # per-image means ≠ the batch mean
    target = torch.tensor([0, 1, 1, 0])
    expl = rx.create_explainer("integrated_gradients", n_steps=12, baseline="mean")
    assert expl.method == "riemann_middle"
    e = expl.explain(tiny_model, x, target=target)
    x0 = torch.stack([torch.full_like(image, float(image.mean())) for image in x])
    ref = IntegratedGradients(tiny_model).attribute(
        x, baselines=x0, target=target, n_steps=12, method="riemann_middle"
    )
    torch.testing.assert_close(e.attributions, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.maps, ref.abs().amax(1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("baseline", ["zero", "mean", "blurred"])
def test_integrated_gradients_completeness(tiny_model, images, baseline) -> None:
    model = tiny_model.double()
    x = images.double()
    expl = rx.create_explainer("integrated_gradients", n_steps=500, baseline=baseline, method="gausslegendre")
    explanation = expl.explain(model, x)
    x0 = expl.baselines(x)
    with torch.no_grad():
        t = explanation.targets
        gap = model(x).gather(1, t[:, None])[:, 0] - model(x0).gather(1, t[:, None])[:, 0]
    total = explanation.attributions.sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, gap, atol=1e-4 * max(1.0, float(gap.abs().max())), rtol=1e-3)
    # not vacuous: a real gap on every image, and the quadrature error (≈ 0.07 % at 500 steps) ≪ that gap
    assert float(gap.abs().min()) > 1e-3
    assert float(((total - gap).abs() / gap.abs()).max()) < 0.01


def test_gradcam_equals_captum(tiny_model, images) -> None:
    target = torch.tensor([0, 1, 1, 0])
    ours = rx.create_explainer("gradcam").explain(tiny_model, images, target=target)
    layer = tiny_model.get_cam_layer()
    ref = LayerGradCam(tiny_model, layer).attribute(images, target=target, relu_attributions=True)
    torch.testing.assert_close(ours.attributions, ref, atol=1e-6, rtol=0)
    up = LayerAttribution.interpolate(ref, (32, 32), interpolate_mode="bilinear")
    torch.testing.assert_close(ours.maps, up.abs().amax(1), atol=1e-5, rtol=0)
    assert (ours.maps >= 0).all()


def test_gradcam_manual_formula(tiny_model, images) -> None:
    acts: list[torch.Tensor] = []
    layer = tiny_model.get_cam_layer()
    handle = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    logits = tiny_model(images)
    handle.remove()
    a = acts[0]
    (grads,) = torch.autograd.grad(logits[:, 1].sum(), a)
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True)).detach()
    ours = rx.create_explainer("gradcam").explain(tiny_model, images, target=1).attributions
    torch.testing.assert_close(ours, cam, atol=1e-6, rtol=1e-5)


def test_random_baseline_is_seeded_and_model_independent(tiny_model, tiny_attention_model, images) -> None:
    a = rx.create_explainer("random", seed=1).explain(tiny_model, images).maps
    b = rx.create_explainer("random", seed=1).explain(tiny_attention_model, images).maps
    assert torch.equal(a, b)


def test_reduction_rules(tiny_model, images) -> None:
    rgb_model = rx.create_model("smallcnn", in_channels=3, widths=(4, 8, 8, 8)).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    e = rx.create_explainer("saliency", reduction="sum_abs").explain(rgb_model, x)
    torch.testing.assert_close(e.maps, e.attributions.abs().sum(1))
    with pytest.raises(RobustXAIError, match="reduction"):
        rx.create_explainer("saliency", reduction="median")


def test_out_of_range_target_is_a_clear_error(tiny_model, images) -> None:
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        rx.create_explainer("saliency").explain(tiny_model, images, target=5)
    with pytest.raises(RobustXAIError, match="unsupported target"):
        rx.create_explainer("saliency").explain(tiny_model, images, target=True)


def test_random_baseline_depends_on_the_image_not_the_batch(tiny_model, images) -> None:
    expl = rx.create_explainer("random", seed=0)
    whole = expl.explain(tiny_model, images).maps
    torch.testing.assert_close(expl.explain(tiny_model, images[2:]).maps, whole[2:])
    assert not torch.equal(whole[0], whole[1])
    assert not torch.equal(expl.explain(tiny_model, (images + 0.01).clamp(0, 1)).maps[0], whole[0])


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient"])
def test_predicted_target_from_the_gradient_pass_equals_the_explicit_one(name, tiny_model, images) -> None:
    """Saliency-type methods read the prediction from their own forward pass: same targets, same maps."""
    expl = rx.create_explainer(name)
    fused = expl.explain(tiny_model, images)
    with torch.no_grad():
        predicted = tiny_model(images).argmax(1)
    assert torch.equal(fused.targets, predicted)
    explicit = expl.explain(tiny_model, images, target=predicted)
    torch.testing.assert_close(fused.attributions, explicit.attributions, atol=0, rtol=0)
    assert torch.equal(expl.explain(tiny_model, images, target="prediction").maps, fused.maps)


def test_out_of_range_target_on_a_plain_module_is_a_clear_error(images) -> None:
    """A model that is not a ModelWrapper declares no class count: it is asked with a forward pass."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 3)).eval()
    with pytest.raises(RobustXAIError, match=r"\[0, 2\]"):
        rx.create_explainer("saliency").explain(model, images, target=3)
    assert rx.create_explainer("saliency").explain(model, images, target=2).maps.shape == (4, 32, 32)


def test_rows_per_pass_default_depends_on_the_device() -> None:
    from robustxai.explain._base import rows_per_pass

    assert rows_per_pass(None, "cpu") == 32
    assert rows_per_pass(None, torch.device("cuda")) == 256
    assert rows_per_pass(7, "cpu") == 7 == rows_per_pass(7, "cuda")


@pytest.mark.parametrize(("total", "most"), [(400, 32), (320, 32), (5, 32), (33, 32), (7, 1), (10, 3)])
def test_row_chunks_are_balanced_and_cover_every_row(total, most) -> None:
    from robustxai.explain._base import balanced_rows, row_chunks

    chunks = row_chunks(total, most)
    sizes = [c.stop - c.start for c in chunks]
    assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(total))
    assert max(sizes) == balanced_rows(total, most) <= most
    assert len(chunks) == -(-total // most)  # as few passes as the limit allows
    assert max(sizes) - min(sizes) <= len(chunks)


@pytest.mark.parametrize("name", rx.list_explainers())
def test_every_explainer_states_its_passes(name) -> None:
    """``passes`` and ``pass_rows`` are what benchmarks/explainers.py divides the time by."""
    expl = rx.create_explainer(name)
    n_f, n_b = expl.passes(16, 64, 64)
    assert isinstance(n_f, int) and isinstance(n_b, int) and n_f >= 0 and n_b >= 0
    assert 1 <= expl.pass_rows(16) <= max(n_f, 16)
    expected = {
        "integrated_gradients": (320, 320, 32),
        "smoothgrad": (16 * 25, 16 * 25, 31),  # 400 rows: 13 balanced passes
        "deeplift": (32, 32, 32),
        "guided_gradcam": (32, 32, 16),
        "saliency": (16, 16, 16),
        "gradcam": (16, 16, 16),
        "lime": (16 * 256, 0, 32),
        "random": (16, 0, 16),
        "xrai": (320, 320, 32),
    }
    if name in expected:
        assert (n_f, n_b, expl.pass_rows(16)) == expected[name]
