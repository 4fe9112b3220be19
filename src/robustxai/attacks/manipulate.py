"""The explanation-manipulation attack (trustworthiness paper; METHODS.md, "Manipulation attack").

An attacker perturbs an image imperceptibly so that its explanation map moves to a region of their choosing
while the model's prediction stays the same. The attack minimises, per image,

    L(x') = α₁ ‖m̂(x') − m̂_t‖² + α₂ ‖f(x') − f(x)‖² + ‖x' − x‖²

(the paper's loss and the class defaults; the default profile uses the SSIM objective below) with Adam
over x' (clipped to [0, 1], and to the L∞ ball of radius ``eps`` when one is set), where m̂ is
the explanation map normalised to sum to 1 (as in the paper) and f the logits. Gradient maps of a ReLU
network have zero second derivative almost everywhere, so m is computed on a
:class:`~robustxai.attacks.softplus.SoftplusSurrogate` (ReLU → Softplus(β), β rising geometrically from
``beta_start`` to ``beta_end``); the prediction term uses the real ReLU model. The user's model is never
modified, and the maps a report shows must come from the real model (the audit stage uses the explainer
registry for that).

**Scaling of α.** The paper used α₁ = 1e14 and α₂ = 1e3 at 512 × 512 px. With sum-normalised maps the map
term shrinks like 1/N in the number of pixels N while the image term grows like N, so keeping the balance
of the three terms needs α₁ ∝ N² and α₂ ∝ N. ``alpha_map=None`` / ``alpha_pred=None`` apply exactly that
rule (α₁ = 1e14 · (N / 512²)², α₂ = 1e3 · N / 512²; ``MAP_GAIN`` and ``PRED_GAIN`` are left at 1); pass
numbers to override. Adam is invariant to a common scale of the loss, so only the ratios matter, and in
practice the map term dominates over a wide range (on the 64 px benchmark, α₁ from 2.4e8 to 2.4e11 gave the
same success and image SSIM; 2.4e5 did worse on both): Adam normalises each pixel's step, so how far the
image moves is set by ``lr × iterations`` (0.06 with the defaults, the paper's ε) and by ``eps``, not by α.

**The SSIM objective** (``map_loss="ssim"``, ``image_loss="ssim"``, ``optimizer="sgd"``, ``ssim_floor``,
``select="real"``, ``target_sigma``; the default profile's settings). Success is SSIM(target, min-max
map) ≥ 0.6 and the image must stay at SSIM ≥ 0.98; the paper's loss optimises neither. On the default
benchmark's standard model (64 px) the paper's loss moved Grad-CAM maps only at image SSIM ≈ 0.95 and never
made saliency maps peaked enough (target SSIM ≈ 0.24). The SSIM objective minimises
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
moves them. ``benchmarks/manipulation_acceptance.py`` prints both counts.

**Keeping the prediction.** Besides the α₂ term, the attack returns, per image, the last iterate whose
prediction (argmax, or the 0/1 vector of a multi-label model) equals the clean one, so an accepted
manipulation never flips the label; ``keep_prediction=False`` returns the final iterate instead.

**The explained class** is the model's clean prediction (for multi-label models, the label with the
highest logit), held fixed during the attack; the audit explains the attacked image for the same class.

It lives in its own registry, ``MANIPULATIONS`` (``create_manipulation("manipulate", method=...)``), not in
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
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustxai._validate import check_epsilon, check_images, check_maps
from robustxai.attacks.diff_maps import DIFF_METHODS, MapSettings, smoothgrad_noise
from robustxai.attacks.manip_search import Descent, Problem, blur, project
from robustxai.attacks.softplus import SoftplusSurrogate, beta_schedule
from robustxai.attacks.ssim_loss import minmax_maps
from robustxai.attacks.targets import Truth, default_target
from robustxai.errors import RobustXAIError
from robustxai.models.losses import check_task_labels, predict_labels
from robustxai.models.tokens import explicit_attention
from robustxai.registry import Registry

#: The paper's weights and image size (α₁, α₂ at 512 × 512 px).
PAPER_ALPHA_MAP = 1e14
PAPER_ALPHA_PRED = 1e3
PAPER_PIXELS = 512 * 512
#: Multipliers on the resolution-scaled paper weights (see the module docstring on why 1 is kept).
MAP_GAIN = 1.0
PRED_GAIN = 1.0
#: Loss weights of the SSIM objective (``map_loss="ssim"``, ``image_loss="ssim"``): the map term is
#: 1 − SSIM per image (weight 1), the logit term ‖f(x') − f(x)‖² and the image term 1 − SSIM(x', x).
SSIM_ALPHA_PRED = 0.01
SSIM_ALPHA_IMAGE = 0.3

MAP_LOSSES = ("mse", "ssim")
IMAGE_LOSSES = ("mse", "ssim")
OPTIMIZERS = ("adam", "sgd")
SELECTIONS = ("last", "real")


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
        return model(images).argmax(dim=1)


@MANIPULATIONS.register("manipulate")
class Manipulate(Descent):
    """Steer an explanation map to a target region while keeping the prediction (see module docstring).

    Args:
        eps: L∞ bound of the perturbation; ``None`` means unbounded (only clipped to [0, 1]).
        method: The map attacked, one of :data:`~robustxai.attacks.diff_maps.DIFF_METHODS`.
        iterations: Adam steps (the paper: a few hundred).
        lr: Adam learning rate, ≈ the largest change of a pixel per step (the paper: 2e-4); ``lr ×
            iterations`` bounds how far a pixel can move (0.06 with the defaults, the paper's ε).
        alpha_map: α₁ for sum-normalised maps; ``None``: the paper's value scaled to the image size.
        alpha_pred: α₂ for the logit term; ``None``: the paper's value scaled to the image size.
        beta_start: Softplus β of the first step.
        beta_end: Softplus β of the last step.
        beta_rule: ``"geometric"`` (default) or ``"linear"`` growth of β.
        target_size: Side of the default target square as a fraction of the shorter image side.
        keep_prediction: Return the last iterate whose prediction equals the clean one (per image).
        smooth: Blur the perturbation with a Gaussian of this σ in pixels (0 = the paper's free pixels).
            Smooth perturbations change an image's local structure, and so its SSIM, far less at the
            same L∞ size.
        ig_steps: Integrated Gradients steps inside the attack.
        sg_samples: SmoothGrad samples inside the attack.
        sg_sigma: SmoothGrad noise σ in pixel units.
        seed: Seed of the SmoothGrad noise.
        cam_layer: Grad-CAM layer path; ``None`` uses the wrapper's.
        map_loss: ``"mse"`` (the paper: squared error of sum-normalised maps, weight α₁) or ``"ssim"``
            (1 − SSIM of the min-max normalised map against the target, weight 1).
        image_loss: ``"mse"`` (the paper: ‖x' − x‖², weight 1) or ``"ssim"`` (1 − image SSIM on the
            channel mean, weight :data:`SSIM_ALPHA_IMAGE`).
        alpha_image: Weight of the image term; ``None``: 1 for ``"mse"``, :data:`SSIM_ALPHA_IMAGE` for
            ``"ssim"``.
        ssim_floor: Shrink the perturbation after every step until image SSIM ≥ this (``None``: off).
        optimizer: ``"adam"`` (the paper) or ``"sgd"``: steps of ``lr`` × gradient / its largest entry
            per image.
        select: ``"last"``: the last iterate with an unchanged prediction (see ``keep_prediction``);
            ``"real"``: the iterate whose real-model map is closest to the target (SSIM), among those with
            an unchanged prediction and image SSIM ≥ ``ssim_floor`` (one more forward + backward of the
            real model per step; Guided Grad-CAM is scored on the surrogate at ``beta_end``).
        target_sigma: Gaussian blur (px) of the target the SSIM map loss aims at (0: the sharp target).
        refine_iterations: After the main descent, this many more steps from the best iterate found, at
            β = ``beta_end`` and step ``lr × refine_lr`` (needs ``select="real"``; 0: off).
        refine_lr: Step of the refinement as a fraction of ``lr``.

    Raises:
        RobustXAIError: On an unknown method or an out-of-range hyper-parameter.
    """

    name = "manipulate"

    def __init__(
        self,
        eps: float | None = None,
        method: str = "saliency",
        iterations: int = 300,
        lr: float = 2e-4,
        alpha_map: float | None = None,
        alpha_pred: float | None = None,
        beta_start: float = 10.0,
        beta_end: float = 100.0,
        beta_rule: str = "geometric",
        target_size: float = 0.25,
        keep_prediction: bool = True,
        smooth: float = 0.0,
        ig_steps: int = 8,
        sg_samples: int = 8,
        sg_sigma: float = 0.15,
        seed: int = 0,
        cam_layer: str | None = None,
        map_loss: str = "mse",
        image_loss: str = "mse",
        alpha_image: float | None = None,
        ssim_floor: float | None = None,
        optimizer: str = "adam",
        select: str = "last",
        target_sigma: float = 0.0,
        refine_iterations: int = 0,
        refine_lr: float = 0.25,
    ) -> None:
        # radius 1 in [0, 1] pixel space = unbounded
        self.eps = 1.0 if eps is None else check_epsilon(eps)
        self.bound = None if eps is None else self.eps
        if method not in DIFF_METHODS:
            raise RobustXAIError(f"unknown manipulation method {method!r}; known: {', '.join(DIFF_METHODS)}")
        if int(iterations) < 1:
            raise RobustXAIError(f"iterations must be ≥ 1, got {iterations}")
        if not float(lr) > 0:
            raise RobustXAIError(f"lr must be > 0, got {lr!r}")
        for label, value in (("alpha_map", alpha_map), ("alpha_pred", alpha_pred)):
            if value is not None:
                check_epsilon(value, label)
        if not 0 < float(target_size) <= 1:
            raise RobustXAIError(f"target_size must be a fraction in (0, 1], got {target_size!r}")
        beta_schedule(beta_start, beta_end, 1, beta_rule)  # validates the β settings
        if int(ig_steps) < 1 or int(sg_samples) < 1 or not float(sg_sigma) >= 0:
            raise RobustXAIError("ig_steps and sg_samples must be ≥ 1 and sg_sigma ≥ 0")
        self.method = method
        self.iterations = int(iterations)
        self.lr = float(lr)
        self.alpha_map = alpha_map
        self.alpha_pred = alpha_pred
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.beta_rule = beta_rule
        self.target_size = float(target_size)
        self.keep_prediction = bool(keep_prediction)
        if not float(smooth) >= 0:
            raise RobustXAIError(f"smooth must be ≥ 0 (Gaussian σ in pixels), got {smooth!r}")
        self.smooth = float(smooth)
        for option, choice, known in (
            ("map_loss", map_loss, MAP_LOSSES),
            ("image_loss", image_loss, IMAGE_LOSSES),
            ("optimizer", optimizer, OPTIMIZERS),
            ("select", select, SELECTIONS),
        ):
            if choice not in known:
                raise RobustXAIError(f"{option} must be one of {', '.join(known)}, got {choice!r}")
        if alpha_image is not None:
            check_epsilon(alpha_image, "alpha_image")
        if ssim_floor is not None and not 0 < float(ssim_floor) <= 1:
            raise RobustXAIError(f"ssim_floor must lie in (0, 1], got {ssim_floor!r}")
        if not float(target_sigma) >= 0:
            raise RobustXAIError(f"target_sigma must be ≥ 0 (Gaussian σ in pixels), got {target_sigma!r}")
        self.map_loss = map_loss
        self.image_loss = image_loss
        self.alpha_image = alpha_image
        self.ssim_floor = None if ssim_floor is None else float(ssim_floor)
        self.optimizer = optimizer
        self.select = select
        self.target_sigma = float(target_sigma)
        if int(refine_iterations) < 0 or not 0 < float(refine_lr) <= 1:
            raise RobustXAIError("refine_iterations must be ≥ 0 and refine_lr a fraction in (0, 1]")
        if int(refine_iterations) and select != "real":
            raise RobustXAIError(
                'refine_iterations needs select="real" (it refines the best real-map iterate)'
            )
        self.refine_iterations = int(refine_iterations)
        self.refine_lr = float(refine_lr)
        self.settings = MapSettings(
            ig_steps=int(ig_steps),
            sg_samples=int(sg_samples),
            sg_sigma=float(sg_sigma),
            sg_seed=int(seed),
            cam_layer=cam_layer,
        )

    def applicable(self, model: nn.Module) -> str | None:
        """Why the attack cannot steer this method's map on ``model`` (``None`` when it can).

        Its differentiable Grad-CAM maps work on a convolutional feature map: a model without one, or whose
        Grad-CAM layer is a transformer's token grid, is not attacked through the CAM methods.
        """
        if self.method not in ("gradcam", "guided_gradcam") or self.settings.cam_layer is not None:
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
        truths: Sequence[Truth] | None = None,
    ) -> torch.Tensor:
        """Return manipulated images.

        Args:
            model: The (ReLU) model; it is not modified.
            images: Clean images ``[B, C, H, W]`` in [0, 1].
            labels: Labels as the model's task requires (validated only: the explained class is the clean
                prediction).
            target_maps: Target maps ``[B, H, W]`` or one ``[H, W]`` for all (non-negative, not all zero);
                ``None`` uses :func:`default_target` with ``truths``.
            truths: Per image, a boolean mask ``[H, W]``, points ``[N, 2]`` (x, y) or ``None``.

        Returns:
            Adversarial images ``[B, C, H, W]`` in [0, 1] within the ε-ball, detached.
        """
        check_images(images)
        check_task_labels(model, labels, images.shape[0])
        targets = self.target_maps(images, target_maps, truths)
        if self.eps == 0:
            return images.detach().clone()
        # a transformer's fused attention has no second derivative: its explicit path, same numbers
        with torch.enable_grad(), explicit_attention(model):
            adv = self._attack(model, images.detach(), targets)
        return project(adv.detach(), images, self.eps)

    def target_maps(
        self, images: torch.Tensor, target_maps: torch.Tensor | None, truths: Sequence[Truth] | None
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

    def alphas(self, shape: tuple[int, int]) -> tuple[float, float]:
        """(α₁, α₂) for images of ``shape`` (explicit values, or the paper's scaled to the pixel count)."""
        ratio = (int(shape[0]) * int(shape[1])) / PAPER_PIXELS
        a_map = PAPER_ALPHA_MAP * ratio**2 * MAP_GAIN if self.alpha_map is None else float(self.alpha_map)
        a_pred = PAPER_ALPHA_PRED * ratio * PRED_GAIN if self.alpha_pred is None else float(self.alpha_pred)
        return a_map, a_pred

    def weights(self, shape: tuple[int, int]) -> tuple[float, float, float]:
        """(α₁, α₂, α₃): weights of the map, logit and image terms for images of ``shape``.

        The paper's MSE map loss uses :meth:`alphas`; the SSIM map loss weighs its term 1 and the logits
        :data:`SSIM_ALPHA_PRED`. The image term weighs 1 (‖x' − x‖², the paper) or :data:`SSIM_ALPHA_IMAGE`
        (1 − SSIM). Explicit ``alpha_map`` / ``alpha_pred`` / ``alpha_image`` override them.
        """
        a_map, a_pred = self.alphas(shape)
        if self.map_loss == "ssim":
            a_map = 1.0 if self.alpha_map is None else float(self.alpha_map)
            a_pred = SSIM_ALPHA_PRED if self.alpha_pred is None else float(self.alpha_pred)
        a_img = 1.0 if self.image_loss == "mse" else SSIM_ALPHA_IMAGE
        if self.alpha_image is not None:
            a_img = float(self.alpha_image)
        return a_map, a_pred, a_img

    # -- the optimisation --------------------------------------------------------------------------------
    def _attack(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = self._problem(model, images, targets)
        best = images.clone()
        best_score = torch.full((images.shape[0],), -math.inf, device=images.device)
        betas = beta_schedule(self.beta_start, self.beta_end, self.iterations, self.beta_rule)
        delta = torch.zeros_like(images)
        delta, best, best_score = self._descend(p, delta, betas, self.lr, best, best_score)
        if self.select == "real" and self.refine_iterations:
            # local search around the best iterate found: the real map's score is piecewise constant
            # and jumps from step to step, so smaller steps from the best point sample its neighbourhood
            betas = [self.beta_end] * self.refine_iterations
            delta, best, best_score = self._descend(
                p, best - images, betas, self.lr * self.refine_lr, best, best_score
            )
        if self.select == "real":
            return best
        with torch.no_grad():
            final = project(images + self._smoothed(delta), images, self.eps)
        if not self.keep_prediction:
            return final
        with torch.no_grad():
            same = self._same(model, model(final), p.clean_pred)
        return torch.where(same, final, best)

    def _problem(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Problem:
        """Everything the descent needs that does not change from step to step."""
        with torch.no_grad():
            clean_logits = model(images)
        return Problem(
            model=model,
            surrogate=SoftplusSurrogate(model, self.beta_start),
            images=images,
            weights=self.weights((images.shape[-2], images.shape[-1])),
            clean_logits=clean_logits,
            clean_pred=predict_labels(model, clean_logits),
            classes=clean_logits.argmax(dim=1),
            target_sum=targets / targets.sum(dim=(1, 2), keepdim=True),
            target_01=minmax_maps(targets),  # what success is measured against
            target_loss=minmax_maps(blur(targets[:, None], self.target_sigma)[:, 0]),  # the loss's aim
            noise=smoothgrad_noise(images, self.settings) if self.method == "smoothgrad" else None,
        )

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for reports and cache keys (``eps`` is ``None`` when unbounded)."""
        out = {
            k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("settings", "bound")
        }
        out["eps"] = self.bound
        out.update(vars(self.settings))
        return out
