"""The descent behind the manipulation attack (:mod:`robustxai.manipulate._attack`).

Kept apart from the attack's settings and entry point: one descent from a start perturbation, the shrink
back to the image-SSIM floor, the real-ReLU-map score and the choice of the returned iterate. Everything a
call needs is in a :class:`Problem`; the strategies (:mod:`robustxai.manipulate._strategies`) say what to
minimise, how to step and what to keep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from robustxai._arrays import minmax
from robustxai.attacks._norms import project
from robustxai.explain._differentiable import DifferentiableMap, Forward
from robustxai.manipulate._softplus import SoftplusSurrogate
from robustxai.manipulate._strategies import Budget, Objective, Optimiser, Selection, image_ssim
from robustxai.metrics._localisation import peak_in_region
from robustxai.metrics._similarity import SsimReference, ssim_per_image
from robustxai.models._losses import is_multilabel, predict_labels


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
    """The fixed data of one attack call: model, maps, strategies, clean outputs, weights and targets.

    Attributes:
        model: The real (ReLU) model.
        surrogate: Its Softplus stand-in, whose β the descent raises.
        scorer: What the real map is computed on: the model, or (Guided Grad-CAM, whose guided rule exists
            only on a stand-in) a stand-in at the schedule's final β.
        explainer: The attacked method's differentiable map.
        objective: The loss.
        optimiser: The step rule.
        selection: The rule for the returned iterate.
        budget: ε, the image-SSIM floor and the blur of δ.
        images: The clean images ``[B, C, H, W]``.
        weights: (α₁, α₂, α₃) for this image size.
        clean_logits: Logits of the clean images.
        clean_pred: The clean prediction (class ``[B]`` or 0/1 ``[B, K]``).
        classes: The explained class per image ``[B]``.
        target_sum: Targets normalised to sum 1 (the paper's MSE loss).
        target_01: Min-max normalised targets (what success is measured against).
        target_loss: The loss's aim: the target blurred by the objective's ``target_sigma``, min-max.
    """

    model: nn.Module
    surrogate: SoftplusSurrogate
    scorer: Forward
    explainer: DifferentiableMap
    objective: Objective
    optimiser: Optimiser
    selection: Selection
    budget: Budget
    images: torch.Tensor
    weights: tuple[float, float, float]
    clean_logits: torch.Tensor
    clean_pred: torch.Tensor
    classes: torch.Tensor
    target_sum: torch.Tensor
    target_01: torch.Tensor
    target_loss: torch.Tensor

    @cached_property
    def images_ssim(self) -> SsimReference:
        """The clean images' side of every image SSIM of the descent (their channel mean), made once."""
        return SsimReference(self.images.mean(dim=1))

    @cached_property
    def target_loss_ssim(self) -> SsimReference:
        """The loss's target as one side of the SSIM map term, made once."""
        return SsimReference(self.target_loss)

    @cached_property
    def target_01_ssim(self) -> SsimReference:
        """The target as one side of the real map's score, made once."""
        return SsimReference(self.target_01)

    def place(self, delta: torch.Tensor) -> torch.Tensor:
        """The iterate for perturbation ``delta``: blurred, in the ε-ball and in [0, 1]."""
        return project(self.images + blur(delta, self.budget.smooth), self.images, self.budget.radius)


def descend(
    p: Problem,
    start: torch.Tensor,
    betas: Sequence[float],
    lr: float,
    best: torch.Tensor,
    best_score: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one descent from the perturbation ``start``, one step per β; returns (δ, best, best score).

    ``best`` / ``best_score`` carry the selected iterate across descents (``"real"``: the highest
    admissible real-map score; ``"last"``: the last iterate with an unchanged prediction).
    """
    images, model = p.images, p.model
    a_map, a_pred, a_img = p.weights
    delta = start.detach().clone().requires_grad_(True)
    stepper = p.optimiser.start(delta, lr)
    # the SSIM sides held fixed, made once (only for SSIM terms: a reference needs 7 × 7 pixels)
    target_side = p.target_loss_ssim if p.objective.map_loss == "ssim" else p.target_loss
    image_side = p.images_ssim if p.objective.image_loss == "ssim" else None
    for beta in betas:
        p.surrogate.beta = beta
        adv = p.place(delta)
        maps = p.explainer.map_for_attack(p.surrogate, adv, p.classes)
        logits = model(adv)
        best, best_score = keep_best(p, adv.detach(), logits, best, best_score)
        map_term = p.objective.map_term(maps, p.target_sum, target_side)
        img_term = p.objective.image_term(adv, images, image_side)
        loss = a_map * map_term + a_pred * ((logits - p.clean_logits) ** 2).sum() + a_img * img_term
        if p.objective.alpha_peak:
            loss = loss + p.objective.alpha_peak * p.objective.peak_term(maps, p.target_01 > 0.5)
        (grad,) = torch.autograd.grad(loss, delta)
        stepper.step(grad)
        with torch.no_grad():  # keeps the perturbation in the ε-ball (a blur never exceeds its input)
            delta.copy_(project(images + delta, images, p.budget.radius) - images)
            if p.budget.ssim_floor is not None:
                delta.copy_(to_floor(p, delta))
    if p.selection.real:  # the last iterate is a candidate too
        with torch.no_grad():
            final = p.place(delta)
        best, best_score = keep_best(p, final, None, best, best_score)
    return delta.detach(), best, best_score


def keep_best(
    p: Problem,
    adv: torch.Tensor,
    logits: torch.Tensor | None,
    best: torch.Tensor,
    best_score: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the selected iterate with ``adv`` (see :func:`descend`)."""
    if not p.selection.real:
        assert logits is not None
        return torch.where(same_prediction(p.model, logits, p.clean_pred), adv, best), best_score
    score = accepted_score(p, adv, logits)
    better = score > best_score
    return torch.where(better.view(-1, 1, 1, 1), adv, best), torch.where(better, score, best_score)


def accepted_score(p: Problem, adv: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: SSIM(target, real map) where the iterate is admissible, −∞ where it is not ``[B]``.

    Admissible: the prediction is unchanged and, with a floor, the image SSIM reaches it. ``logits``: the
    real model's logits of ``adv`` when the caller has them (the descent's step computes them for its loss;
    the same forward pass, so the same numbers), else one forward pass computes them here.
    """
    with torch.no_grad():
        if logits is None:
            logits = p.model(adv)
        ok = same_prediction(p.model, logits, p.clean_pred).view(-1)
        if p.budget.ssim_floor is not None:
            ok = ok & (image_ssim(adv, p.images_ssim) >= p.budget.ssim_floor)
    score = real_score(p, adv)
    return torch.where(ok, score, torch.full_like(score, -math.inf))


def to_floor(p: Problem, delta: torch.Tensor) -> torch.Tensor:
    """Shrink each perturbation to t·δ (bisection on t per image) until image SSIM ≥ the floor."""
    floor = p.budget.ssim_floor
    assert floor is not None
    cur = image_ssim(p.place(delta), p.images_ssim)
    bad = cur < floor
    if not bool(bad.any()):
        return delta
    lo = torch.zeros_like(cur)
    hi = torch.ones_like(cur)
    for _ in range(12):
        mid = (lo + hi) / 2
        good = image_ssim(p.place(delta * mid.view(-1, 1, 1, 1)), p.images_ssim) >= floor
        lo = torch.where(good, mid, lo)
        hi = torch.where(good, hi, mid)
    t = torch.where(bad, lo, torch.ones_like(lo))
    return delta * t.view(-1, 1, 1, 1)


def real_score(p: Problem, adv: torch.Tensor) -> torch.Tensor:
    """SSIM(target, min-max normalised map of the real ReLU model) per image ``[B]`` (no graph kept).

    With the ``"peak"`` selection, + 1 where the map's maximum lies inside the target (most of its tied
    maxima: :func:`~robustxai.metrics._localisation.peak_in_region`).
    """
    with torch.enable_grad():
        maps = p.explainer.map_for_attack(p.scorer, adv, p.classes, create_graph=False)
    with torch.no_grad():
        score = ssim_per_image(p.target_01_ssim, minmax(maps.detach()))
        if p.selection.rule == "peak":
            score = score + peak_in_region(maps.detach(), p.target_01 > 0.5).to(score.dtype)
        return score


def same_prediction(model: nn.Module, logits: torch.Tensor, clean_pred: torch.Tensor) -> torch.Tensor:
    """Per image: is the prediction unchanged? Shaped ``[B, 1, 1, 1]`` for ``torch.where``."""
    pred = predict_labels(model, logits.detach())
    same = (pred == clean_pred).all(dim=1) if is_multilabel(model) else pred == clean_pred
    return same.view(-1, 1, 1, 1)
