"""Explainers on unusual models: overlapping gradients, gates outside the batch, threads, bad wrappers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from captum.attr import InputXGradient, Saliency
from torch import nn

import robustxai as rx
from robustxai.errors import RobustXAIError


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _SumFirst(nn.Module):
    """Global sum pooling straight on the input: autograd returns an expanded (stride-0) input gradient."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.sum(dim=(2, 3)))


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"])
def test_gradient_methods_take_an_expanded_input_gradient(name: str) -> None:
    model = _SumFirst().eval()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    attr = rx.create_explainer(name).explain(model, x, target=0).attributions
    if name == "saliency":
        ref = Saliency(model).attribute(x.clone().requires_grad_(True), target=0)
        torch.testing.assert_close(attr, ref, atol=1e-6, rtol=1e-6)
    elif name == "input_x_gradient":
        ref = InputXGradient(model).attribute(x.clone().requires_grad_(True), target=0)
        torch.testing.assert_close(attr, ref, atol=1e-6, rtol=1e-6)
    assert attr.shape == x.shape and bool(torch.isfinite(attr).all())


def test_a_wrapper_whose_class_names_disagree_with_its_logits_is_a_clear_error() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    wrapped = rx.wrap_model(net, class_names=["a", "b", "c"], cam_layer=None).eval()
    x = torch.rand(2, 3, 16, 16)
    for name in ["saliency", "deeplift"]:
        with pytest.raises(RobustXAIError, match="3 class names"):
            rx.create_explainer(name).explain(wrapped, x, target=2)
    with pytest.raises(RobustXAIError, match="3 class names"):
        rx.create_explainer("saliency").explain_targets(wrapped, x, "all")
    right = rx.wrap_model(net, class_names=["a", "b"], cam_layer=None).eval()
    assert rx.create_explainer("saliency")(right, x, target=1).shape == (2, 16, 16)
