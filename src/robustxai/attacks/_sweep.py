"""ε sweeps and AutoAttack-style cascades that share work between budgets and attacks.

Both rest on one fact: the balls are nested. A perturbation that fools the model at ε_small lies inside the
ball of any ε_large ≥ ε_small, so it is a valid adversarial example there too. Hence

- :func:`sweep` attacks, at each ε in increasing order, only the samples the attack has not yet succeeded on
  at a smaller ε, and carries the earlier successful image forward. Per sample, the success indicator is
  therefore monotone in ε and at least as high as that of independent runs; the robust-accuracy curve is the
  same or lower (stronger). The images of a carried-over sample are the smaller-ε ones, so they are the
  right inputs for robust accuracy but not "the attack's output at ε" for that sample; pass ``share=False``
  to run every ε independently (e.g. when the explanation of the attacked image matters).
- :func:`cascade` / :func:`robust_accuracy` run several attacks of the same threat model one after the
  other, each only on the samples still classified correctly, like AutoAttack. Samples misclassified on the
  clean image are never attacked: they already count as errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_epsilon
from robustxai.attacks._checks import check_attack_data, is_correct


@runtime_checkable
class Attack(Protocol):
    """What a sweep or a cascade needs of an attack: :class:`robustxai.attacks.Attack` provides it.

    A protocol rather than the class itself, so that this module does not import
    :mod:`robustxai.attacks._base`, whose ``Attack.sweep`` and ``Attack.robust_accuracy`` call it.
    """

    eps: float
    norm: str

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None = None,
        *,
        only_correct: bool = False,
    ) -> torch.Tensor:
        """Adversarial images of ``images``."""
        ...

    def _attack_subset(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        todo: torch.Tensor | None,
    ) -> torch.Tensor: ...

    def resolve_targets(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, target_labels: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The attack's target labels (``None`` when untargeted)."""
        ...

    def success(
        self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample success ``[B]`` of the attack given the logits of its images."""
        ...

    def with_eps(self, eps: float) -> Attack:
        """A copy of the attack with budget ``eps``."""
        ...


def sweep(
    attack: Attack,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: Sequence[float],
    target_labels: torch.Tensor | None = None,
    *,
    only_correct: bool = False,
    share: bool = True,
) -> dict[float, torch.Tensor]:
    """Adversarial images of ``attack`` at every budget in ``epsilons``.

    Args:
        attack: The attack; its ``eps`` is replaced by each budget (step sizes left as ``None`` scale).
        model: Model taking [0, 1] images.
        images: ``[B, C, H, W]`` in [0, 1].
        labels: True labels in the model's task format.
        epsilons: Budgets (any order, no duplicates); the result keeps this order.
        target_labels: Targets of a targeted attack (default: least likely on the clean images, chosen once).
        only_correct: Leave clean-misclassified samples unattacked (their clean image is returned).
        share: Skip samples already fooled at a smaller ε and reuse that image (see the module docstring).

    Returns:
        ``{eps: adversarial images [B, C, H, W]}``, each inside its own ε-ball and [0, 1].
    """
    labels = check_attack_data(model, images, labels)
    eps_list = [check_epsilon(e) for e in epsilons]
    if not eps_list:
        raise RobustXAIError("epsilons must hold at least one budget")
    if len(set(eps_list)) != len(eps_list):
        raise RobustXAIError(f"epsilons must not repeat, got {list(epsilons)}")
    images = images.detach()
    targets = attack.resolve_targets(model, images, labels, target_labels)
    with torch.no_grad():
        clean_ok = is_correct(model, model(images), labels)
    todo_clean = clean_ok if only_correct else torch.ones_like(clean_ok)

    out: dict[float, torch.Tensor] = {}
    done = ~todo_clean
    prev = images
    for eps in sorted(eps_list):
        if eps == 0:
            out[eps] = images.clone()
            continue
        step = attack.with_eps(eps)
        todo = ~done if share else todo_clean
        adv = step._attack_subset(model, images, labels, targets, todo)
        if share:
            adv = torch.where(todo.view(-1, *([1] * (images.ndim - 1))), adv, prev)
            idx = todo.nonzero().squeeze(1)
            if idx.numel():
                with torch.no_grad():
                    sub_t = None if targets is None else targets[idx]
                    hit = step.success(model, model(adv[idx]), labels[idx], sub_t)
                done[idx[hit]] = True
            prev = adv
        out[eps] = adv
    return {e: out[e] for e in eps_list}


def cascade(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attacks: Sequence[Attack]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``attacks`` one after the other, each on the samples still classified correctly.

    All attacks must share the threat model (norm and ε). Targeted attacks use their least-likely targets.

    Returns:
        ``(images, correct)``: per sample the image that fooled the model (the clean image for clean
        errors; for robust samples the last attack's image) and a bool ``[B]``, true when no attack changed
        the correct prediction. ``correct.float().mean()`` is the robust accuracy.
    """
    labels = check_attack_data(model, images, labels)
    attacks = list(attacks)
    if not attacks:
        raise RobustXAIError("cascade needs at least one attack")
    for a in attacks:
        if not isinstance(a, Attack):
            raise RobustXAIError(f"cascade takes Attack objects, got {type(a).__name__}")
    models = {(a.norm, a.eps) for a in attacks}
    if len(models) > 1:
        raise RobustXAIError(
            f"cascade attacks must share norm and eps, got {sorted(models)}; run one cascade per budget"
        )
    images = images.detach()
    with torch.no_grad():
        correct = is_correct(model, model(images), labels)
    adv = images.clone()
    for attack in attacks:
        idx = correct.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x_adv = attack(model, images[idx], labels[idx])
        with torch.no_grad():
            still = is_correct(model, model(x_adv), labels[idx])
        adv[idx] = x_adv
        correct[idx[~still]] = False
    return adv, correct


def robust_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attacks: Attack | Sequence[Attack]
) -> torch.Tensor:
    """Per-sample robust correctness ``[B]`` (bool) under one attack or a cascade of attacks.

    A sample is robust when it is classified correctly on the clean image and after every attack; only
    samples still correct are attacked (see :func:`cascade`).
    """
    seq = [attacks] if isinstance(attacks, Attack) else list(attacks)
    return cascade(model, images, labels, seq)[1]
