"""The gradient-step family: FGSM, BIM and PGD (L∞ or L2) (METHODS.md, "Attacks").

Steps and projections follow Foolbox 3 operation for operation: ``x ← x + α·sign(g)`` (L2: ``α·g/‖g‖₂``),
then ``x ← x0 + clip_ball(x − x0)`` and ``x ← clip(x, 0, 1)``. PGD without a random start therefore
reproduces Foolbox's ``LinfPGD(abs_stepsize=α, random_start=False)`` bit for bit (a test checks it).
"""

from __future__ import annotations

import torch
from torch import nn

from robustxai._validate import check_epsilon, check_int
from robustxai.attacks import _norms as norms
from robustxai.attacks._base import ATTACKS, Attack, loss_gradient


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method: one step of size ε along the sign of the loss gradient (L∞).

    Args:
        eps: L∞ radius in [0, 1] pixel units.
        targeted: Step down the loss of target labels instead of up the loss of the true labels.
    """

    name = "fgsm"
    fixed_params = ("norm",)

    def __init__(self, eps: float = 4 / 255, targeted: bool = False) -> None:
        super().__init__(eps, "linf", targeted)

    def _perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One signed-gradient step."""
        grad = loss_gradient(model, images, labels, targets)
        return norms.step(images, grad, images, self.eps, self.eps, "linf")


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected Gradient Descent (Madry et al.) on the task loss, in the L∞ or the L2 ball.

    Each step moves by ``step_size`` along the normalised gradient (L∞: its sign; L2: the gradient divided by
    its per-sample L2 norm) and projects back onto the ε-ball and [0, 1]. Without a random start the L∞
    version is exactly BIM. The last iterate is returned (as in Madry et al. and Foolbox).

    Args:
        eps: Ball radius (Secure Diagnostics, L∞: 4/255; an L2 budget is a Euclidean length in [0, 1]
            pixel units, e.g. 0.5 on 32×32×3 images).
        steps: Number of iterations (10).
        step_size: Step α per iteration; ``None`` means ``eps / 4`` (1/255 at ε = 4/255, as in Secure
            Diagnostics), resolved at call time so the step scales along an ε sweep.
        random_start: Start from a uniform point in the ε-ball (clipped to [0, 1]).
        seed: Seed of the random start, so runs are reproducible.
        norm: ``"linf"`` or ``"l2"``.
        targeted: Descend the loss of target labels (see :meth:`Attack.__call__`).
    """

    name = "pgd"

    def __init__(
        self,
        eps: float = 4 / 255,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed: int = 0,
        norm: str = "linf",
        targeted: bool = False,
    ) -> None:
        super().__init__(eps, norm, targeted)
        self.steps = check_int(steps, "steps", minimum=1)
        self.step_size = None if step_size is None else check_epsilon(step_size, "step_size")
        self.random_start = bool(random_start)
        self.seed = check_int(seed, "seed")

    @property
    def alpha(self) -> float:
        """The step actually taken: ``step_size``, or ``eps / 4`` when it is ``None``."""
        return self.eps / 4 if self.step_size is None else self.step_size

    def passes(self, batch: int) -> tuple[int, int]:
        """One forward and one backward pass per step and image: ``steps × batch`` each."""
        return self.steps * batch, self.steps * batch

    def _perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Iterate normalised-gradient steps with projection."""
        adv = images
        if self.random_start:
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            adv = norms.random_start(images, self.eps, self.norm, gen)
        alpha = self.alpha
        for _ in range(self.steps):
            grad = loss_gradient(model, adv, labels, targets)
            adv = norms.step(adv, grad, images, self.eps, alpha, self.norm)
        return adv


@ATTACKS.register("bim")
class BIM(PGD):
    """Basic Iterative Method (Kurakin et al.): L∞ PGD without a random start.

    Args:
        eps: L∞ radius.
        steps: Number of iterations (10 in the explainability-impact paper).
        step_size: Step α per iteration; defaults to ``eps / 4`` when ``None``.
        targeted: Descend the loss of target labels.
    """

    name = "bim"
    fixed_params = ("random_start", "seed", "norm")

    def __init__(
        self,
        eps: float = 4 / 255,
        steps: int = 10,
        step_size: float | None = None,
        targeted: bool = False,
    ) -> None:
        super().__init__(eps=eps, steps=steps, step_size=step_size, random_start=False, targeted=targeted)
