"""APGD (Croce & Hein 2020) against the reference implementation (pyautoattack), plus its own properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.attacks._apgd import dlr_loss

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.attacks._apgd"


def _net(num_classes: int, task: str = "multiclass", seed: int = 0) -> rx.ModelWrapper:
    """A small conv net with random weights whose decisions move under small perturbations (16 px)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 64, num_classes),
    )
    names = [f"c{i}" for i in range(num_classes)]
    return rx.ModelWrapper(net, class_names=names, task=task).eval()  # type: ignore[arg-type]


def _x(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _labels_with_errors(model: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % k  # two clean errors, which both implementations skip
    return y


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


ORACLE_CASES = [
    (2, "ce", "linf", 16 / 255),
    (2, "ce", "l2", 0.5),
    (5, "ce", "l2", 0.1),
    (5, "dlr", "linf", 3 / 255),
    (5, "dlr", "l2", 0.1),
]


@pytest.mark.parametrize(("k", "loss", "norm", "eps"), ORACLE_CASES)
def test_apgd_matches_reference_autoattack(k, loss, norm, eps) -> None:
    """Same seed and settings: the same fooled samples with the same images (L2: up to float rounding)."""
    ref_mod = pytest.importorskip("pyautoattack.autopgd_base")
    model, x = _net(k), _x()
    y = _labels_with_errors(model, x, k)
    with torch.random.fork_rng(devices=[]):
        ref = ref_mod.APGDAttack(
            model,
            n_iter=20,
            norm={"linf": "Linf", "l2": "L2"}[norm],
            eps=eps,
            seed=0,
            loss=loss,
            n_restarts=2,
        ).perturb(x, y)
    ours = rx.create_attack("apgd", eps=eps, norm=norm, steps=20, restarts=2, loss=loss)(
        model, x, y, only_correct=True
    )
    ref_ok, ours_ok = _correct(model, ref, y), _correct(model, ours, y)
    assert torch.equal(ours_ok, ref_ok)
    assert 0 < int(ref_ok.sum()) < 14  # the comparison is not vacuous
    fooled = ~ref_ok
    atol = 0.0 if norm == "linf" else 1e-6
    torch.testing.assert_close(ours[fooled], ref[fooled], atol=atol, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_unfooled_samples_are_the_reference_best_loss_points(norm) -> None:
    ref_mod = pytest.importorskip("pyautoattack.autopgd_base")
    model, x = _net(5), _x()
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 3 / 255 if norm == "linf" else 0.1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the reference's best_loss path does not seed itself
        best = ref_mod.APGDAttack(
            model, n_iter=20, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, seed=0, loss="ce"
        ).perturb(x, y, best_loss=True)
    ours = rx.create_attack("apgd", eps=eps, norm=norm, steps=20)(model, x, y)
    robust = _correct(model, ours, y)
    assert robust.any()
    torch.testing.assert_close(ours[robust], best[robust], atol=1e-6, rtol=0)


def test_more_restarts_never_raise_robust_accuracy() -> None:
    model, x = _net(5), _x(32)
    with torch.no_grad():
        y = model(x).argmax(1)
    one = _correct(model, rx.create_attack("apgd", eps=2 / 255, steps=10)(model, x, y), y)
    three = _correct(model, rx.create_attack("apgd", eps=2 / 255, steps=10, restarts=3)(model, x, y), y)
    assert not (three & ~one).any()  # restart 1 is the same run; later ones only add fooled samples


def test_dlr_loss_formula() -> None:
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 5.0, 1.0]])
    y = torch.tensor([0, 1])
    # sample 0 is correct: -(3 - 1) / (3 - 0); sample 1 is wrong: -(2 - 5) / (5 - 1)
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-2 / 3, 3 / 4]))
    # scale and shift invariant
    torch.testing.assert_close(dlr_loss(7 * z + 2, y), dlr_loss(z, y))


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_targeted_apgd_reaches_the_target(loss) -> None:
    model, x = _net(5), _x()
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    second = logits.argsort(dim=1)[:, -2]
    attack = rx.create_attack("apgd", eps=0.1, steps=20, loss=loss, targeted=True)
    adv = attack(model, x, y, second)
    with torch.no_grad():
        assert (model(adv).argmax(1) == second).float().mean() >= 0.9
        least = attack(model, x, y)  # least likely class by default
        assert (model(least).argmax(1) == logits.argmin(1)).float().mean() >= 0.5


def test_apgd_refusals(tiny_model, images, labels) -> None:
    with pytest.raises(RobustXAIError, match="DLR loss needs at least 3 classes, the model has 2"):
        rx.create_attack("apgd", loss="dlr", steps=2)(tiny_model, images, labels)
    with pytest.raises(RobustXAIError, match="2-class model is meaningless"):
        rx.create_attack("apgd", targeted=True, steps=2)(tiny_model, images, labels)
    model3, x = _net(3), _x(4)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(RobustXAIError, match="targeted DLR loss needs at least 4 classes"):
        rx.create_attack("apgd", loss="dlr", targeted=True, steps=2)(model3, x, y)
    multilabel = _net(3, "multilabel")
    with pytest.raises(RobustXAIError, match="defined for softmax"):
        rx.create_attack("apgd", loss="dlr", steps=2)(multilabel, x, torch.ones(4, 3))
    for kwargs, msg in [
        ({"steps": 0}, "steps must be an integer ≥ 1"),
        ({"restarts": 0}, "restarts must be an integer ≥ 1"),
        ({"loss": "cw"}, "loss must be one of ce, dlr"),
        ({"rho": 1.5}, "rho must be a finite number > 0 and ≤ 1"),
        ({"norm": "l1"}, "norm must be one of linf, l2"),
    ]:
        with pytest.raises(RobustXAIError, match=msg):
            rx.create_attack("apgd", **kwargs)


def test_apgd_is_seeded_and_leaves_the_global_rng_alone() -> None:
    model, x = _net(5), _x(8)
    y = torch.arange(8) % 5
    torch.manual_seed(123)
    a = rx.create_attack("apgd", eps=4 / 255, steps=5, seed=1)(model, x, y)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = rx.create_attack("apgd", eps=4 / 255, steps=5, seed=1)(model, x, y)
    assert torch.equal(a, b) and torch.equal(after, torch.rand(1))
    c = rx.create_attack("apgd", eps=4 / 255, steps=5, seed=2)(model, x, y)
    assert not torch.equal(a, c)


def _stripes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable two-class task: horizontal vs vertical stripes under noise (16 px)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    grid = (torch.arange(16) // 2 % 2).float()
    horiz, vert = grid.view(16, 1).expand(16, 16), grid.view(1, 16).expand(16, 16)
    base = torch.where(y.view(-1, 1, 1) == 0, horiz, vert)
    x = 0.35 + 0.3 * base + 0.15 * torch.randn(n, 16, 16, generator=gen)
    return x.clamp(0, 1).unsqueeze(1), y


@pytest.mark.slow
def test_apgd_is_at_least_as_strong_as_pgd10_on_an_adversarially_trained_model() -> None:
    x, y = _stripes(384, 0)
    model = rx.create_model("smallcnn", widths=(8, 8, 16, 16), dropout=0.0)
    rx.fit(model, (x, y), config=rx.FitConfig(epochs=4, batch_size=32, adversarial="pgd", eps=8 / 255))
    model.eval()
    xt, yt = _stripes(96, 1)
    eps = 24 / 255  # measured: clean 1.00, PGD-10 0.58, APGD-25 0.23, APGD-100 0.18
    clean = _correct(model, xt, yt).float().mean()
    pgd = rx.create_attack("pgd", eps=eps, steps=10).robust_accuracy(model, xt, yt).float().mean()
    apgd = rx.create_attack("apgd", eps=eps, steps=25).robust_accuracy(model, xt, yt).float().mean()
    assert clean > 0.8 and pgd > 0.1  # a model with something left to attack
    assert apgd <= pgd
