"""LIME against Captum's Lime and a linear model; XRAI against PAIR's saliency.core.XRAI and completeness."""

from __future__ import annotations

import numpy as np
import pytest
import saliency.core.xrai as pair
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime as CaptumLime
from captum.attr._core.lime import get_exp_kernel_similarity_function
from skimage.segmentation import slic
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError, UnknownNameError
from robustxai.explain._lime import (
    Lime,
    segment_images,
    superpixel_means,
    top_superpixel_mask,
    weighted_ridge,
)
from robustxai.explain._xrai import XRAI, felzenszwalb_masks, xrai_regions

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._lime, robustxai.explain._xrai"


@pytest.fixture
def smooth_images() -> torch.Tensor:
    """Blurred noise: images with structure, so segmentations have several regions of several sizes."""
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(4))
    return nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


class LinearModel(nn.Module):
    """logits = [0, Σ v·x]: LIME's target logit is exactly linear in the superpixel on/off vector."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.v).sum(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def grid_segments(batch: int, size: int, cell: int) -> torch.Tensor:
    rows = torch.arange(size) // cell
    return (rows[:, None] * (size // cell) + rows[None, :]).expand(batch, size, size).contiguous()


# ----------------------------------------------------------------------------------------------- LIME


@pytest.mark.slow  # Captum builds its perturbations one at a time
def test_lime_equals_captum_lime(tiny_model, images) -> None:
    x, target, seed = images[:2], torch.tensor([0, 1]), 3
    explainer = Lime(n_samples=48, segmentation="slic", n_segments=12, batch_size=16, seed=seed)
    ours = explainer.explain(tiny_model, x, target=target)
    for i in range(2):
        image = x[i, 0].double().numpy()
        labels = slic(image, n_segments=12, compactness=10.0, start_label=0, channel_axis=None)
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        mask = torch.from_numpy(labels)[None, None]
        means = np.zeros_like(image)
        for label in np.unique(labels):
            means[labels == label] = image[labels == label].mean()
        torch.manual_seed(seed)
        lime = CaptumLime(
            tiny_model,
            interpretable_model=SkLearnRidge(alpha=1.0),
            similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=1.0),
        )
        ref = lime.attribute(
            x[i : i + 1],
            baselines=torch.from_numpy(means).float()[None, None],
            target=int(target[i]),
            feature_mask=mask,
            n_samples=48,
            perturbations_per_eval=16,
        )
        scale = float(ref.abs().max())
        assert scale > 0
        torch.testing.assert_close(ours.attributions[i], ref[0], atol=1e-5 * scale, rtol=0)
        torch.testing.assert_close(ours.maps[i], ref[0, 0].clamp(min=0), atol=1e-5 * scale, rtol=0)


def test_lime_recovers_linear_segment_contributions() -> None:
    # 16 cells of 8×8 px; a ±0.25 checkerboard around 0.5 keeps every cell's mean at 0.5, and the model
    # weighs the bright pixels of cell s by a_s, so switching cell s on adds exactly 32·0.25·a_s to the logit
    seg = grid_segments(1, 32, 8)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    bright = (rows + cols) % 2 == 0
    x = (0.5 + 0.25 * torch.where(bright, 1.0, -1.0))[None, None]
    a = torch.linspace(-1, 1, 16)[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    model = LinearModel((a[seg[0]] * bright)[None, None])
    true = 32 * 0.25 * a.double()
    target = torch.ones(1, dtype=torch.long)
    fit = Lime(n_samples=200, alpha=1.0).fit(model, x, target, segments=seg)
    assert torch.equal(fit.weights[0].argsort(), true.argsort())
    exact = Lime(n_samples=200, alpha=1e-9).fit(model, x, target, segments=seg)
    torch.testing.assert_close(exact.weights[0], true, atol=1e-4, rtol=1e-4)


def test_lime_is_independent_of_batching(tiny_model, images) -> None:
    target = torch.tensor([1, 0, 1, 0])
    whole = Lime(n_samples=40, segmentation="slic", n_segments=10, batch_size=7).explain(
        tiny_model, images, target=target
    )
    alone = Lime(n_samples=40, segmentation="slic", n_segments=10, batch_size=None).explain(
        tiny_model, images[2:3], target=target[2:3]
    )
    torch.testing.assert_close(whole.attributions[2:3], alone.attributions, atol=1e-6, rtol=0)
    other_seed = (
        Lime(n_samples=40, segmentation="slic", n_segments=10, seed=1)
        .explain(tiny_model, images, target)
        .maps
    )
    assert not torch.allclose(whole.maps, other_seed)


def test_weighted_ridge_matches_sklearn() -> None:
    from sklearn.linear_model import Ridge

    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((2, 30, 5), 0.5), generator=gen).double()
    y = torch.randn(2, 30, generator=gen).double()
    w = torch.rand(2, 30, generator=gen).double()
    coef, intercept = weighted_ridge(x, y, w, alpha=0.7)
    for b in range(2):
        ref = Ridge(alpha=0.7).fit(x[b].numpy(), y[b].numpy(), sample_weight=w[b].numpy())
        np.testing.assert_allclose(coef[b].numpy(), ref.coef_, atol=1e-10)
        np.testing.assert_allclose(float(intercept[b]), ref.intercept_, atol=1e-10)


def test_segmentations_match_skimage(images) -> None:
    seg = segment_images(images, "slic", n_segments=9)
    for i in range(len(images)):
        ref = slic(images[i, 0].double().numpy(), n_segments=9, start_label=0, channel_axis=None)
        # same partition: a bijection between our consecutive labels and skimage's
        pairs = {(int(a), int(b)) for a, b in zip(seg[i].flatten(), ref.flatten(), strict=True)}
        assert len(pairs) == len(np.unique(ref)) == int(seg[i].max()) + 1
    quick = segment_images(images, "quickshift")
    assert quick.shape == (4, 32, 32) and quick.dtype == torch.long
    assert all(torch.equal(torch.unique(q), torch.arange(int(q.max()) + 1)) for q in quick)


def test_superpixel_means_and_top_k_mask() -> None:
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    seg = grid_segments(1, 16, 4)
    means = superpixel_means(x, seg)
    for s in range(16):
        inside = seg[0] == s
        ref = x[0][:, inside].mean(dim=1)
        torch.testing.assert_close(means[0][:, inside], ref[:, None].expand(-1, int(inside.sum())))
    weights = torch.tensor([[0.5, -1.0, 3.0, 0.0, 2.0, 0.1] + [-0.2] * 10])
    mask = top_superpixel_mask(weights, seg, k=3)
    assert torch.equal(mask[0], (seg[0] == 2) | (seg[0] == 4) | (seg[0] == 0))
    few = top_superpixel_mask(weights, seg, k=10)  # only 4 weights are positive
    assert torch.equal(few[0], torch.isin(seg[0], torch.tensor([0, 2, 4, 5])))


def test_lime_top_k_map_is_the_paper_mask(tiny_model, images) -> None:
    explainer = rx.create_explainer("lime", n_samples=30, segmentation="slic", n_segments=10, top_k=2)
    explanation = explainer.explain(tiny_model, images, target=1)
    fit = explainer.fit(tiny_model, images, explanation.targets)
    assert set(explanation.maps.unique().tolist()) <= {0.0, 1.0}
    expected = top_superpixel_mask(fit.weights, fit.segments, 2).float()
    assert torch.equal(explanation.maps, expected)
    assert explainer.passes(4, 32, 32) == (120, 0)


def test_lime_errors(tiny_model, images) -> None:
    with pytest.raises(RobustXAIError, match="unknown segmentation 'slick'; known: quickshift, slic"):
        rx.create_explainer("lime", segmentation="slick")
    for kwargs, message in [
        ({"n_samples": 0}, "n_samples must be an integer ≥ 1"),
        ({"alpha": 0}, "alpha must be a finite number > 0"),
        ({"kernel_width": -1}, "kernel_width must be a finite number > 0"),
        ({"top_k": 0}, "top_k must be None or an integer ≥ 1"),
        ({"batch_size": 0}, "batch_size must be None or an integer ≥ 1"),
    ]:
        with pytest.raises(RobustXAIError, match=message):
            rx.create_explainer("lime", **kwargs)
    with pytest.raises(UnknownNameError, match="n_superpixels"):
        rx.create_explainer("lime", n_superpixels=5)
    lime = Lime(n_samples=4)
    with pytest.raises(RobustXAIError, match=r"segments must have shape \[4, 32, 32\]"):
        lime.fit(tiny_model, images, torch.zeros(4, dtype=torch.long), segments=torch.zeros(4, 16, 16).long())
    with pytest.raises(RobustXAIError, match="integer labels"):
        lime.fit(tiny_model, images, torch.zeros(4, dtype=torch.long), segments=torch.zeros(4, 32, 32))
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        segment_images(images * 3)
    with pytest.raises(RobustXAIError, match="top_k must be an integer ≥ 1"):
        top_superpixel_mask(torch.ones(1, 3), torch.zeros(1, 4, 4, dtype=torch.long), k=0)


# ----------------------------------------------------------------------------------------------- XRAI


def test_felzenszwalb_masks_equal_pair(smooth_images) -> None:
    for i in range(2):
        ours = felzenszwalb_masks(smooth_images[i : i + 1])[0]
        ref = pair._get_segments_felzenszwalb(
            smooth_images[i].permute(1, 2, 0).double().numpy(), resize_image=False
        )
        assert ours.shape[0] == len(ref) > 1
        assert all(np.array_equal(a, b) for a, b in zip(ours.numpy(), ref, strict=True))
    # the explainer scales its pixel parameters, but at the reference size it is PAIR's segmentation
    at_reference = XRAI(reference_size=48).segment(smooth_images[:1])[0]
    assert torch.equal(at_reference, felzenszwalb_masks(smooth_images[:1])[0])


@pytest.mark.parametrize("area_threshold", [1.0, 0.4])
def test_xrai_equals_pair_given_the_same_attributions_and_segments(
    tiny_model, smooth_images, area_threshold
) -> None:
    target = torch.tensor([0, 1])
    explainer = XRAI(n_steps=8, reference_size=None, area_threshold=area_threshold)
    ours = explainer.explain(tiny_model, smooth_images, target=target)
    ig = rx.create_explainer("integrated_gradients", n_steps=8).explain(
        tiny_model, smooth_images, target=target
    )
    for i in range(2):
        image = smooth_images[i].permute(1, 2, 0).double().numpy()
        segments = pair._get_segments_felzenszwalb(image, resize_image=False)
        params = pair.XRAIParameters(area_threshold=area_threshold, return_xrai_segments=True)
        ref = pair.XRAI().GetMaskWithDetails(
            image,
            call_model_function=None,
            base_attribution=ig.attributions[i].permute(1, 2, 0).double().numpy(),
            segments=segments,
            extra_parameters=params,
        )
        scale = float(np.abs(ref.attribution_mask).max())
        np.testing.assert_allclose(ours.attributions[i, 0].numpy(), ref.attribution_mask, atol=1e-6 * scale)
        np.testing.assert_allclose(ours.maps[i].numpy(), ref.attribution_mask, atol=1e-6 * scale)
        _, ranks = xrai_regions(
            ig.attributions[i : i + 1].amax(1),
            [torch.from_numpy(np.stack(segments))],
            area_threshold=area_threshold,
        )
        np.testing.assert_array_equal(ranks[0].numpy(), ref.segments)


def test_xrai_preserves_the_attribution_total() -> None:
    attr = torch.randn(3, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    masks = felzenszwalb_masks(images, scales=(2, 8), min_size=10, dilation_radius=1)
    value, ranks = xrai_regions(attr, masks, min_pixel_diff=3)
    torch.testing.assert_close(value.sum(dim=(1, 2)), attr.sum(dim=(1, 2)))
    for b in range(3):  # each region holds its own attribution density; ranks follow the densities
        n_regions = int(ranks[b].max())
        assert n_regions > 3 and int(ranks[b].min()) == 1
        dens = []
        for r in range(1, n_regions + 1):
            region = ranks[b] == r
            torch.testing.assert_close(value[b][region], attr[b][region].mean().expand(int(region.sum())))
            dens.append(float(attr[b][region].mean()))
        assert dens[:-1] == sorted(dens[:-1], reverse=True)  # the last may be the uncovered rest


def test_xrai_pixel_parameters_scale_with_the_image() -> None:
    params = XRAI().pixel_parameters(112, 112)
    assert params["min_size"] == round(150 / 4) and params["min_pixel_diff"] == round(50 / 4)
    assert params["dilation_radius"] == round(5 / 2) and params["sigma"] == pytest.approx(0.4)
    assert XRAI(reference_size=None).pixel_parameters(64, 64)["min_size"] == 150
    assert XRAI(n_steps=7).passes(3, 32, 32) == (21, 21)


def test_xrai_errors(images) -> None:
    for kwargs, message in [
        ({"scales": ()}, "scales must be a non-empty list of numbers > 0"),
        ({"min_pixel_diff": 0}, "min_pixel_diff must be an integer ≥ 1"),
        ({"area_threshold": 0}, "area_threshold must be a finite number > 0 and ≤ 1"),
        ({"reference_size": 0}, "reference_size must be None or an integer ≥ 1"),
        ({"n_steps": 0}, "n_steps must be"),
        ({"baseline": "black"}, "baseline must be"),
    ]:
        with pytest.raises(RobustXAIError, match=message):
            rx.create_explainer("xrai", **kwargs)
    attr = torch.zeros(2, 8, 8)
    with pytest.raises(RobustXAIError, match="one mask stack per image"):
        xrai_regions(attr, [torch.zeros(1, 8, 8, dtype=torch.bool)])
    with pytest.raises(RobustXAIError, match=r"boolean \[M, 8, 8\]"):
        xrai_regions(attr, [torch.zeros(1, 8, 8)] * 2)
    with pytest.raises(RobustXAIError, match=r"\[B, H, W\]"):
        xrai_regions(torch.zeros(8, 8), [])
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        felzenszwalb_masks(images - 1)
