"""The L∞ sign-gradient family: FGSM, BIM and PGD (METHODS.md, "Attacks")."""

from __future__ import annotations

import torch
from torch import nn

from robustxai._validate import check_epsilon
from robustxai.attacks.base import ATTACKS, Attack, loss_gradient, project
from robustxai.errors import RobustXAIError


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method: one step of size ε along the sign of the loss gradient.

    Args:
        eps: L∞ radius in [0, 1] pixel units.
    """

    name = "fgsm"

    def __init__(self, eps: float = 4 / 255) -> None:
        super().__init__(eps)

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One signed-gradient step."""
        return images + self.eps * loss_gradient(model, images, labels).sign()


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected Gradient Descent (Madry et al.) on the cross-entropy loss, L∞.

    Each step moves by ``step_size`` along the gradient sign and projects back onto the ε-ball and [0, 1].
    Without a random start it is exactly BIM.

    Args:
        eps: L∞ radius (Secure Diagnostics: 4/255).
        steps: Number of iterations (10).
        step_size: Step α per iteration; ``None`` means ``eps / 4`` (1/255 at ε = 4/255, as in Secure
            Diagnostics), so the step scales along an ε sweep.
        random_start: Start from a uniform point in the ε-ball (clipped to [0, 1]).
        seed: Seed of the random start, so runs are reproducible.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float = 4 / 255,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(eps)
        if int(steps) < 1:
            raise RobustXAIError(f"steps must be ≥ 1, got {steps}")
        self.steps = int(steps)
        self.step_size = check_epsilon(self.eps / 4 if step_size is None else step_size, "step_size")
        self.random_start = bool(random_start)
        self.seed = int(seed)

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Iterate signed-gradient steps with projection."""
        adv = images
        if self.random_start:
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            noise = torch.rand(images.shape, generator=gen, dtype=images.dtype) * 2 - 1
            adv = project(images + self.eps * noise.to(images.device), images, self.eps)
        for _ in range(self.steps):
            grad = loss_gradient(model, adv, labels)
            adv = project(adv + self.step_size * grad.sign(), images, self.eps)
        return adv


@ATTACKS.register("bim")
class BIM(PGD):
    """Basic Iterative Method (Kurakin et al.): PGD without a random start.

    Args:
        eps: L∞ radius.
        steps: Number of iterations (10 in the explainability-impact paper).
        step_size: Step α per iteration; defaults to ``eps / 4`` when ``None``.
    """

    name = "bim"

    def __init__(self, eps: float = 4 / 255, steps: int = 10, step_size: float | None = None) -> None:
        super().__init__(eps=eps, steps=steps, step_size=step_size, random_start=False)
