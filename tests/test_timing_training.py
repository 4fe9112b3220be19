"""A training step timed without the input-gradient pass: what standard training needs, and its memory."""

from __future__ import annotations

import torch
from torch import nn

from robustxai.audit._timing import TimingCache, measure, timing_key

WHITE_BOX = "why: the plan's timing internals (which passes a training measurement runs) are the subject"


class _Probe(nn.Module):
    """A frozen conv + batch-norm backbone and a trainable head; counts input-gradient passes."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        self.input_gradient_passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            self.input_gradient_passes += 1
        return self.head(self.backbone(x))


def test_without_input_gradients_no_such_pass_runs_and_memory_is_the_training_steps() -> None:
    torch.manual_seed(0)
    model = _Probe()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lean = measure(model, (1, 16, 16), 8, train=True, gradient=False, repeats=1)
    assert model.input_gradient_passes == 0
    assert lean.train is not None and lean.gradient == lean.train  # the stand-in the docstring names
    full = measure(model, (1, 16, 16), 8, train=True, repeats=1)
    assert model.input_gradient_passes > 0
    # the frozen backbone saves nothing for training: only the head's input (8 × 8 floats per image)
    assert lean.activation_bytes < full.activation_bytes / 4
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics put back


def test_the_two_measurements_are_cached_apart() -> None:
    spec, shape = ["probe"], (1, 16, 16)
    assert timing_key(spec, shape, 8, "cpu", True) != timing_key(spec, shape, 8, "cpu", True, gradient=False)
    assert timing_key(spec, shape, 8, "cpu", True) == timing_key(spec, shape, 8, "cpu", True, gradient=True)
    cache = TimingCache(None)
    model = _Probe()
    cache.get(spec, lambda: model, shape, 4, train=True, gradient=False)
    cache.get(spec, lambda: model, shape, 4, train=True)
    assert cache.measured == 2
