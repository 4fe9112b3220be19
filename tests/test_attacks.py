"""Attack contract (every registered attack) and reference properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import robustxai as rx
from robustxai.errors import RobustXAIError


@pytest.mark.parametrize("name", rx.list_attacks())
@pytest.mark.parametrize("eps", [0.0, 2 / 255, 8 / 255, 0.3])
def test_attack_stays_in_eps_ball_and_unit_range(name, eps, tiny_model, images, labels) -> None:
    attack = rx.create_attack(name, eps=eps)
    adv = attack(tiny_model, images, labels)
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert (adv - images).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not adv.requires_grad


@pytest.mark.parametrize("name", rx.list_attacks())
def test_attack_edges_of_range(name, tiny_model, labels) -> None:
    images = torch.zeros(4, 1, 32, 32)
    images[2:] = 1.0
    adv = rx.create_attack(name, eps=0.1)(tiny_model, images, labels)
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("name", rx.list_attacks())
def test_attack_rejects_bad_input(name, tiny_model, images, labels) -> None:
    attack = rx.create_attack(name, eps=4 / 255)
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        attack(tiny_model, images * 3 - 1, labels)
    with pytest.raises(RobustXAIError, match="shape"):
        attack(tiny_model, images[0], labels)
    with pytest.raises(RobustXAIError, match="labels"):
        attack(tiny_model, images, labels[:2])


@pytest.mark.parametrize("name", rx.list_attacks())
def test_negative_epsilon_is_an_error(name) -> None:
    with pytest.raises(RobustXAIError, match="≥ 0"):
        rx.create_attack(name, eps=-0.01)


def test_fgsm_equals_formula(tiny_model, images, labels) -> None:
    eps = 4 / 255
    x = images.clone().requires_grad_(True)
    F.cross_entropy(tiny_model(x), labels).backward()
    expected = (images + eps * x.grad.sign()).clamp(0, 1)
    adv = rx.create_attack("fgsm", eps=eps)(tiny_model, images, labels)
    torch.testing.assert_close(adv, expected, atol=1e-7, rtol=0)


def test_pgd_without_random_start_equals_bim(tiny_model, images, labels) -> None:
    pgd = rx.create_attack("pgd", eps=8 / 255, steps=7, step_size=2 / 255, random_start=False)
    bim = rx.create_attack("bim", eps=8 / 255, steps=7, step_size=2 / 255)
    assert torch.equal(pgd(tiny_model, images, labels), bim(tiny_model, images, labels))


def test_pgd_one_step_without_start_equals_fgsm_when_step_is_eps(tiny_model, images, labels) -> None:
    pgd = rx.create_attack("pgd", eps=4 / 255, steps=1, step_size=4 / 255, random_start=False)
    fgsm = rx.create_attack("fgsm", eps=4 / 255)
    assert torch.equal(pgd(tiny_model, images, labels), fgsm(tiny_model, images, labels))


def test_pgd_random_start_is_seeded(tiny_model, images, labels) -> None:
    a = rx.create_attack("pgd", eps=8 / 255, seed=3)(tiny_model, images, labels)
    b = rx.create_attack("pgd", eps=8 / 255, seed=3)(tiny_model, images, labels)
    c = rx.create_attack("pgd", eps=8 / 255, seed=4)(tiny_model, images, labels)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_pgd_increases_loss(tiny_model, images, labels) -> None:
    adv = rx.create_attack("pgd", eps=16 / 255, steps=10, step_size=2 / 255)(tiny_model, images, labels)
    with torch.no_grad():
        clean = F.cross_entropy(tiny_model(images), labels)
        attacked = F.cross_entropy(tiny_model(adv), labels)
    assert attacked > clean


def test_attack_does_not_touch_parameter_grads(tiny_model, images, labels) -> None:
    rx.create_attack("pgd", eps=4 / 255, steps=2)(tiny_model, images, labels)
    assert all(p.grad is None for p in tiny_model.parameters())


def test_int32_labels_are_accepted_and_negative_refused(tiny_model, images, labels) -> None:
    adv = rx.create_attack("fgsm", eps=2 / 255)(tiny_model, images, labels.int())
    assert adv.shape == images.shape
    with pytest.raises(RobustXAIError, match="≥ 0"):
        rx.create_attack("fgsm", eps=2 / 255)(tiny_model, images, labels - 1)
