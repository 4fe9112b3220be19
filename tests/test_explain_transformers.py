"""Transformers: the token-grid Grad-CAM layer probe, Grad-CAM on ViT/Swin, attention rollout and its
gradient-weighted variant against hand-written references, applicability and the approximate flag.

Every model is a tiny timm transformer with random weights (32 px, two blocks), built in the test.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.explain._cam import grid_gradcam
from robustxai.explain._rollout import attention_modules
from robustxai.models import wrap_model

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._cam, robustxai.explain._rollout"

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = {
    "vit": (
        "vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
    ),
    "deit": (
        "deit_tiny_distilled_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
    ),
    "swin": (
        "swin_tiny_patch4_window7_224",
        {
            "img_size": 32,
            "patch_size": 4,
            "window_size": 4,
            "embed_dim": 16,
            "depths": (1, 1),
            "num_heads": (1, 2),
        },
    ),
    "xcit": (
        "xcit_nano_12_p16_224",
        {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
    ),
}


def tiny(kind: str, seed: int = 0) -> rx.models.ModelWrapper:
    """A tiny random timm transformer in the wrapper (identity normalisation, 3 channels), in eval mode."""
    torch.manual_seed(seed)
    arch, kwargs = SPECS[kind]
    net = timm.create_model(arch, pretrained=False, num_classes=3, **kwargs)
    return wrap_model(net, ["a", "b", "c"], in_channels=3).eval()


@pytest.fixture
def rgb() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_probe_finds_the_token_grid_of_each_transformer() -> None:
    found = {k: (m.cam_layer, m.cam_layout, m.cam_prefix) for k in SPECS for m in [tiny(k)]}
    assert found == {
        "vit": ("blocks.1.norm1", "tokens", 1),  # patch tokens after it never reach the class token
        "deit": ("blocks.1.norm1", "tokens", 2),  # class + distillation tokens
        "swin": ("norm", "nhwc", 0),  # average-pooled: the final normalised map
        "xcit": ("cls_attn_blocks.1.norm1", "tokens", 1),
    }
    assert rx.create_model("smallcnn").cam_layout == "nchw"


def _hand_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor, prefix: int | None):
    """Grad-CAM written out: tokens [B, N, C] (or a [B, h, w, C] map when prefix is None) on the grid."""
    kept = []
    handle = layer.register_forward_hook(lambda _m, _i, o: kept.append(o))
    logits = model(x.requires_grad_(True))
    handle.remove()
    (grad,) = torch.autograd.grad(logits[torch.arange(len(t)), t].sum(), kept[0])
    act = kept[0].detach()
    if prefix is not None:
        b, n, c = act.shape
        side = int((n - prefix) ** 0.5)
        act = act[:, prefix:].reshape(b, side, side, c)
        grad = grad[:, prefix:].reshape(b, side, side, c)
    weights = grad.mean(dim=(1, 2))  # [B, C]
    return torch.relu(torch.einsum("bhwc,bc->bhw", act, weights))[:, None]


@pytest.mark.parametrize(("kind", "prefix"), [("vit", 1), ("deit", 2), ("swin", None)])
def test_gradcam_on_a_transformer_equals_the_hand_computed_token_grid(kind, prefix, rgb) -> None:
    model = tiny(kind)
    t = torch.tensor([0, 1, 2])
    got = rx.create_explainer("gradcam").explain(model, rgb, target=t)
    want = _hand_gradcam(model, model.get_cam_layer(), rgb.clone(), t, prefix)
    assert got.attributions.shape == want.shape == (3, 1, 4, 4)
    torch.testing.assert_close(got.attributions, want, rtol=1e-5, atol=1e-8)
    assert want.abs().sum() > 0  # not a blank map


@pytest.mark.parametrize("layer", ["net.norm", "net.layers.1"])
def test_gradcam_on_a_named_swin_layer_reads_it_channels_last(layer, rgb) -> None:
    """A layer named by the user: Swin's ``[B, h, w, C]`` is not read as ``[B, C, h, w]``."""
    model = tiny("swin")
    t = torch.tensor([0, 1, 2])
    got = rx.create_explainer("gradcam", layer=layer).explain(model, rgb, target=t)
    module = model.get_submodule(layer)
    want = _hand_gradcam(model, module, rgb.clone(), t, None)
    assert got.attributions.shape == want.shape == (3, 1, 4, 4)
    torch.testing.assert_close(got.attributions, want, rtol=1e-5, atol=1e-8)


def test_a_swin_whose_grid_side_equals_its_channels_is_still_channels_last(rgb) -> None:
    """[B, 8, 8, 8]: the shape fits both layouts; the final LayerNorm over the last axis decides."""
    kw = {
        "img_size": 32,
        "patch_size": 4,
        "window_size": 4,
        "embed_dim": 8,
        "depths": (1,),
        "num_heads": (1,),
    }
    torch.manual_seed(0)
    net = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=3, **kw)
    model = wrap_model(net, ["a", "b", "c"], in_channels=3).eval()
    assert (model.cam_layer, model.cam_layout) == ("norm", "nhwc")
    zoo = rx.create_model(
        "timm:swin_tiny_patch4_window7_224", random_init=True, num_classes=3, model_kwargs=kw
    )
    assert (zoo.cam_layer, zoo.cam_layout) == ("norm", "nhwc")
    t = torch.tensor([0, 1, 2])
    got = rx.create_explainer("gradcam").explain(model, rgb, target=t)
    want = _hand_gradcam(model, model.get_cam_layer(), rgb.clone(), t, None)
    torch.testing.assert_close(got.attributions, want, rtol=1e-5, atol=1e-8)


def test_the_prefix_is_the_networks_own_count_of_class_and_register_tokens() -> None:
    """A class token and 4 registers on a 2 × 2 grid: 9 tokens, which alone would read as a 3 × 3 grid."""
    torch.manual_seed(0)
    kw = {"img_size": 32, "patch_size": 16, "depth": 2, "embed_dim": 32, "num_heads": 2, "reg_tokens": 4}
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, **kw)
    model = wrap_model(net, ["a", "b", "c"], in_channels=3).eval()
    assert (model.cam_layer, model.cam_layout, model.cam_prefix) == ("blocks.1.norm1", "tokens", 5)
    x, t = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 2])
    got = rx.create_explainer("gradcam").explain(model, x, target=t)
    want = _hand_gradcam(model, model.get_cam_layer(), x.clone(), t, 5)
    assert got.attributions.shape == (2, 1, 2, 2)
    torch.testing.assert_close(got.attributions, want, rtol=1e-5, atol=1e-8)
    named = rx.create_explainer("gradcam", layer="net.blocks.0.norm1").explain(model, x, target=t)
    want0 = _hand_gradcam(model, model.get_submodule("net.blocks.0.norm1"), x.clone(), t, 5)
    torch.testing.assert_close(named.attributions, want0, rtol=1e-5, atol=1e-8)


def test_a_vit_fixed_to_a_non_square_size_finds_its_token_grid() -> None:
    """img_size = (32, 48), patch 8: a 4 × 6 grid; the probe runs an image of that size, not a square one."""
    torch.manual_seed(0)
    kw = {"img_size": (32, 48), "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, **kw)
    model = wrap_model(net, ["a", "b", "c"], in_channels=3, input_size=(32, 48)).eval()
    assert (model.cam_layer, model.cam_layout, model.cam_prefix) == ("blocks.1.norm1", "tokens", 1)
    x, t = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 2])
    got = rx.create_explainer("gradcam").explain(model, x, target=t).attributions
    kept: list[torch.Tensor] = []
    handle = model.get_cam_layer().register_forward_hook(lambda _m, _i, o: kept.append(o))
    logits = model(x.clone().requires_grad_(True))
    handle.remove()
    (grad,) = torch.autograd.grad(logits[torch.arange(2), t].sum(), kept[0])
    act = kept[0].detach()[:, 1:].reshape(2, 4, 6, 32)  # row-major patches, class token dropped
    weights = grad[:, 1:].reshape(2, 4, 6, 32).mean(dim=(1, 2))
    want = torch.relu(torch.einsum("bhwc,bc->bhw", act, weights))[:, None]
    assert got.shape == (2, 1, 4, 6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


def test_grid_gradcam_on_a_cnn_equals_captum(rgb) -> None:
    model = rx.create_model("smallcnn", in_channels=3, widths=(4, 8, 8, 8)).eval()
    t = torch.tensor([0, 1, 0])
    ours = grid_gradcam(model, model.get_cam_layer(), rgb, t, "nchw", 0)
    ref = LayerGradCam(model, model.get_cam_layer()).attribute(rgb, target=t, relu_attributions=True)
    torch.testing.assert_close(ours, ref)
    named = rx.create_explainer("gradcam", layer=f"net.{model.cam_layer}").explain(model, rgb, target=t)
    torch.testing.assert_close(named.attributions, ref)  # a user-named layer reads its layout itself


def test_guided_gradcam_on_a_transformer_is_the_gradient_times_the_upsampled_cam(rgb) -> None:
    model = tiny("vit")
    t = torch.tensor([2, 1, 0])
    got = rx.create_explainer("guided_gradcam").explain(model, rgb, target=t).attributions
    x = rgb.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[torch.arange(3), t].sum(), x)  # no ReLU: guided = plain gradient
    cam = _hand_gradcam(model, model.get_cam_layer(), rgb.clone(), t, 1)
    up = nn.functional.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, grad * up, rtol=1e-5, atol=1e-9)


def _manual_vit(model: rx.models.ModelWrapper, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The tiny ViT's forward pass written out, its attention probabilities computed by hand from q and k."""
    net = model.net
    h = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
    attns = []
    for blk in net.blocks:
        y = blk.norm1(h)
        b, n, c = y.shape
        heads = blk.attn.num_heads
        q, k, v = blk.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ k.transpose(-2, -1)) / (c // heads) ** 0.5, dim=-1)
        attns.append(a)
        h = h + blk.ls1(blk.attn.proj((a @ v).transpose(1, 2).reshape(b, n, c)))
        h = h + blk.ls2(blk.mlp(blk.norm2(h)))
    return net.head(net.norm(h)[:, 0]), attns


def test_attention_rollout_equals_the_product_of_half_attention_plus_identity(rgb) -> None:
    model = tiny("vit")
    assert all(m.fused_attn for m in attention_modules(model))  # timm's fused path: no probabilities
    got = rx.create_explainer("attention_rollout").explain(model, rgb)
    logits, attns = _manual_vit(model, rgb)
    torch.testing.assert_close(logits, model(rgb))  # the hand-written forward is the model's
    n = attns[0].shape[-1]
    eye = torch.eye(n)
    a1, a2 = (0.5 * a.mean(dim=1) + 0.5 * eye for a in attns)  # rows already sum to 1
    want = (a2 @ a1)[:, 0, 1:].reshape(3, 1, 4, 4)
    torch.testing.assert_close(got.attributions, want.detach(), rtol=1e-5, atol=1e-7)
    assert all(m.fused_attn for m in attention_modules(model))  # restored


def test_attention_rollout_of_uniform_attention_is_a_uniform_known_map(rgb) -> None:
    model = tiny("vit")
    with torch.no_grad():
        for blk in model.net.blocks:  # q = k = 0: every token attends to all N tokens equally
            blk.attn.qkv.weight[: 2 * 32].zero_()
            blk.attn.qkv.bias[: 2 * 32].zero_()
    attr = rx.create_explainer("attention_rollout").explain(model, rgb).attributions
    # (½U + ½I)² = ¼I + ¾U with U = 11ᵀ/N, N = 17: each patch of the class token's row gets ¾ / 17
    torch.testing.assert_close(attr, torch.full((3, 1, 4, 4), 0.75 / 17))


def test_gradient_rollout_equals_a_hand_written_reference(rgb) -> None:
    model = tiny("vit")
    t = torch.tensor([1, 2, 0])
    got = rx.create_explainer("gradient_rollout").explain(model, rgb, target=t).attributions
    logits, attns = _manual_vit(model, rgb)
    grads = torch.autograd.grad(logits[torch.arange(3), t].sum(), attns)
    r = torch.eye(17).expand(3, 17, 17)
    for a, g in zip(attns, grads, strict=True):
        r = r + (g * a).clamp(min=0).mean(dim=1) @ r
    want = r[:, 0, 1:].reshape(3, 1, 4, 4).detach()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
    assert want.abs().sum() > 0


def test_rollout_reads_class_and_distillation_rows_of_a_distilled_deit(rgb) -> None:
    model = tiny("deit")
    attr = rx.create_explainer("attention_rollout").explain(model, rgb).attributions
    assert attr.shape == (3, 1, 4, 4) and torch.isfinite(attr).all()


def test_applicability_is_declared_without_running_the_model() -> None:
    cnn, vit, swin, xcit = rx.create_model("smallcnn"), tiny("vit"), tiny("swin"), tiny("xcit")
    cam, rollout = rx.create_explainer("gradcam"), rx.create_explainer("attention_rollout")
    assert cam.applicable(cnn) is None and cam.applicable(vit) is None and cam.applicable(swin) is None
    for model in (cnn, swin, xcit):
        assert "no global self-attention" in (rollout.applicable(model) or "")
    assert rollout.applicable(vit) is None
    mlp = wrap_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)), ["a", "b"])
    assert mlp.cam_layer is None
    assert "no spatial layer" in (cam.applicable(mlp) or "")
    assert "no spatial layer" in (rx.create_explainer("guided_gradcam").applicable(mlp) or "")
    assert rx.create_explainer("saliency").applicable(mlp) is None
    with pytest.raises(RobustXAIError, match="no cam_layer"):  # called anyway: one line
        cam.explain(mlp, torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name", rx.list_explainers())
def test_every_explainer_applies_to_a_vit_or_says_why(name, rgb) -> None:
    model = tiny("vit")
    explainer = rx.create_explainer(name)
    if explainer.applicable(model) is not None:
        return
    maps = explainer.explain(model, rgb).maps
    assert maps.shape == (3, 32, 32) and torch.isfinite(maps).all()


def test_deeplift_flags_its_maps_approximate_where_its_rules_do_not_cover_the_model(rgb) -> None:
    deeplift = rx.create_explainer("deeplift")
    cnn = rx.create_model("smallcnn", in_channels=3, widths=(4, 8, 8, 8)).eval()
    assert deeplift.explain(cnn, rgb).approximate is False
    assert deeplift.explain(tiny("vit"), rgb).approximate is True  # GELU, LayerNorm, attention
    assert rx.create_explainer("saliency").explain(tiny("vit"), rgb).approximate is False


def test_zoo_timm_transformer_gets_its_token_layer_and_model_kwargs() -> None:
    model = rx.create_model(
        "timm:vit_tiny_patch16_224",
        num_classes=2,
        head="linear",
        random_init=True,
        model_kwargs=SPECS["vit"][1],
    ).eval()
    assert (model.cam_layer, model.cam_layout, model.cam_prefix) == ("blocks.1.norm1", "tokens", 1)
    assert model.spec["kwargs"]["model_kwargs"]["img_size"] == 32
    assert rx.create_explainer("gradcam").explain(model, torch.rand(2, 3, 32, 32)).maps.shape == (2, 32, 32)
    with pytest.raises(RobustXAIError, match="model_kwargs may not set num_classes"):
        rx.create_model("timm:vit_tiny_patch16_224", random_init=True, model_kwargs={"num_classes": 3})
    with pytest.raises(RobustXAIError, match="model_kwargs"):
        rx.create_model("timm:vit_tiny_patch16_224", random_init=True, model_kwargs={"not_a_kwarg": 3})
