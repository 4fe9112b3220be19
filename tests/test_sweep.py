"""ε sweeps, only_correct and AutoAttack-style cascades: shared work, valid images, monotone success."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.attacks import cascade, robust_accuracy


def _net(num_classes: int = 4, seed: int = 0) -> rx.ModelWrapper:
    """A small conv net whose decisions move under small perturbations (random weights, 16 px)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 64, num_classes),
    )
    return rx.ModelWrapper(net, class_names=[f"c{i}" for i in range(num_classes)]).eval()


def _x(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_only_correct_leaves_clean_errors_untouched() -> None:
    model, x = _net(), _x()
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[:3] = (pred[:3] + 1) % 4  # three clean errors
    adv = rx.create_attack("pgd", eps=8 / 255)(model, x, y, only_correct=True)
    assert torch.equal(adv[:3], x[:3])
    assert not torch.equal(adv[3:], x[3:])
    full = rx.create_attack("pgd", eps=8 / 255)(model, x[3:], y[3:])
    assert torch.equal(adv[3:], full)


def test_sweep_shares_work_and_keeps_images_valid() -> None:
    model, x = _net(), _x(32)
    with torch.no_grad():
        y = model(x).argmax(1)
    pgd = rx.create_attack("pgd", steps=5)
    eps = [8 / 255, 0.0, 1 / 255, 2 / 255, 4 / 255]
    out = pgd.sweep(model, x, y, eps)
    assert list(out) == eps
    assert torch.equal(out[0.0], x)
    fooled_prev = torch.zeros(32, dtype=torch.bool)
    for e in sorted(eps)[1:]:
        adv = out[e]
        assert ((adv - x).abs().flatten(1).amax(1) <= e + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            fooled = model(adv).argmax(1) != y
        assert (fooled | ~fooled_prev).all()  # once fooled, fooled at every larger ε
        # independent runs are never stronger than the shared sweep
        with torch.no_grad():
            indep = model(pgd.with_eps(e)(model, x, y)).argmax(1) != y
        assert fooled.sum() >= indep.sum()
        fooled_prev = fooled
    assert fooled_prev.any()
    # without sharing every ε is an independent run
    alone = pgd.sweep(model, x, y, [2 / 255], share=False)[2 / 255]
    assert torch.equal(alone, pgd.with_eps(2 / 255)(model, x, y))


def test_sweep_step_size_scales_with_eps() -> None:
    pgd = rx.create_attack("pgd", eps=4 / 255)
    assert pgd.alpha == pytest.approx(1 / 255)
    assert pgd.with_eps(8 / 255).alpha == pytest.approx(2 / 255)
    assert pgd.eps == pytest.approx(4 / 255)  # the original is unchanged


def test_sweep_errors(tiny_model, images, labels) -> None:
    pgd = rx.create_attack("pgd")
    with pytest.raises(RobustXAIError, match="at least one budget"):
        pgd.sweep(tiny_model, images, labels, [])
    with pytest.raises(RobustXAIError, match="must not repeat"):
        pgd.sweep(tiny_model, images, labels, [0.1, 0.1])
    with pytest.raises(RobustXAIError, match="≥ 0"):
        pgd.sweep(tiny_model, images, labels, [-0.1])
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        pgd.sweep(tiny_model, images * 2, labels, [0.1])


def test_cascade_attacks_only_still_correct_samples() -> None:
    model, x = _net(), _x(32)
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[0] = (pred[0] + 1) % 4  # one clean error
    weak = rx.create_attack("bim", eps=3 / 255, steps=1, step_size=0.5 / 255)
    pgd = rx.create_attack("pgd", eps=3 / 255, steps=10)
    adv, correct = cascade(model, x, y, [weak, pgd])
    assert torch.equal(adv[0], x[0]) and not correct[0]
    with torch.no_grad():
        assert torch.equal(correct, model(adv).argmax(1) == y)
        alone = model(weak(model, x, y)).argmax(1) == y
    # BIM is deterministic per sample, so after it the cascade keeps exactly the clean-correct samples BIM
    # does not fool; PGD can then only remove more (its random start differs on the smaller batch)
    after_weak = alone & (pred == y)
    assert not (correct & ~after_weak).any()
    assert correct.sum() < after_weak.sum()
    assert torch.equal(robust_accuracy(model, x, y, [weak, pgd]), correct)
    assert torch.equal(pgd.robust_accuracy(model, x, y), robust_accuracy(model, x, y, pgd))


def test_cascade_errors(tiny_model, images, labels) -> None:
    with pytest.raises(RobustXAIError, match="at least one attack"):
        cascade(tiny_model, images, labels, [])
    with pytest.raises(RobustXAIError, match="must share norm and eps"):
        cascade(tiny_model, images, labels, [rx.create_attack("fgsm", eps=0.1), rx.create_attack("pgd")])
    with pytest.raises(RobustXAIError, match="takes Attack objects"):
        cascade(tiny_model, images, labels, ["pgd"])  # type: ignore[list-item]


def test_targeted_sweep_keeps_hits_and_only_correct_skips_clean_errors() -> None:
    model, x = _net(), _x(16)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    y[0] = (y[0] + 1) % 4  # a clean error
    target = (y + 2) % 4
    pgd = rx.create_attack("pgd", steps=10, targeted=True)
    out = pgd.sweep(model, x, y, [4 / 255, 16 / 255, 64 / 255], target, only_correct=True)
    hit_prev = torch.zeros(16, dtype=torch.bool)
    for e, adv in out.items():
        assert torch.equal(adv[0], x[0])
        assert ((adv - x).abs().flatten(1).amax(1) <= e + 1e-6).all()
        with torch.no_grad():
            hit = model(adv).argmax(1) == target
        assert (hit | ~hit_prev).all()
        hit_prev = hit
    assert hit_prev[1:].float().mean() > 0.5
