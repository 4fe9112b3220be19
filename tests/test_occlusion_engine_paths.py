"""Incremental occlusion: hooks, windows that change nothing, tracing once per model, declines.

Helpers come from ``test_occlusion_incremental`` (float64 equality with Captum, engine path asserted).
"""

from __future__ import annotations

import logging
import threading

import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai.explain import _fxgraph as fxgraph, _incremental as incremental
from robustxai.metrics import topk_mask
from test_occlusion_incremental import Untraceable, _captum, _check, _images

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.explain._fxgraph, robustxai.explain._incremental"

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest.py)


# --- hooks, unchanged windows, tracing once, declines ------------------------------------------------------


def _hook_net() -> nn.Module:
    torch.manual_seed(14)
    return (
        nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 3),
        )
        .double()
        .eval()
    )


def test_hooks_on_window_and_pointwise_modules_run_on_whole_tensors() -> None:
    model = _hook_net()
    model[0].register_forward_hook(lambda m, i, o: o * 2 + 0.1)
    model[1].register_forward_pre_hook(lambda m, i: (i[0].flip(-1),))  # not pointwise
    model[2].register_forward_pre_hook(lambda m, i: (i[0].roll(1, -2),))
    _check(model, _images(2, 2, 24, 24, seed=14), 4, 2, "mean")


def test_hooks_the_trace_would_skip_fall_back_to_captum() -> None:
    model = _hook_net()
    handle = model.register_forward_hook(lambda m, i, o: o.flip(-1))  # on the root: not a traced call
    _check(model, _images(2, 2, 16, 16, seed=15), 4, 4, incremental_runs=False)
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        _check(model, _images(2, 2, 16, 16, seed=15), 4, 4, incremental_runs=False)
    finally:
        handle.remove()


def test_windows_equal_to_the_baseline_score_exactly_zero_in_float32() -> None:
    torch.manual_seed(16)
    model = rx.ModelWrapper(
        rx.create_model("smallcnn").net, ["a", "b"], mean=(0.5,), std=(0.25,), in_channels=1
    ).eval()
    x = torch.zeros(2, 1, 64, 64)
    x[:, :, 22:38, 24:40] = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    expl = rx.create_explainer("occlusion", window=8, stride=4)
    ours = expl.explain(model, x, target=targets)
    assert ours.engine == "incremental"
    captum = _captum(model, x, targets, 8, 4, "zero")
    assert (captum == 0).any()
    assert ((captum != 0) | (ours.attributions == 0)).all()  # (captum == 0) ⇒ (ours == 0)
    torch.testing.assert_close(ours.attributions, captum, atol=1e-6, rtol=1e-4)
    assert torch.equal(topk_mask(ours.maps, 0.15), topk_mask(captum.amax(dim=1), 0.15))


def test_the_model_is_traced_once_per_module_tree(monkeypatch) -> None:
    calls = []
    real = fxgraph.trace
    monkeypatch.setattr(fxgraph, "trace", lambda root: calls.append(root) or real(root))
    model = _hook_net()
    x = _images(1, 2, 16, 16, seed=17)
    for _ in range(2):
        assert incremental.occlusion(model, x, None, 4, 4, 0.0) is not None
    assert len(calls) == 1
    model[3] = nn.Conv2d(6, 6, 5, padding=2).double().eval()  # a new module tree: traced again
    assert incremental.occlusion(model, x, None, 4, 4, 0.0) is not None
    assert len(calls) == 2


def test_tracing_is_serialised(monkeypatch) -> None:
    models = [_hook_net() for _ in range(4)]
    x = _images(1, 2, 16, 16, seed=18)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda m=m: results.append(incremental.occlusion(m, x, None, 4, 4, 0.0)))
        for m in models
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is not None for r in results)


def test_a_decline_is_logged_once_and_remembered(monkeypatch, caplog) -> None:
    torch.manual_seed(7)
    model = Untraceable().double().eval()
    calls = []
    real = fxgraph.trace
    monkeypatch.setattr(fxgraph, "trace", lambda root: calls.append(root) or real(root))
    x = _images(2, 1, 16, 16, seed=7)
    with caplog.at_level(logging.INFO, logger=incremental.__name__):
        for _ in range(2):
            rx.create_explainer("occlusion", window=4, stride=4).explain(model, x)
    assert len(calls) == 1
    declines = [r for r in caplog.records if "using Captum's full passes" in r.getMessage()]
    assert len(declines) == 1 and declines[0].levelno == logging.INFO


def test_an_engine_error_is_a_warning_not_a_silent_fallback(monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(incremental.Engine, "run", broken)
    model = _hook_net()
    with caplog.at_level(logging.INFO, logger=incremental.__name__):
        assert incremental.occlusion(model, _images(1, 2, 16, 16), None, 4, 4, 0.0) is None
    assert any(r.levelno == logging.WARNING and "engine bug" in r.exc_text for r in caplog.records)


class Scaled(nn.Module):
    """A tensor made inside forward: fx keeps it as a constant attribute of the root while tracing."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([2.0, 3.0], dtype=torch.float64).view(1, 2, 1, 1)
        return self.fc((self.conv(x) * scale).mean(dim=(2, 3)))


def test_tensors_made_in_forward_survive_the_restored_root() -> None:
    torch.manual_seed(19)
    model = Scaled().double().eval()
    _check(model, _images(2, 1, 12, 12, seed=19), 4, 2)
    assert "_tensor_constant0" not in model.__dict__


def test_a_change_that_dies_before_the_whole_tensor_part_scores_zero(monkeypatch) -> None:
    torch.manual_seed(20)
    gate = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        gate.weight.fill_(1.0)
        gate.bias.fill_(-0.5)  # a dim background (< 0.5) is 0 after the ReLU, occluded or not
    model = nn.Sequential(
        gate,
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 3),
    ).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(20)) * 0.4
    x[:, :, 10:22, 12:24] += 0.6
    moved: list[torch.Tensor] = []
    real = incremental.Engine.run

    def spy(self, *args):
        out, rows = real(self, *args)
        moved.append(rows)
        return out, rows

    monkeypatch.setattr(incremental.Engine, "run", spy)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
        ours = incremental.occlusion(model, x, targets, 6, 3, 0.0)
    assert ours is not None
    assert not torch.cat(moved).all()  # rows whose input changed, but no box reaching the flatten did
    captum = _captum(model, x, targets, 6, 3, "zero")
    assert (captum == 0).any() and ((captum != 0) | (ours[0] == 0)).all()
    torch.testing.assert_close(ours[0], captum, atol=1e-6, rtol=1e-4)
