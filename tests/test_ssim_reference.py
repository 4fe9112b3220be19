"""``SsimReference`` (one SSIM side's window means made once) against the plain call: bit for bit."""

from __future__ import annotations

import pytest
import torch

from robustxai._errors import RobustXAIError
from robustxai.metrics._similarity import SsimReference, ssim_per_image

WHITE_BOX = (
    "why: the reference is an internal speed-up of the manipulation attack; its contract is SSIM's numbers"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_either_side_as_a_reference_gives_the_same_bits(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 20, 17, generator=g, dtype=dtype)
    b = torch.rand(6, 20, 17, generator=g, dtype=dtype)
    plain = ssim_per_image(a, b)
    assert torch.equal(ssim_per_image(a, SsimReference(b)), plain)
    assert torch.equal(ssim_per_image(SsimReference(a), b), plain)
    assert torch.equal(ssim_per_image(SsimReference(a), SsimReference(b)), plain)


def test_gradient_through_the_other_side_is_unchanged() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(4, 16, 16, generator=g)
    b = torch.rand(4, 16, 16, generator=g)
    x1, x2 = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(ssim_per_image(x1, b).sum(), x1)
    (g2,) = torch.autograd.grad(ssim_per_image(x2, SsimReference(b)).sum(), x2)
    assert torch.equal(g1, g2)
    y1, y2 = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
    (h1,) = torch.autograd.grad(ssim_per_image(b, y1).sum(), y1)
    (h2,) = torch.autograd.grad(ssim_per_image(SsimReference(b), y2).sum(), y2)
    assert torch.equal(h1, h2)


def test_shape_errors_are_one_line() -> None:
    with pytest.raises(RobustXAIError, match="at least 7×7"):
        SsimReference(torch.rand(2, 5, 5))
    with pytest.raises(RobustXAIError, match=r"\[B, H, W\]"):
        ssim_per_image(torch.rand(2, 8, 8), SsimReference(torch.rand(3, 8, 8)))


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_the_attack_gives_the_same_images_with_and_without_references(
    tiny_model, images, labels, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the descent with its SSIM sides made once equals the descent that recomputes them."""
    from robustxai.manipulate import create_manipulation
    from robustxai.manipulate._search import Problem

    target = torch.zeros(32, 32)
    target[:8, 24:] = 1.0

    def attack() -> torch.Tensor:
        atk = create_manipulation("manipulate", method=method, iterations=6, lr=0.05, preset="ssim")
        return atk(tiny_model, images, labels, target_maps=target)

    with_refs = attack()
    monkeypatch.setattr(Problem, "images_ssim", property(lambda p: p.images))  # plain tensors instead
    monkeypatch.setattr(Problem, "target_loss_ssim", property(lambda p: p.target_loss))
    monkeypatch.setattr(Problem, "target_01_ssim", property(lambda p: p.target_01))
    assert torch.equal(attack(), with_refs)
