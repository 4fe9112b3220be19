"""The descent behind the manipulation attack (:mod:`robustxai.attacks.manipulate`).

Kept apart from the attack's settings and entry point: one descent from a start perturbation, the
shrink back to the image-SSIM floor, the real-ReLU-map score and the choice of the returned iterate
(``select``). :class:`Descent` is the attack's base class, so these steps read the attack's settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustxai.attacks.diff_maps import MapSettings, method_map
from robustxai.attacks.softplus import SoftplusSurrogate
from robustxai.attacks.ssim_loss import image_ssim, minmax_maps, ssim_per_image
from robustxai.models.losses import is_multilabel, predict_labels


def project(adv: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip ``adv`` to the L∞ ball of radius ``eps`` around ``images`` and to [0, 1]."""
    return torch.clamp(torch.minimum(torch.maximum(adv, images - eps), images + eps), 0.0, 1.0)


def blur(delta: torch.Tensor, sigma: float) -> torch.Tensor:
    """``delta`` ``[B, C, H, W]`` blurred with a Gaussian of σ = ``sigma`` pixels (unchanged when 0)."""
    if sigma == 0:
        return delta
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=delta.dtype, device=delta.device)
    k1 = torch.exp(-0.5 * (grid / sigma) ** 2)
    k1 = k1 / k1.sum()
    c = delta.shape[1]
    out = F.conv2d(
        F.pad(delta, (radius, radius, 0, 0), mode="replicate"),
        k1.view(1, 1, 1, -1).expand(c, 1, 1, -1),
        groups=c,
    )
    return F.conv2d(
        F.pad(out, (0, 0, radius, radius), mode="replicate"),
        k1.view(1, 1, -1, 1).expand(c, 1, -1, 1),
        groups=c,
    )


@dataclass
class Problem:
    """The fixed data of one attack call: model, surrogate, clean outputs, loss weights and targets."""

    model: nn.Module
    surrogate: SoftplusSurrogate
    images: torch.Tensor
    weights: tuple[float, float, float]
    clean_logits: torch.Tensor
    clean_pred: torch.Tensor
    classes: torch.Tensor
    target_sum: torch.Tensor
    target_01: torch.Tensor
    target_loss: torch.Tensor
    noise: torch.Tensor | None


class Descent:
    """The optimisation steps of :class:`~robustxai.attacks.manipulate.Manipulate` (its base class)."""

    eps: float
    method: str
    beta_end: float
    smooth: float
    map_loss: str
    image_loss: str
    optimizer: str
    select: str
    ssim_floor: float | None
    settings: MapSettings

    def surrogate_maps(
        self,
        surrogate: SoftplusSurrogate,
        images: torch.Tensor,
        classes: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The differentiable map of :attr:`method` on the surrogate ``[B, H, W]`` (on the graph)."""
        return method_map(self.method, surrogate, images, classes, self.settings, noise)

    def _descend(
        self,
        p: Problem,
        start: torch.Tensor,
        betas: Sequence[float],
        lr: float,
        best: torch.Tensor,
        best_score: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one descent from the perturbation ``start``, one step per β; returns (δ, best, best score).

        ``best`` / ``best_score`` carry the selected iterate across descents (``select="real"``: the
        highest admissible real-map score; ``"last"``: the last iterate with an unchanged prediction).
        """
        images, model = p.images, p.model
        a_map, a_pred, a_img = p.weights
        delta = start.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=lr) if self.optimizer == "adam" else None
        for beta in betas:
            p.surrogate.beta = beta
            adv = project(images + self._smoothed(delta), images, self.eps)
            maps = self.surrogate_maps(p.surrogate, adv, p.classes, p.noise)
            logits = model(adv)
            best, best_score = self._keep_best(p, adv.detach(), logits, best, best_score)
            if self.map_loss == "mse":  # the paper: sum-normalised maps
                norm = maps / (maps.sum(dim=(1, 2), keepdim=True) + 1e-12)
                map_term = ((norm - p.target_sum) ** 2).sum()
            else:  # SSIM of the min-max normalised map, as success is measured
                map_term = (1 - ssim_per_image(minmax_maps(maps), p.target_loss)).sum()
            img_term = (
                ((adv - images) ** 2).sum()
                if self.image_loss == "mse"
                else (1 - image_ssim(adv, images)).sum()
            )
            loss = a_map * map_term + a_pred * ((logits - p.clean_logits) ** 2).sum() + a_img * img_term
            (grad,) = torch.autograd.grad(loss, delta)
            if opt is not None:
                delta.grad = grad
                opt.step()
            else:  # steepest descent, the largest pixel step = lr (small gradients give small steps)
                with torch.no_grad():
                    scale = grad.flatten(1).abs().amax(dim=1).clamp(min=1e-30).view(-1, 1, 1, 1)
                    delta.sub_(lr * grad / scale)
            with torch.no_grad():  # keeps the perturbation in the ε-ball (a blur never exceeds its input)
                delta.copy_(project(images + delta, images, self.eps) - images)
                if self.ssim_floor is not None:
                    delta.copy_(self._to_floor(images, delta))
        if self.select == "real":  # the last iterate is a candidate too
            with torch.no_grad():
                final = project(images + self._smoothed(delta), images, self.eps)
            best, best_score = self._keep_best(p, final, None, best, best_score)
        return delta.detach(), best, best_score

    def _keep_best(
        self,
        p: Problem,
        adv: torch.Tensor,
        logits: torch.Tensor | None,
        best: torch.Tensor,
        best_score: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the selected iterate with ``adv`` (see :meth:`_descend`)."""
        if self.select != "real":
            assert logits is not None
            return torch.where(self._same(p.model, logits, p.clean_pred), adv, best), best_score
        score = self._accepted_score(p.model, adv, p.images, p.classes, p.clean_pred, p.target_01, p.noise)
        better = score > best_score
        return torch.where(better.view(-1, 1, 1, 1), adv, best), torch.where(better, score, best_score)

    def _accepted_score(
        self,
        model: nn.Module,
        adv: torch.Tensor,
        images: torch.Tensor,
        classes: torch.Tensor,
        clean_pred: torch.Tensor,
        target_01: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """Per image: SSIM(target, real map) where the iterate is admissible, −∞ where it is not ``[B]``.

        Admissible: the prediction is unchanged and, with ``ssim_floor``, the image SSIM reaches it.
        """
        with torch.no_grad():
            ok = self._same(model, model(adv), clean_pred).view(-1)
            if self.ssim_floor is not None:
                ok = ok & (image_ssim(adv, images) >= self.ssim_floor)
        score = self._real_score(model, adv, classes, target_01, noise)
        return torch.where(ok, score, torch.full_like(score, -math.inf))

    def _to_floor(self, images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Shrink each perturbation to t·δ (bisection on t per image) until image SSIM ≥ ``ssim_floor``."""
        assert self.ssim_floor is not None
        floor = self.ssim_floor
        cur = image_ssim(project(images + self._smoothed(delta), images, self.eps), images)
        bad = cur < floor
        if not bool(bad.any()):
            return delta
        lo = torch.zeros_like(cur)
        hi = torch.ones_like(cur)
        for _ in range(12):
            mid = (lo + hi) / 2
            s = image_ssim(
                project(images + self._smoothed(delta * mid.view(-1, 1, 1, 1)), images, self.eps), images
            )
            good = s >= floor
            lo = torch.where(good, mid, lo)
            hi = torch.where(good, hi, mid)
        t = torch.where(bad, lo, torch.ones_like(lo))
        return delta * t.view(-1, 1, 1, 1)

    def _real_score(
        self,
        model: nn.Module,
        adv: torch.Tensor,
        classes: torch.Tensor,
        target_01: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """SSIM(target, min-max normalised map of the real ReLU model) per image ``[B]`` (no graph kept).

        Guided Grad-CAM's guided backward rule exists only on the surrogate, so it is scored there at
        ``beta_end`` (the closest the attack has to the ReLU model).
        """
        s = MapSettings(**{**vars(self.settings), "create_graph": False})
        net = SoftplusSurrogate(model, self.beta_end) if self.method == "guided_gradcam" else model
        with torch.enable_grad():
            maps = method_map(self.method, net, adv, classes, s, noise)
        with torch.no_grad():
            return ssim_per_image(target_01, minmax_maps(maps.detach()))

    def _smoothed(self, delta: torch.Tensor) -> torch.Tensor:
        """The perturbation blurred with a Gaussian of σ = ``smooth`` pixels (unchanged when 0)."""
        return blur(delta, self.smooth)

    @staticmethod
    def _same(model: nn.Module, logits: torch.Tensor, clean_pred: torch.Tensor) -> torch.Tensor:
        """Per image: is the prediction unchanged? Shaped ``[B, 1, 1, 1]`` for ``torch.where``."""
        pred = predict_labels(model, logits.detach())
        same = (pred == clean_pred).all(dim=1) if is_multilabel(model) else pred == clean_pred
        return same.view(-1, 1, 1, 1)
