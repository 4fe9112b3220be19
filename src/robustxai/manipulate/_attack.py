"""The explanation-manipulation attack, built on the explainers' differentiable maps.

Trustworthiness paper; METHODS.md, "Manipulation attack".

An attacker perturbs an image imperceptibly so that its explanation map moves to a region of their choosing
while the model's prediction stays the same. The attack minimises, per image,

    L(x') = α₁ ‖m̂(x') − m̂_t‖² + α₂ ‖f(x') − f(x)‖² + ‖x' − x‖²

(the paper's loss: the class defaults and the ``"paper"`` preset; the default profile uses the SSIM
objective below, the ``"ssim"`` preset) with Adam
over x' (clipped to [0, 1], and to the L∞ ball of radius ``eps`` when one is set), where m̂ is
the explanation map normalised to sum to 1 (as in the paper) and f the logits. Gradient maps of a ReLU
network have zero second derivative almost everywhere, so m is computed on a
:class:`~robustxai.manipulate._softplus.SoftplusSurrogate` (ReLU → Softplus(β), β rising geometrically from
``beta_start`` to ``beta_end``); the prediction term uses the real ReLU model. The user's model is never
modified, and the maps a report shows must come from the real model (the audit stage uses the explainer
registry for that).

**Scaling of α.** The paper used α₁ = 1e14 and α₂ = 1e3 at 512 × 512 px. With sum-normalised maps the map
term shrinks like 1/N in the number of pixels N while the image term grows like N, so keeping the balance
of the three terms needs α₁ ∝ N² and α₂ ∝ N. ``Objective(alpha_map=None, alpha_pred=None)`` apply exactly that
rule (α₁ = 1e14 · (N / 512²)², α₂ = 1e3 · N / 512²; ``MAP_GAIN`` and ``PRED_GAIN`` are left at 1); pass
numbers to override. Adam is invariant to a common scale of the loss, so only the ratios matter, and in
practice the map term dominates over a wide range (on the 64 px benchmark, α₁ from 2.4e8 to 2.4e11 gave the
same success and image SSIM; 2.4e5 did worse on both): Adam normalises each pixel's step, so how far the
image moves is set by ``lr × iterations`` (0.06 with the defaults, the paper's ε) and by ``eps``, not by α.

**The SSIM objective** (``map_loss="ssim"``, ``image_loss="ssim"``, ``optimizer="sgd"``, ``ssim_floor``,
``select="real"``, ``target_sigma``; the default profile's settings, preset ``"ssim"``). Success is
SSIM(target, min-max map) ≥ 0.6 and the image must stay at SSIM ≥ 0.98; the paper's loss optimises neither.
On the default benchmark's standard model (64 px) the paper's loss moved Grad-CAM maps only at image SSIM
≈ 0.95 and never made saliency maps peaked enough (target SSIM ≈ 0.24). The SSIM objective minimises
``1 − SSIM(m̂_t, minmax(m(x')))`` (target optionally Gaussian-blurred by ``target_sigma`` px, which gives the
smooth surrogate map a reachable aim; success is still scored against the sharp square)
``+ α₂‖f(x') − f(x)‖² + α₃(1 − SSIM(x', x))`` (:data:`SSIM_ALPHA_PRED`, :data:`SSIM_ALPHA_IMAGE`) by
steepest descent whose largest pixel step is ``lr`` (Adam moves every pixel by ≈ lr, which ruins the SSIM
of flat regions; a normalised gradient step moves pixels in proportion to their gradient). After each step
a perturbation whose image SSIM fell below ``ssim_floor`` is shrunk to t·δ (bisection on t), and with
``select="real"`` the attack returns, per image, the iterate whose *real ReLU* map scores the highest
SSIM against the target among those with an unchanged prediction and image SSIM ≥ the floor. The
perturbation is concentrated where the image has texture, so its L∞ size can exceed the paper's 0.06 in
a few pixels (set ``eps`` to bound it). Acceptance figures: ``benchmarks/manipulation_acceptance.py``.

**Why the real-map score needs a search, and the refinement.** A ReLU network's gradient map is piecewise
constant in the input, so the real map's SSIM to the target jumps by ±0.05 from step to step even once the
surrogate has converged (and two runs that differ only in rounding end on different images). Keeping the
best iterate (``select="real"``) turns that into a search; ``refine_iterations`` extends it with smaller
steps (``lr × refine_lr``) from the best point so far, at β = ``beta_end``, sampling the neighbourhood
of that point rather than wandering off. On the default benchmark 100 such steps raised Grad-CAM from 10
to 12 of 16 images at 1.3× the CPU time, where 200 more plain steps (2×) gave 11.

**β for saliency.** The issue's schedule (β 10 → 100) leaves saliency stuck near SSIM 0.6 on the default
benchmark; starting smoother (β 3 → 100) gives the descent a less rugged surrogate early on and raised the
mean target SSIM from 0.60 to 0.66 (16 images, same cost). Starting lower still (β 1) or ending at 30
did worse, and Grad-CAM — a first-order map of the activations — does best with the issue's schedule
(β 3 → 30 collapsed it to 2 of 16). The class default stays 10 → 100; the default profile sets the
saliency start per method.

**What "success" means.** SSIM(target, map) ≥ 0.6 against a square covering 1/16 of a 64 px image is
dominated by the windows outside the square, so a map that is near zero everywhere but a few pixels
reaches it wherever those pixels lie. On the default benchmark most successful saliency maps peak outside
the target (1 of 16 peaks inside; Grad-CAM 6 of 16): the attack makes maps sparse more easily than it
moves them. ``benchmarks/manipulation_acceptance.py`` prints both counts. The ``"peak"`` preset (the paper
profile's) adds a term that pushes the map's maximum into the target (``alpha_peak``) and prefers, among
the admissible iterates, those whose real map peaks inside it (``select="peak"``).

**XRAI** is steered through the Integrated Gradients map it segments (its ``map_for_attack``, IG's with
XRAI's settings and ``ig_steps``): its regions and their ranking are piecewise constant in the image. The
audit scores the real XRAI map of the attacked image.

**Keeping the prediction.** Besides the α₂ term, the attack returns, per image, the last iterate whose
prediction (argmax, or the 0/1 vector of a multi-label model) equals the clean one, so an accepted
manipulation never flips the label; ``keep_prediction=False`` returns the final iterate instead.

**The explained class** is the model's clean prediction (for multi-label models, the label with the
highest logit), held fixed during the attack; the audit explains the attacked image for the same class.

It lives in its own registry, ``MANIPULATIONS`` (``create_manipulation("manipulate", method=...)``, whose
flat keywords :mod:`~robustxai.manipulate._presets` turns into the strategy objects), not in
the evasion-attack registry ``ATTACKS``: an evasion attack *maximises* the task loss and is scored by the
accuracy it destroys (sweeps, robust accuracy, ``only_correct``, label-targeted variants), whereas this
attack *keeps* the prediction on purpose and is scored by where the map goes. Called as
``attack(model, images, labels)`` it still follows the same data conventions: images in [0, 1], the
result inside [0, 1] and inside the L∞ ball of radius ``eps`` when one is set, and it steers every map to
the default target (a square in the corner farthest from the ground truth, or the top-right corner
without one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from robustxai._arrays import minmax
from robustxai._errors import RobustXAIError
from robustxai._registry import Registry
from robustxai._validate import check_images, check_int, check_maps, check_number
from robustxai.attacks._norms import project
from robustxai.explain import Explainer, create_explainer
from robustxai.explain._differentiable import DifferentiableMap, Forward, differentiable_methods
from robustxai.manipulate._search import Problem, blur, descend, same_prediction
from robustxai.manipulate._softplus import SoftplusSurrogate
from robustxai.manipulate._strategies import BetaSchedule, Budget, Objective, Optimiser, Selection
from robustxai.manipulate._targets import MaskOrPoints, default_target
from robustxai.models._losses import check_task_labels, predict_labels
from robustxai.models._tokens import explicit_attention

MANIPULATIONS: Registry[Manipulate] = Registry("manipulation")


def create_manipulation(name: str, **kwargs: Any) -> Manipulate:
    """Create the registered manipulation attack ``name`` (``"manipulate"``) with its hyper-parameters."""
    return MANIPULATIONS.create(name, **kwargs)


def list_manipulations() -> list[str]:
    """Names of the registered manipulation attacks."""
    return MANIPULATIONS.names()


def explained_class(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The class whose map is manipulated: the clean prediction (multi-label: the highest logit) ``[B]``."""
    with torch.no_grad():
        classes: torch.Tensor = model(images).argmax(dim=1)
    return classes


@dataclass
class ManipulationResult:
    """What one call of the attack returns.

    Attributes:
        images: Manipulated images ``[B, C, H, W]`` in [0, 1] within the ε-ball, detached.
        targets: The target maps ``[B, H, W]`` the maps were steered to.
        real_scores: With ``Selection(rule="real")``: per image, SSIM(target, real map) of the returned
            iterate (−∞ where no iterate was admissible and the clean image is returned); else ``None``.
    """

    images: torch.Tensor
    targets: torch.Tensor
    real_scores: torch.Tensor | None = None


@dataclass
class Manipulate:
    """Steer an explanation map to a target region while keeping the prediction (see module docstring).

    The class defaults are the paper's loss (the ``"paper"`` preset); :func:`create_manipulation` and the
    audit take flat keywords and named presets (:mod:`robustxai.manipulate._presets`).

    Attributes:
        method: The attacked explainer's name (one with a differentiable map,
            :func:`~robustxai.explain._differentiable.differentiable_methods`).
        iterations: Steps of the main descent (the paper: a few hundred).
        lr: Learning rate, ≈ the largest change of a pixel per step (the paper: 2e-4 with Adam).
        objective: The loss.
        optimiser: The step rule.
        selection: Which iterate is returned.
        budget: ε, the image-SSIM floor and the blur of the perturbation.
        schedule: The surrogate's β from step to step.
        target_size: Side of the default target square as a fraction of the shorter image side.
        explainer_params: Keywords of the attacked explainer (e.g. ``{"n_steps": 8}``); the attack's
            defaults (:data:`ATTACK_EXPLAINER_DEFAULTS`) are cheaper than the explainers' own.

    Raises:
        RobustXAIError: On an unknown method or an out-of-range hyper-parameter.
    """

    method: str = "saliency"
    iterations: int = 300
    lr: float = 2e-4
    objective: Objective = field(default_factory=Objective)
    optimiser: Optimiser = field(default_factory=Optimiser)
    selection: Selection = field(default_factory=Selection)
    budget: Budget = field(default_factory=Budget)
    schedule: BetaSchedule = field(default_factory=BetaSchedule)
    target_size: float = 0.25
    explainer_params: Mapping[str, Any] = field(default_factory=dict)

    name = "manipulate"

    def __post_init__(self) -> None:
        known = differentiable_methods()
        if self.method not in known:
            raise RobustXAIError(f"unknown manipulation method {self.method!r}; known: {', '.join(known)}")
        check_int(self.iterations, "iterations", minimum=1)
        check_number(self.lr, "lr", above=0.0)
        check_number(self.target_size, "target_size (a fraction of the image side)", above=0.0, maximum=1.0)
        params = {**ATTACK_EXPLAINER_DEFAULTS.get(self.method, {}), **self.explainer_params}
        explainer = create_explainer(self.method, **params)
        assert isinstance(explainer, DifferentiableMap)
        self.explainer: DifferentiableMap = explainer

    @property
    def eps(self) -> float:
        """The L∞ radius of the result (1 = unbounded in [0, 1] pixel space)."""
        return self.budget.radius

    def passes(self, batch: int, height: int = 1, width: int = 1) -> tuple[int, int]:
        """Images pushed forward and backward by one call on ``batch`` images (the audit plan's cost model).

        Per step: the surrogate's map (the attacked explainer's own passes, kept on the graph), the logits
        (a forward), the real map's score when selecting by it (the explainer's passes again), and the
        loss's backward through the map's backward — a double backward, counted as two backward passes per
        map pass — and through the logits. Plus one clean forward.
        """
        assert isinstance(self.explainer, Explainer)  # every differentiable map is a registered explainer
        k_fwd, k_bwd = self.explainer.passes(1, height, width)
        sel = self.selection
        steps = self.iterations + (int(sel.refine_iterations) if sel.real else 0)
        real = 1 if sel.real else 0
        fwd = steps * (k_fwd * (1 + real) + 1) * batch + batch
        bwd = steps * (k_bwd * (3 + real) + 1) * batch
        return fwd, bwd

    def applicable(self, model: nn.Module) -> str | None:
        """Why the attack cannot steer this method's map on ``model`` (``None`` when it can).

        Its differentiable Grad-CAM maps work on a convolutional feature map: a model without one, or whose
        Grad-CAM layer is a transformer's token grid, is not attacked through the CAM methods.
        """
        if self.method not in ("gradcam", "guided_gradcam") or self.explainer_params.get("layer") is not None:
            return None
        if getattr(model, "get_cam_layer", None) is not None and getattr(model, "cam_layer", "") is None:
            return "no spatial layer for its differentiable Grad-CAM"
        if getattr(model, "cam_layout", "nchw") != "nchw":
            return "its differentiable Grad-CAM needs a convolutional feature map, not a token grid"
        return None

    # -- public entry ------------------------------------------------------------------------------------
    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_maps: torch.Tensor | None = None,
        truths: Sequence[MaskOrPoints] | None = None,
    ) -> torch.Tensor:
        """Return manipulated images (:meth:`run`'s ``images``)."""
        return self.run(model, images, labels, target_maps, truths).images

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_maps: torch.Tensor | None = None,
        truths: Sequence[MaskOrPoints] | None = None,
    ) -> ManipulationResult:
        """Manipulate the maps of ``images`` and return the images with the call's diagnostics.

        Args:
            model: The (ReLU) model; it is not modified.
            images: Clean images ``[B, C, H, W]`` in [0, 1].
            labels: Labels as the model's task requires (validated only: the explained class is the clean
                prediction).
            target_maps: Target maps ``[B, H, W]`` or one ``[H, W]`` for all (non-negative, not all zero);
                ``None`` uses :func:`default_target` with ``truths``.
            truths: Per image, a boolean mask ``[H, W]``, points ``[N, 2]`` (x, y) or ``None``.
        """
        check_images(images)
        check_task_labels(model, labels, images.shape[0])
        targets = self.target_maps(images, target_maps, truths)
        if self.eps == 0:
            return ManipulationResult(images.detach().clone(), targets)
        # a transformer's fused attention has no second derivative: its explicit path, same numbers
        with torch.enable_grad(), explicit_attention(model):
            adv, scores = self._attack(model, images.detach(), targets)
        return ManipulationResult(project(adv.detach(), images, self.eps), targets, scores)

    def target_maps(
        self, images: torch.Tensor, target_maps: torch.Tensor | None, truths: Sequence[MaskOrPoints] | None
    ) -> torch.Tensor:
        """Validated target maps ``[B, H, W]`` (given, or the default square per image)."""
        b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
        if target_maps is None:
            if truths is not None and len(truths) != b:
                raise RobustXAIError(f"truths must hold one entry per image ({b}), got {len(truths)}")
            size = max(1, round(self.target_size * min(h, w)))
            per = [default_target(truths[i] if truths is not None else None, (h, w), size) for i in range(b)]
            return torch.stack(per).to(device=images.device, dtype=images.dtype)
        if isinstance(target_maps, torch.Tensor) and target_maps.ndim == 2:
            target_maps = target_maps.expand(b, h, w)
        t = check_maps(target_maps, "target_maps")
        if tuple(t.shape) != (b, h, w):
            raise RobustXAIError(f"target_maps must have shape [{b}, {h}, {w}], got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t.reshape(b, -1).sum(dim=1) <= 0).any()):
            raise RobustXAIError("target_maps must be non-negative with a positive sum for every image")
        return t.to(device=images.device, dtype=images.dtype)

    # -- the optimisation --------------------------------------------------------------------------------
    def _attack(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = self.problem(model, images, targets)
        best = images.clone()
        best_score = torch.full((images.shape[0],), -math.inf, device=images.device)
        betas = self.schedule.betas(self.iterations)
        delta = torch.zeros_like(images)
        delta, best, best_score = descend(p, delta, betas, self.lr, best, best_score)
        sel = self.selection
        if sel.real and sel.refine_iterations:
            # local search around the best iterate found: the real map's score is piecewise constant
            # and jumps from step to step, so smaller steps from the best point sample its neighbourhood
            betas = [float(self.schedule.end)] * int(sel.refine_iterations)
            delta, best, best_score = descend(
                p, best - images, betas, self.lr * sel.refine_lr, best, best_score
            )
        if sel.real:
            return best, best_score
        with torch.no_grad():
            final = p.place(delta)
        if not sel.keep_prediction:
            return final, None
        with torch.no_grad():
            same = same_prediction(model, model(final), p.clean_pred)
        return torch.where(same, final, best), None

    def problem(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Problem:
        """Everything the descent needs that does not change from step to step."""
        with torch.no_grad():
            clean_logits = model(images)
        # Guided Grad-CAM's guided rule exists only on a stand-in: its real map is scored at the final β
        scorer: Forward = (
            SoftplusSurrogate(model, self.schedule.end) if self.method == "guided_gradcam" else model
        )
        return Problem(
            model=model,
            surrogate=SoftplusSurrogate(model, self.schedule.start),
            scorer=scorer,
            explainer=self.explainer,
            objective=self.objective,
            optimiser=self.optimiser,
            selection=self.selection,
            budget=self.budget,
            images=images,
            weights=self.objective.weights((images.shape[-2], images.shape[-1])),
            clean_logits=clean_logits,
            clean_pred=predict_labels(model, clean_logits),
            classes=clean_logits.argmax(dim=1),
            target_sum=targets / targets.sum(dim=(1, 2), keepdim=True),
            target_01=minmax(targets),  # what success is measured against
            target_loss=minmax(blur(targets[:, None], self.objective.target_sigma)[:, 0]),  # the loss's aim
        )

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for reports and cache keys (``eps`` is ``None`` when unbounded)."""
        out: dict[str, Any] = {
            "method": self.method,
            "iterations": self.iterations,
            "lr": self.lr,
            "target_size": self.target_size,
            "explainer_params": dict(self.explainer_params),
        }
        for part in ("objective", "optimiser", "selection", "budget", "schedule"):
            out[part] = asdict(getattr(self, part))
        out["eps"] = self.budget.eps
        return out


#: The attacked explainers' keywords inside the attack, where they differ from the explainers' defaults:
#: the map is evaluated every step, so Integrated Gradients (and XRAI, steered through its IG map) and
#: SmoothGrad use 8 passes, not 20 / 25.
ATTACK_EXPLAINER_DEFAULTS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 8},
    "xrai": {"n_steps": 8},
    "smoothgrad": {"n_samples": 8},
}
