"""Attack base class and registry.

An attack is created by name with its hyper-parameters (``rx.create_attack("pgd", eps=4/255)``) and called
with data: ``attack(model, images, labels) -> adversarial images``. Every attack works in [0, 1] pixel space
(normalisation lives inside the model), keeps its perturbation inside the L∞ ball of radius ``eps`` and the
result inside [0, 1]; the contract tests check this for every registered attack.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._validate import check_epsilon, check_images, check_labels
from robustxai.registry import Registry

ATTACKS: Registry[Attack] = Registry("attack")


class Attack(ABC):
    """An untargeted evasion attack in [0, 1] pixel space.

    Args:
        eps: Radius of the L∞ ball around the clean image (e.g. 4/255 = four grey levels).
    """

    name: str = "attack"

    def __init__(self, eps: float) -> None:
        self.eps = check_epsilon(eps)

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return adversarial images for ``images`` with true ``labels`` (model mode is left as is)."""
        check_images(images)
        labels = check_labels(labels, images.shape[0])
        if self.eps == 0:
            return images.detach().clone()
        with torch.enable_grad():
            adv = self.perturb(model, images.detach(), labels.to(images.device))
        return project(adv.detach(), images, self.eps)

    @abstractmethod
    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Compute the adversarial images (inputs already validated)."""

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for reports and cache keys."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def project(adv: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``adv`` onto the L∞ ball of radius ``eps`` around ``images`` and then onto [0, 1]."""
    return torch.clamp(torch.minimum(torch.maximum(adv, images - eps), images + eps), 0.0, 1.0)


def loss_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy loss with respect to the input (no parameter gradients)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Create the registered attack ``name`` with its hyper-parameters."""
    return ATTACKS.create(name, **kwargs)


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()
