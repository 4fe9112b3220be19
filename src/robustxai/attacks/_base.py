"""Attack base class and registry.

An attack is created by name with its hyper-parameters (``rx.create_attack("pgd", eps=4/255)``) and called
with data: ``attack(model, images, labels) -> adversarial images``. Every attack works in [0, 1] pixel space
(normalisation lives inside the model), keeps its perturbation inside the ball of radius ``eps`` of its
``norm`` (``"linf"`` or ``"l2"``) and the result inside [0, 1]; the contract tests check this for every
registered attack.

Attacks ascend the model's task loss (:func:`robustxai.models.task_loss`): cross-entropy for
multiclass models with class indices ``[B]``, per-label BCE for multilabel models with 0/1 labels ``[B, K]``.
A *targeted* attack instead descends the loss of the target labels.

Success and correctness, used by ``only_correct``, sweeps and robust accuracy, are per sample: a multiclass
prediction is correct when the arg-max is the label; a multilabel prediction when *every* label is right
(exact match). An untargeted attack succeeds when the prediction is wrong, a targeted one when it equals
the target.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._registry import ParamValue, Registry, declared_params
from robustxai._validate import check_epsilon, check_labels, check_multilabel
from robustxai.attacks._checks import check_attack_data, is_correct
from robustxai.attacks._norms import check_norm, project
from robustxai.attacks._sweep import robust_accuracy as _robust_accuracy, sweep as _sweep
from robustxai.models._losses import is_multilabel, predict_labels, task_loss

ATTACKS: Registry[Attack] = Registry("attack")

__all__ = ["ATTACKS", "Attack", "create_attack", "is_correct", "list_attacks", "loss_gradient", "project"]


class Attack(ABC):
    """An evasion attack in [0, 1] pixel space.

    Args:
        eps: Radius of the threat-model ball around the clean image (L∞: 4/255 = four grey levels).
        norm: ``"linf"`` or ``"l2"``.
        targeted: Push the prediction towards target labels instead of away from the true labels.
    """

    name: str = "attack"
    #: Hyper-parameters the class fixes instead of taking them as keywords (:meth:`params` reports them).
    fixed_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, eps: float, norm: str = "linf", targeted: bool = False) -> None:
        self.eps = check_epsilon(eps)
        self.norm = check_norm(norm)
        self.targeted = bool(targeted)

    def applicable(self, model: nn.Module) -> str | None:
        """Why this attack cannot run on ``model``, in a few words; ``None`` when it can (the default).

        The audit's plan drops an impossible model × attack pair with the reason instead of running it.
        Cheap: no forward pass.
        """
        return None

    def passes(self, batch: int) -> tuple[int, int]:
        """Images pushed forward and backward through the model by one call on ``batch`` images.

        The audit's plan (:mod:`robustxai.audit._estimate`) multiplies these by measured per-pass times.
        Target resolution and ``only_correct``'s clean pass are not counted. By default one gradient step:
        ``batch`` forward and ``batch`` backward.
        """
        return batch, batch

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None = None,
        *,
        only_correct: bool = False,
    ) -> torch.Tensor:
        """Return adversarial images for ``images`` with true ``labels`` (the model's mode is left as is).

        Args:
            model: A model taking [0, 1] images and returning logits.
            images: ``[B, C, H, W]`` in [0, 1].
            labels: True labels (class indices ``[B]``, or 0/1 ``[B, K]`` for multilabel models).
            target_labels: Targets of a targeted attack (same format as ``labels``); ``None`` means the least
                likely labels on the clean images (multiclass: the smallest logit; multilabel: every
                predicted label flipped). Must be ``None`` for an untargeted attack.
            only_correct: Attack only the samples the model classifies correctly on the clean images and
                return the others unchanged (the clean image already counts as an error for robust accuracy,
                so AutoAttack-style evaluations skip it).
        """
        labels = check_attack_data(model, images, labels)
        images = images.detach()
        targets = self.resolve_targets(model, images, labels, target_labels)
        if self.eps == 0:
            return images.clone()
        todo = None
        if only_correct:
            with torch.no_grad():
                todo = is_correct(model, model(images), labels)
        return self._attack_subset(model, images, labels, targets, todo)

    def _attack_subset(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        todo: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attack the samples where ``todo`` is true (all when ``None``); the others come back unchanged."""
        if todo is None or bool(todo.all()):
            with torch.enable_grad():
                adv = self._perturb(model, images, labels, targets)
            return project(adv.detach(), images, self.eps, self.norm)
        out = images.clone()
        idx = todo.nonzero().squeeze(1)
        if idx.numel():
            sub_t = None if targets is None else targets[idx]
            with torch.enable_grad():
                adv = self._perturb(model, images[idx], labels[idx], sub_t)
            out[idx] = project(adv.detach(), images[idx], self.eps, self.norm)
        return out

    @abstractmethod
    def _perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The method's hook: adversarial images (inputs validated; ``targets`` set iff targeted).

        Callers use the one verb, calling the attack (:meth:`__call__`), which validates, resolves targets,
        picks the samples to attack and projects the result.
        """

    def resolve_targets(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Validate ``target_labels`` (or choose the least likely ones); ``None`` for untargeted attacks."""
        if not self.targeted:
            if target_labels is not None:
                raise RobustXAIError(
                    f"{self.name}: target_labels were given but the attack is untargeted; "
                    "create it with targeted=True"
                )
            return None
        with torch.no_grad():
            logits = model(images)
        multilabel = is_multilabel(model)
        if not multilabel and logits.shape[1] < 3:
            raise RobustXAIError(
                f"{self.name}: a targeted attack on a {logits.shape[1]}-class model is meaningless "
                "(the only target is 'not the label', which the untargeted attack already does); "
                "use targeted=False"
            )
        if target_labels is None:
            if multilabel:
                return (1 - predict_labels(model, logits)).to(labels.dtype)
            return logits.argmin(dim=1)
        check = check_multilabel if multilabel else check_labels
        targets = check(target_labels, images.shape[0], name="target_labels").to(images.device)
        if not multilabel and int(targets.max()) >= logits.shape[1]:
            raise RobustXAIError(
                f"target_labels must lie in [0, {logits.shape[1] - 1}], got {int(targets.max())}"
            )
        same = (targets == labels) if not multilabel else (targets == labels).all(dim=1)
        if bool(same.any()):
            raise RobustXAIError(
                f"target_labels equal the true labels for {int(same.sum())} sample(s); "
                "a targeted attack needs a different target"
            )
        return targets

    def success(
        self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample success ``[B]`` (bool): wrong prediction (untargeted) or prediction == target."""
        if targets is None:
            return ~is_correct(model, logits, labels)
        return is_correct(model, logits, targets)

    def with_eps(self, eps: float) -> Attack:
        """A copy of this attack with budget ``eps`` (step sizes given as ``None`` scale with it)."""
        other = copy.copy(self)
        other.eps = check_epsilon(eps)
        return other

    def sweep(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        epsilons: Sequence[float],
        target_labels: torch.Tensor | None = None,
        *,
        only_correct: bool = False,
        share: bool = True,
    ) -> dict[float, torch.Tensor]:
        """Adversarial images at every ε (see :func:`robustxai.attacks.sweep` for the semantics)."""
        return _sweep(
            self, model, images, labels, epsilons, target_labels, only_correct=only_correct, share=share
        )

    def robust_accuracy(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample correctness ``[B]`` (bool) under this attack, attacking only clean-correct samples."""
        return _robust_accuracy(model, images, labels, [self])

    def params(self) -> dict[str, ParamValue]:
        """Hyper-parameters, for reports and cache keys: the constructor's keywords (no per-call result)."""
        return declared_params(self, self.fixed_params)


def loss_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient of the attack objective with respect to the input (no parameter gradients).

    The objective is the summed task loss of the true labels (untargeted) or minus the summed task loss of
    ``targets`` (targeted), so every attack *ascends* it.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if targets is None:
        loss = task_loss(model, logits, labels, reduction="sum")
    else:
        loss = -task_loss(model, logits, targets, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def create_attack(name: str, **kwargs: object) -> Attack:
    """Create the registered attack ``name`` with its hyper-parameters."""
    return ATTACKS.create(name, **kwargs)


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()
