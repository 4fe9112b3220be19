"""Attack contract (every registered attack) and reference properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.attacks import ATTACKS


def _configs() -> list[tuple[str, str | None]]:
    """Every registered attack, once per norm it supports."""
    out: list[tuple[str, str | None]] = []
    for name in rx.list_attacks():
        norms = ["linf", "l2"] if "norm" in ATTACKS.parameters(name) else [None]
        out += [(name, n) for n in norms]
    return out


def _make(name: str, norm: str | None, eps: float) -> rx.Attack:
    """The attack with few steps (the contract does not depend on strength)."""
    kwargs: dict[str, object] = {"eps": eps}
    if norm is not None:
        kwargs["norm"] = norm
    if "steps" in ATTACKS.parameters(name):
        kwargs["steps"] = 3
    return rx.create_attack(name, **kwargs)


def _net(num_classes: int = 4, task: str = "multiclass", seed: int = 0) -> rx.ModelWrapper:
    """A small conv net whose decisions move under small perturbations (random weights, 16 px)."""
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


def _x(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _dist(adv: torch.Tensor, images: torch.Tensor, norm: str) -> torch.Tensor:
    d = (adv - images).flatten(1)
    return d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)


@pytest.mark.parametrize(("name", "norm"), _configs())
@pytest.mark.parametrize("eps", [0.0, 2 / 255, 8 / 255, 0.3])
def test_attack_stays_in_eps_ball_and_unit_range(name, norm, eps, tiny_model, images, labels) -> None:
    attack = _make(name, norm, eps)
    assert attack.norm == (norm or "linf")
    adv = attack(tiny_model, images, labels)
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert (_dist(adv, images, attack.norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert not adv.requires_grad
    if eps == 0.3:  # a large budget is used, not ignored
        assert _dist(adv, images, attack.norm).max() > 0.5 * eps


@pytest.mark.parametrize(("name", "norm"), _configs())
def test_attack_edges_of_range(name, norm, tiny_model, labels) -> None:
    images = torch.zeros(4, 1, 32, 32)
    images[2:] = 1.0
    adv = _make(name, norm, 0.1)(tiny_model, images, labels)
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("name", rx.list_attacks())
def test_attack_rejects_bad_input(name, tiny_model, images, labels) -> None:
    attack = _make(name, None, 4 / 255)
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


# --- Foolbox equality: same steps, same projection order, float32, max |Δ| = 0 ---------------------------


@pytest.mark.parametrize(("eps", "steps", "step"), [(8 / 255, 10, 2 / 255), (0.03, 7, 0.01)])
def test_pgd_without_random_start_equals_foolbox_linf_pgd(eps, steps, step) -> None:
    fb = pytest.importorskip("foolbox")
    model, x = _net(), _x()
    with torch.no_grad():
        y = model(x).argmax(1)
    raw, clipped, _ = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=False)(
        fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps
    )
    ours = rx.create_attack("pgd", eps=eps, steps=steps, step_size=step, random_start=False)(model, x, y)
    assert (raw - ours).abs().max().item() == 0
    assert (clipped - ours).abs().max().item() == 0
    assert not torch.equal(ours, x)


def test_l2_pgd_and_fgsm_equal_foolbox() -> None:
    fb = pytest.importorskip("foolbox")
    model, x = _net(), _x()
    y = torch.arange(8) % 4
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    raw, _, _ = fb.attacks.L2PGD(abs_stepsize=0.1, steps=6, random_start=False)(fmodel, x, y, epsilons=0.4)
    ours = rx.create_attack("pgd", eps=0.4, steps=6, step_size=0.1, random_start=False, norm="l2")(
        model, x, y
    )
    assert (raw - ours).abs().max().item() == 0
    raw, _, _ = fb.attacks.FGSM()(fmodel, x, y, epsilons=4 / 255)
    assert (raw - rx.create_attack("fgsm", eps=4 / 255)(model, x, y)).abs().max().item() == 0


def test_targeted_pgd_equals_foolbox_targeted() -> None:
    fb = pytest.importorskip("foolbox")
    model, x = _net(), _x()
    y = torch.arange(8) % 4
    t = (y + 1) % 4
    crit = fb.criteria.TargetedMisclassification(t)
    raw, _, _ = fb.attacks.LinfPGD(abs_stepsize=1 / 255, steps=5, random_start=False)(
        fb.PyTorchModel(model, bounds=(0, 1)), x, crit, epsilons=4 / 255
    )
    pgd = rx.create_attack("pgd", eps=4 / 255, steps=5, step_size=1 / 255, random_start=False, targeted=True)
    assert (raw - pgd(model, x, y, t)).abs().max().item() == 0


# --- L2 PGD -----------------------------------------------------------------------------------------


def test_l2_pgd_step_is_normalised_gradient() -> None:
    model, x = _net(), _x()
    y = torch.arange(8) % 4
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(model(xg), y, reduction="sum").backward()
    g = xg.grad.flatten(1)
    expected = (x.flatten(1) + 0.05 * g / g.norm(dim=1, keepdim=True)).clamp(0, 1).view_as(x)
    adv = rx.create_attack("pgd", eps=1.0, steps=1, step_size=0.05, random_start=False, norm="l2")(
        model, x, y
    )
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_l2_random_start_is_seeded_and_fills_the_ball() -> None:
    x = torch.full((64, 1, 16, 16), 0.5)
    model = _net()
    y = torch.zeros(64, dtype=torch.long)
    pgd = rx.create_attack("pgd", eps=0.5, steps=1, step_size=0.0, norm="l2", seed=3)
    a, b = pgd(model, x, y), pgd(model, x, y)
    assert torch.equal(a, b)
    r = (a - x).flatten(1).norm(dim=1)
    # uniform in a 256-dimensional ball: radii concentrate just below ε, all inside
    assert (r <= 0.5 + 1e-6).all() and (r > 0.45).all()
    assert (
        rx.create_attack("pgd", eps=0.5, norm="l2", seed=4, steps=1, step_size=0.0)(model, x, y).ne(a).any()
    )


def test_l2_pgd_fools_more_with_a_larger_ball() -> None:
    model, x = _net(), _x(32)
    with torch.no_grad():
        y = model(x).argmax(1)
        accs = [
            float(
                (model(rx.create_attack("pgd", eps=e, norm="l2")(model, x, y)).argmax(1) == y).float().mean()
            )
            for e in (0.01, 0.1, 1.0)
        ]
    assert accs[0] >= accs[1] >= accs[2] and accs[2] < 0.5


def test_unknown_norm_is_an_error() -> None:
    with pytest.raises(RobustXAIError, match="norm must be one of linf, l2"):
        rx.create_attack("pgd", norm="l1")


# --- targeted mode ------------------------------------------------------------------------------------


def test_targeted_least_likely_hits_the_target() -> None:
    model, x = _net(), _x(16)
    with torch.no_grad():
        logits = model(x)
    y, ll = logits.argmax(1), logits.argmin(1)
    adv = rx.create_attack("pgd", eps=0.25, steps=20, targeted=True)(model, x, y)
    with torch.no_grad():
        adv_logits = model(adv)
    assert (adv_logits.argmax(1) == ll).float().mean() > 0.8
    # the target logit margin grows for every sample
    margin = lambda z: z.gather(1, ll[:, None])[:, 0] - z.max(1).values  # noqa: E731
    assert (margin(adv_logits) > margin(logits)).all()


def test_targeted_errors(tiny_model, images, labels) -> None:
    with pytest.raises(RobustXAIError, match="2-class model is meaningless"):
        rx.create_attack("pgd", targeted=True)(tiny_model, images, labels)
    with pytest.raises(RobustXAIError, match="create it with targeted=True"):
        rx.create_attack("pgd")(tiny_model, images, labels, labels)
    model, x = _net(), _x(4)
    y = torch.tensor([0, 1, 2, 3])
    pgd = rx.create_attack("pgd", targeted=True, steps=1)
    with pytest.raises(RobustXAIError, match="equal the true labels for 1 sample"):
        pgd(model, x, y, torch.tensor([1, 2, 3, 3]))
    with pytest.raises(RobustXAIError, match=r"target_labels must lie in \[0, 3\]"):
        pgd(model, x, y, torch.tensor([1, 2, 3, 7]))
    with pytest.raises(RobustXAIError, match="target_labels must have shape"):
        pgd(model, x, y, torch.tensor([1, 2]))


def test_labels_beyond_the_model_are_an_error(tiny_model, images) -> None:
    with pytest.raises(RobustXAIError, match=r"labels must lie in \[0, 1\]"):
        rx.create_attack("fgsm")(tiny_model, images, torch.tensor([0, 1, 2, 0]))


# --- multi-label models: BCE task loss, [B, K] labels ------------------------------------------------


def test_multilabel_attack_ascends_bce() -> None:
    model, x = _net(3, "multilabel"), _x()
    y = (torch.arange(24).view(8, 3) % 2).float()
    x_req = x.clone().requires_grad_(True)
    F.binary_cross_entropy_with_logits(model(x_req), y, reduction="sum").backward()
    expected = (x + 4 / 255 * x_req.grad.sign()).clamp(0, 1)
    adv = rx.create_attack("fgsm", eps=4 / 255)(model, x, y)
    torch.testing.assert_close(adv, expected, atol=1e-7, rtol=0)
    for name in ("pgd", "apgd"):
        adv = rx.create_attack(name, eps=8 / 255, steps=10)(model, x, y)
        with torch.no_grad():
            before = F.binary_cross_entropy_with_logits(model(x), y)
            after = F.binary_cross_entropy_with_logits(model(adv), y)
        assert after > before
    with pytest.raises(RobustXAIError, match="multi-label task must have shape"):
        rx.create_attack("pgd")(model, x, y[:, 0].long())


def test_multilabel_targeted_least_likely_flips_predictions() -> None:
    model, x = _net(3, "multilabel"), _x()
    with torch.no_grad():
        pred = (model(x) > 0).float()
    adv = rx.create_attack("pgd", eps=32 / 255, steps=20, targeted=True)(model, x, pred)
    with torch.no_grad():
        flipped = ((model(adv) > 0).float() != pred).float().mean()
    assert flipped > 0.8
