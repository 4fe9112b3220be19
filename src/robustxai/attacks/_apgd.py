"""Auto-PGD (Croce & Hein, ICML 2020): the step-size-free PGD that RobustBench and AutoAttack rely on.

APGD takes steps with momentum 0.75 and halves the step size of a sample at checkpoints where its loss
oscillated or stopped improving, restarting that sample from its best point. It needs no step-size tuning,
so a large gap between PGD and APGD robust accuracy points at a badly tuned PGD or at gradient masking
(see :mod:`robustxai.attacks._sanity`).

The iteration follows the reference implementation (``autoattack.autopgd_base.APGDAttack``, packaged as
``pyautoattack``) operation for operation: same start (the seeded uniform noise rescaled so that its norm is
ε), same checkpoints, same step rule, same losses. On the same samples with the same seed the two give the
same images (the tests check it). Two documented differences: samples that are never fooled come back as
their highest-loss iterate rather than as the clean image (the robust accuracy is the same, since every
iterate of such a sample was classified correctly), and the random start uses a private generator instead
of re-seeding the global one. A targeted run counts a sample as fooled when its prediction *is the target*
(the reference counts any misclassification, as its targeted runs only serve untargeted robust accuracy).
"""

from __future__ import annotations

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_int, check_number
from robustxai.attacks._base import ATTACKS, Attack
from robustxai.attacks._norms import flat_l2
from robustxai.models._losses import is_multilabel, task_loss

LOSSES = ("ce", "dlr")


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio, per sample: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), scale invariant."""
    z_sorted, ind_sorted = logits.sort(dim=1)
    ind = (ind_sorted[:, -1] == labels).float()
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, labels] - z_sorted[:, -2] * ind - z_sorted[:, -1] * (1.0 - ind)) / (
        z_sorted[:, -1] - z_sorted[:, -3] + 1e-12
    )


def dlr_loss_targeted(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR, per sample: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)."""
    z_sorted, _ = logits.sort(dim=1)
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, labels] - logits[u, targets]) / (
        z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12
    )


@ATTACKS.register("apgd")
class APGD(Attack):
    """APGD-CE / APGD-DLR in the L∞ or L2 ball, with restarts; targeted variants on ≥ 3 (DLR: ≥ 4) classes.

    Args:
        eps: Ball radius.
        norm: ``"linf"`` or ``"l2"``.
        steps: Iterations per restart (``n_iter``; 100 in AutoAttack, an audit may use fewer).
        restarts: Random restarts; each one attacks only the samples not yet fooled.
        loss: ``"ce"`` (task loss: cross-entropy, or BCE on multilabel models) or ``"dlr"`` (multiclass
            models with at least 3 classes; targeted DLR needs 4).
        rho: Checkpoint threshold: the step halves when the loss rose in fewer than ``rho`` of the steps
            since the last checkpoint (0.75).
        targeted: Descend the loss towards target labels (targeted CE, or targeted DLR).
        seed: Seed of the random starts.
    """

    name = "apgd"

    def __init__(
        self,
        eps: float = 4 / 255,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        targeted: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(eps, norm, targeted)
        if loss not in LOSSES:
            raise RobustXAIError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.steps = check_int(steps, "steps", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.loss = loss
        self.rho = check_number(rho, "rho", above=0, maximum=1)
        self.seed = check_int(seed, "seed")

    def passes(self, batch: int) -> tuple[int, int]:
        """At most ``restarts × (steps + 1) × batch`` each way (a restart attacks only unfooled images)."""
        n = self.restarts * (self.steps + 1) * batch
        return n, n

    def _check_task(self, model: nn.Module, num_logits: int) -> None:
        if self.loss != "dlr":
            return
        if is_multilabel(model):
            raise RobustXAIError("apgd: loss='dlr' is defined for softmax (multiclass) models; use loss='ce'")
        need = 4 if self.targeted else 3
        if num_logits < need:
            kind = "targeted DLR" if self.targeted else "DLR"
            raise RobustXAIError(
                f"apgd: the {kind} loss needs at least {need} classes, the model has {num_logits}; "
                "use loss='ce'"
            )

    def _objective(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, per-sample loss (to be maximised) and its input gradient at ``x``."""
        x = x.detach().requires_grad_(True)
        logits = model(x)
        self._check_task(model, logits.shape[1])
        if self.loss == "dlr":
            per = dlr_loss(logits, labels) if targets is None else dlr_loss_targeted(logits, labels, targets)
        elif targets is None:
            per = task_loss(model, logits, labels, reduction="none")
        else:
            per = -task_loss(model, logits, targets, reduction="none")
        (grad,) = torch.autograd.grad(per.sum(), x)
        return logits.detach(), per.detach(), grad.detach()

    def _start(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.norm == "linf":
            t = 2 * torch.rand(x.shape, generator=gen).to(x) - 1
        else:
            t = torch.randn(x.shape, generator=gen).to(x)
        return torch.clamp(x + self.eps * torch.ones_like(x) * self._unit(t), 0.0, 1.0)

    def _unit(self, t: torch.Tensor) -> torch.Tensor:
        n = t.abs().reshape(t.shape[0], -1).max(dim=1)[0] if self.norm == "linf" else flat_l2(t)
        return t / (n.view(-1, *([1] * (t.ndim - 1))) + 1e-12)

    def _move(self, x: torch.Tensor, x_adv: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        """Project ``moved`` onto the ball around ``x`` and [0, 1] (the reference's formulas)."""
        if self.norm == "linf":
            return torch.clamp(torch.min(torch.max(moved, x - self.eps), x + self.eps), 0.0, 1.0)
        d = moved - x
        radius = torch.min(self.eps * torch.ones_like(x), flat_l2(d).view(-1, *([1] * (x.ndim - 1))))
        return torch.clamp(x + self._unit(d) * radius, 0.0, 1.0)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart: (highest-loss point, still-not-fooled ``[B]``, best loss, last fooling point)."""
        n_iter = self.steps
        n_iter_2 = max(int(0.22 * n_iter), 1)
        n_iter_min = max(int(0.06 * n_iter), 1)
        size_decr = max(int(0.03 * n_iter), 1)
        b = x.shape[0]
        shape = (b, *([1] * (x.ndim - 1)))

        x_adv = self._start(x, gen)
        x_best, x_best_adv = x_adv.clone(), x_adv.clone()
        loss_steps = torch.zeros((n_iter, b), device=x.device)
        logits, loss_indiv, grad = self._objective(model, x_adv, y, targets)
        grad_best = grad.clone()
        robust = ~self.success(model, logits, y, targets)
        loss_best = loss_indiv.clone()

        step_size = 2.0 * self.eps * torch.ones(shape, device=x.device)
        x_adv_old = x_adv.clone()
        counter3, k = 0, n_iter_2
        loss_best_last_check = loss_best.clone()
        reduced_last_check = torch.ones_like(loss_best)
        for i in range(n_iter):
            with torch.no_grad():
                grad2 = x_adv - x_adv_old
                x_adv_old = x_adv.clone()
                a = 0.75 if i > 0 else 1.0
                if self.norm == "linf":
                    x_adv_1 = self._move(x, x_adv, x_adv + step_size * torch.sign(grad))
                else:
                    x_adv_1 = self._move(x, x_adv, x_adv + step_size * self._unit(grad))
                x_adv = self._move(x, x_adv, x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a))

            logits, loss_indiv, grad = self._objective(model, x_adv, y, targets)
            with torch.no_grad():
                fooled = self.success(model, logits, y, targets)
                robust &= ~fooled
                x_best_adv[fooled] = x_adv[fooled]
                loss_steps[i] = loss_indiv
                better = loss_indiv > loss_best
                x_best[better] = x_adv[better]
                grad_best[better] = grad[better]
                loss_best[better] = loss_indiv[better]
                counter3 += 1
                if counter3 == k:
                    osc = self._oscillation(loss_steps, i, k)
                    no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
                    osc = torch.max(osc, no_impr)
                    reduced_last_check = osc.clone()
                    loss_best_last_check = loss_best.clone()
                    halve = osc > 0
                    if bool(halve.any()):
                        step_size[halve] /= 2.0
                        x_adv[halve] = x_best[halve]
                        grad[halve] = grad_best[halve]
                    k = max(k - size_decr, n_iter_min)
                    counter3 = 0
        return x_best, robust, loss_best, x_best_adv

    def _oscillation(self, loss_steps: torch.Tensor, i: int, k: int) -> torch.Tensor:
        """1 where the loss rose in at most ``rho·k`` of the last ``k`` steps (as the reference indexes)."""
        n = loss_steps.shape[0]
        t = torch.zeros(loss_steps.shape[1], device=loss_steps.device)
        for c in range(k):
            t += (loss_steps[(i - c) % n] > loss_steps[(i - c - 1) % n]).float()
        return (t <= k * self.rho * torch.ones_like(t)).float()

    def _perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the restarts; each attacks only the samples no earlier restart fooled."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        adv = images.clone()
        best_loss = torch.full((images.shape[0],), -float("inf"), device=images.device)
        fooled = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for _ in range(self.restarts):
            idx = (~fooled).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            sub_t = None if targets is None else targets[idx]
            x_best, robust, loss_best, x_best_adv = self._run(model, images[idx], labels[idx], sub_t, gen)
            hit = ~robust
            keep = robust & (loss_best > best_loss[idx])
            adv[idx[keep]] = x_best[keep]
            best_loss[idx[keep]] = loss_best[keep]
            adv[idx[hit]] = x_best_adv[hit]
            fooled[idx[hit]] = True
        return adv
