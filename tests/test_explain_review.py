"""Explainers on unusual models: overlapping gradients, gates outside the batch, threads, bad wrappers."""

from __future__ import annotations

import logging
import threading

import pytest
import torch
from captum.attr import DeepLift, InputXGradient, Saliency
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.explain import explain_targets

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


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
        explain_targets(rx.create_explainer("saliency"), wrapped, x, "all")
    right = rx.wrap_model(net, class_names=["a", "b"], cam_layer=None).eval()
    assert rx.create_explainer("saliency").explain(right, x, target=1).maps.shape == (2, 16, 16)


# --- DeepLIFT -------------------------------------------------------------------------------------------


def _pooled_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    ).eval()  # fmt: skip


def test_deeplift_from_two_threads_on_one_model() -> None:
    """Concurrent calls give the single-threaded maps, a saliency thread meanwhile its own, and the model
    keeps its flags and has no hooks left."""
    model = _pooled_cnn()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = rx.create_explainer("deeplift", batch_size=2).explain(model, x, target=0).maps
    saliency = rx.create_explainer("saliency").explain(model, x, target=0).maps
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            for _ in range(4):
                explainer = rx.create_explainer(name, **({"batch_size": 2} if name == "deeplift" else {}))
                results.append(explainer.explain(model, x, target=0).maps)
        except BaseException as exc:  # noqa: BLE001 - collected and reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("deeplift", "deeplift", "saliency")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 12
    for maps in results:
        assert torch.equal(maps, expected) or torch.equal(maps, saliency)
    assert sum(torch.equal(m, expected) for m in results) == 8
    assert model[1].inplace and model[4].inplace
    assert not model[2].return_indices and not model[5].return_indices
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert "forward" not in vars(module)


class _Gated(nn.Module):
    """Features times ``sigmoid(gate)``: the gate ``[1, C, 1, 1]`` and a 0-dim scale go through Sigmoid
    modules without being functions of the image."""

    def __init__(self, with_scalar: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.relu, self.sig, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sigmoid(), nn.Linear(4, 2)
        self.gate = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.scale = nn.Parameter(torch.tensor(0.7)) if with_scalar else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x)) * self.sig(self.gate)
        if self.scale is not None:
            h = h * self.sig(self.scale)
        return self.fc(h.mean(dim=(2, 3)))


def test_deeplift_leaves_hooked_modules_on_other_tensors_alone() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)).double()
    model = _Gated().double().eval()
    attr = rx.create_explainer("deeplift").explain(model, x, target=0).attributions
    ref = DeepLift(model).attribute(x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=0)
    torch.testing.assert_close(attr, ref, atol=1e-12, rtol=0)
    scalar = _Gated(with_scalar=True).double().eval()
    attr = rx.create_explainer("deeplift").explain(scalar, x, target=1).attributions
    with torch.no_grad():
        gap = scalar(x)[:, 1] - scalar(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), gap, atol=1e-12, rtol=0)


def test_deeplift_pass_rows_of_a_softmax_model_is_the_whole_batch(tiny_attention_model) -> None:
    expl = rx.create_explainer("deeplift", batch_size=2)
    assert expl.pass_rows(8) == 2
    assert expl.pass_rows(8, "cpu", tiny_attention_model) == 16
    assert expl.pass_rows(8, "cpu", _pooled_cnn()) == 2


def test_deeplift_warns_once_when_the_sums_miss_the_gap(caplog) -> None:
    torch.manual_seed(0)
    gelu = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.GELU(), nn.Conv2d(4, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(2)
    )
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)).double()
    gelu = gelu.double().eval()
    gelu(x)  # materialise the lazy layer
    with caplog.at_level(logging.WARNING, logger="robustxai.explain._deeplift"):
        rx.create_explainer("deeplift", baseline="mean").explain(gelu, x, target=0)
    found = [r for r in caplog.records if "f(x) − f(x₀)" in r.getMessage()]
    assert len(found) == 1 and found[0].levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="robustxai.explain._deeplift"):
        rx.create_explainer("deeplift", baseline="mean").explain(gelu, x, target=1)  # same model: DEBUG only
    again = [r for r in caplog.records if "f(x) − f(x₀)" in r.getMessage()]
    assert len(again) == 1 and again[0].levelno == logging.DEBUG
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustxai.explain._deeplift"):
        rx.create_explainer("deeplift", baseline="mean").explain(_pooled_cnn().double(), x, target=0)
    assert caplog.records == []


def test_deeplift_says_whether_the_sums_held(tiny_attention_model, caplog) -> None:
    """Each call's Explanation says whether its sums held; the explainer keeps no per-call state."""
    gen = torch.Generator().manual_seed(3)
    rgb, grey = torch.rand(3, 3, 16, 16, generator=gen), torch.rand(3, 1, 32, 32, generator=gen)
    explainer = rx.create_explainer("deeplift")
    before = explainer.params()
    assert explainer.explain(_pooled_cnn(), rgb, target=0).approximate is False
    with caplog.at_level(logging.WARNING, logger="robustxai.explain._deeplift"):
        missed = explainer.explain(tiny_attention_model, grey, target=0)
    assert missed.approximate is True  # the attention product: differentiated, not decomposed
    assert caplog.records == []  # softmax models miss by design: not logged
    assert explainer.explain(_pooled_cnn(), rgb, target=0).approximate is False  # per call, not sticky
    assert explainer.params() == before and not hasattr(explainer, "summation_held")


class _InPlace(nn.Module):
    """In-place operations on the outputs of hooked modules, as models write them (``h += …``)."""

    def __init__(self, pool: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.leaky = nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2) if pool else nn.Conv2d(4, 4, 2, stride=2)
        self.relu, self.fc = nn.ReLU(), nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.leaky(self.conv(x))
        h *= 2.0  # changes the output the max-pool's rule would otherwise take its differences from
        h = self.pool(h)
        h += 1.0
        return self.fc(self.relu(h).flatten(1))


@pytest.mark.parametrize("pool", [True, False])
def test_deeplift_on_outputs_changed_in_place(pool: bool) -> None:
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)).double()
    model = _InPlace(pool).double().eval()
    attr = rx.create_explainer("deeplift").explain(model, x, target=0).attributions
    with torch.no_grad():
        gap = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), gap, atol=1e-10, rtol=0)  # summation to delta
    if not pool:  # no hooked modules in a row: Captum 0.9 is exact here (captum#1104)
        ref = DeepLift(model).attribute(
            x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=0
        )
        torch.testing.assert_close(attr, ref, atol=1e-12, rtol=0)
