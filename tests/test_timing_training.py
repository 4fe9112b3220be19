"""A training step timed without the input-gradient pass: what standard training needs, and its memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from robustxai.audit._config import load_config
from robustxai.audit._estimate import estimate_audit
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._timing import PassTime, TimingCache, measure, timing_key

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


def _config(tmp_path: Path, training: str) -> Path:
    path = tmp_path / f"{training}.toml"
    path.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "[data]\nn_train = 40\nn_test = 8\nsize = 16\n"
        f'[[models]]\nname = "m"\narch = "smallcnn"\ntraining = "{training}"\n'
        "arch_kwargs = { widths = [4, 4, 4, 4] }\n"
        "[training]\nepochs = 1\nbatch_size = 8\n[explain]\nn_images = 3\nbatch_size = 3\n"
        "[manipulation]\nmodels = []\n"
    )
    return path


class _Recording(TimingCache):
    """Records how each pass time was asked for (and measures nothing: fixed numbers)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.asked: list[tuple[int, bool, bool]] = []

    def get(self, spec, model, shape, batch, device="cpu", *, train=False, gradient=True):  # type: ignore[override]
        self.asked.append((batch, train, gradient))
        return PassTime(batch, 0.01 * batch, 0.03 * batch, 0.05 * batch if train else None, 1000 * batch, 100)


@pytest.mark.parametrize(("training", "input_gradients"), [("standard", False), ("pgd", True)])
def test_the_plan_times_input_gradients_only_where_training_runs_them(
    tmp_path: Path, training: str, input_gradients: bool
) -> None:
    cfg = load_config(_config(tmp_path, training), profile="smoke")
    timing = _Recording()
    est = estimate_audit(cfg, timing=timing)
    assert (8, True, input_gradients) in timing.asked  # the training step at its batch of 8
    assert all(not train for b, train, _g in timing.asked if b != 8)  # evaluation passes: no training
    assert 8 not in est.models["m"]  # evaluation passes are never priced by the training measurement
    assert set(est.training_models["m"]) == {8}
    line = next(x for x in plan_lines(est) if "a training step" in x)
    assert line == "  model m, a training step (float32): batch 8: 50.00 ms/image"
