"""Incremental occlusion (robustxai.explain._incremental) against Captum's ``Occlusion``, in float64.

Every case checks that the incremental engine really ran (or, for unsupported models, that it declined and
the explainer fell back to Captum) and that the attributions equal Captum's to 1e-9.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import nn

import robustxai as rx
from robustxai.explain import _incremental as incremental
from robustxai.explain._fxgraph import trace

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._fxgraph, robustxai.explain._incremental"

TOL = {"atol": 1e-9, "rtol": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


def _captum(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, window: int, stride: int, baseline: str
):
    reference = 0.0 if baseline == "zero" else x.mean(dim=(1, 2, 3), keepdim=True)
    c = x.shape[1]
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(c, window, window),
        strides=(c, stride, stride),
        baselines=reference,
        target=targets,
    )


def _check(
    model: nn.Module,
    x: torch.Tensor,
    window: int,
    stride: int,
    baseline: str = "zero",
    incremental_runs: bool = True,
    reduction: str = "max",
) -> None:
    """The explainer equals Captum; the incremental engine ran (or declined) as expected."""
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    reference = 0.0 if baseline == "zero" else x.mean(dim=(1, 2, 3), keepdim=True)
    with torch.no_grad():
        direct = incremental.occlusion(model, x, targets, window, stride, reference)
        if direct is not None:
            assert torch.equal(direct[1], targets)
    assert (direct is not None) == incremental_runs
    expl = rx.create_explainer(
        "occlusion", window=window, stride=stride, baseline=baseline, reduction=reduction
    )
    e = expl.explain(model, x, target=targets)
    assert e.engine == ("incremental" if incremental_runs else "captum")
    ref = _captum(model, x, targets, window, stride, baseline).to(x.dtype)
    torch.testing.assert_close(e.attributions, ref, **TOL)
    expected = ref.amax(dim=1) if reduction == "max" else ref.abs().amax(dim=1)
    torch.testing.assert_close(e.maps, expected, **TOL)
    assert ref.abs().max() > 0


def _images(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- supported models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zero", "mean"])
@pytest.mark.parametrize("reduction", ["max", "max_abs"])
def test_smallcnn_equals_captum(baseline, reduction) -> None:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval().double()
    _check(model, _images(3, 1, 64, 64), 8, 4, baseline, reduction=reduction)


@pytest.mark.parametrize(
    ("size", "window", "stride"), [((37, 45), 7, 5), ((33, 33), 5, 3), ((40, 24), 6, 6), ((16, 20), 16, 4)]
)
def test_smallcnn_odd_sizes_and_windows_cut_at_the_border(size, window, stride) -> None:
    torch.manual_seed(1)
    model = rx.create_model("smallcnn", widths=(8, 16, 16, 16)).eval().double()
    _check(model, _images(2, 1, *size, seed=1), window, stride, "mean")


def test_grey_images_repeated_to_an_rgb_network() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    model = (
        rx.ModelWrapper(
            net, ["a", "b", "c"], mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), in_channels=1, net_channels=3
        )
        .eval()
        .double()
    )
    _check(model, _images(2, 1, 32, 32, seed=2), 6, 3, "zero")


def test_resnet18_equals_captum() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=3).eval().double()
    start = time.perf_counter()
    _check(model, _images(1, 3, 64, 64, seed=3), 16, 8, "mean")
    assert time.perf_counter() - start < 60


class Residual(nn.Module):
    """x + f(x) with f changing neither size nor channels; the sum of two differently grown boxes."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=2),
            nn.BatchNorm2d(c),
            nn.GELU(),
            nn.Conv2d(c, c, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.body(x))


def _strided_net() -> nn.Module:
    """Stride-2 and 1×1 stride-2 convolutions (boxes cut by the stride), padded pools, many activations."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1),
        nn.BatchNorm2d(6),
        nn.LeakyReLU(0.1),
        nn.Conv2d(6, 8, 1, stride=2),
        nn.Softplus(),
        nn.MaxPool2d(3, stride=1, padding=1),
        Residual(8),
        nn.AvgPool2d(3, stride=1, padding=1),
        nn.ELU(),
        nn.Conv2d(8, 8, (3, 2), stride=(1, 2), padding=(1, 0)),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval().double()


@pytest.mark.parametrize(("size", "window", "stride"), [((29, 35), 6, 4), ((31, 31), 3, 2), ((96, 80), 8, 8)])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_stride_2_model_odd_sizes(size, window, stride, baseline) -> None:
    _check(_strided_net(), _images(2, 2, *size, seed=5), window, stride, baseline)


# --- unsupported parts and models --------------------------------------------------------------------------


class GroupNormInTheMiddle(nn.Module):
    """A non-local op (group norm) between convolutions: from there on the engine computes whole maps."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.relu(self.norm(self.a(x))))
        return self.fc(torch.roll(y, 1, dims=-1).mean(dim=(2, 3)))


class Untraceable(nn.Module):
    """Control flow on values: torch.fx cannot trace it, so the explainer uses Captum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if float(y.mean()) > 100:
            y = -y
        return y.amax(dim=(2, 3))


class ViewFlatten(nn.Module):
    """LeNet-style ``x.view(x.size(0), -1)`` on a feature map (channels-last inside the engine)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(y.view(y.size(0), -1))


def test_view_of_a_feature_map() -> None:
    torch.manual_seed(12)
    _check(ViewFlatten().double().eval(), _images(2, 1, 16, 16, seed=12), 4, 2, "zero")


def test_unsupported_op_is_computed_in_full() -> None:
    torch.manual_seed(6)
    _check(GroupNormInTheMiddle().double().eval(), _images(2, 1, 20, 20, seed=6), 4, 3, "mean")


def test_untraceable_model_falls_back_to_captum() -> None:
    torch.manual_seed(7)
    _check(Untraceable().double().eval(), _images(2, 1, 16, 16, seed=7), 4, 2, incremental_runs=False)


def test_model_in_training_mode_falls_back_to_captum() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 2)).double().train()
    _check(model, _images(2, 1, 16, 16, seed=8), 4, 4, incremental_runs=False)


def test_batch_statistics_fall_back_to_captum() -> None:
    torch.manual_seed(13)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2, track_running_stats=False),
        nn.Flatten(),
        nn.Linear(2 * 14 * 14, 2),
    )
    model = model.double().eval()
    x = _images(2, 1, 16, 16, seed=13)
    assert incremental.occlusion(model, x, torch.tensor([0, 1]), 4, 4, 0.0) is None


class _Remembers(nn.Module):
    """A user's module that stores something during its forward, and branches on the input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = x.detach()
        return x.mean(dim=(2, 3)) if x.shape[-1] >= 2 else x.flatten(1)


def test_untraceable_submodule_is_opaque_and_keeps_its_state() -> None:
    torch.manual_seed(9)
    model = rx.create_model("smallcnn-attention", widths=(8, 8, 16, 16)).eval().double()
    _check(model, _images(2, 1, 32, 32, seed=9), 8, 4, "mean")  # the attention head branches: opaque
    remembers = _Remembers()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), remembers, nn.Linear(2, 2)).double().eval()
    trace(net)  # the module stores its input during forward: tracing must not leave a proxy there
    assert remembers.last is None
    _check(net, _images(2, 1, 16, 16, seed=9), 4, 4, "zero")


# --- batching and pass counts ------------------------------------------------------------------------------


def test_rows_per_pass_and_image_groups_do_not_change_the_numbers(monkeypatch) -> None:
    torch.manual_seed(10)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8)).eval().double()
    x = _images(3, 1, 32, 32, seed=10)
    expl = rx.create_explainer("occlusion", window=6, stride=4, baseline="mean")
    whole = expl.explain(model, x).maps
    monkeypatch.setattr(incremental, "CLEAN_BYTES", 1)  # one image per group
    torch.testing.assert_close(expl.explain(model, x).maps, whole, **TOL)
    monkeypatch.undo()
    maps = [
        rx.create_explainer("occlusion", window=6, stride=4, batch_size=bs).explain(model, x).maps
        for bs in (None, 1, 7)
    ]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], **TOL)


def test_passes_count_every_window_and_the_clean_image() -> None:
    occ = rx.create_explainer("occlusion")
    assert occ.passes(16, 64, 64) == (16 * (15 * 15 + 1), 0)
    assert rx.create_explainer("occlusion", window=7, stride=5).passes(3, 37, 45) == (3 * (7 * 9 + 1), 0)


def test_predicted_targets_come_from_the_clean_pass() -> None:
    torch.manual_seed(11)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), num_classes=3).eval().double()
    x = _images(3, 1, 32, 32, seed=11)
    e = rx.create_explainer("occlusion", window=6, stride=4).explain(model, x)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    torch.testing.assert_close(e.targets, targets)
    torch.testing.assert_close(e.attributions, _captum(model, x, targets, 6, 4, "zero").double(), **TOL)
