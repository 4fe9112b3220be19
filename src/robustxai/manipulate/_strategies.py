"""The manipulation attack's strategies: what it minimises, how it steps, what it keeps and how far it may go.

Each is a small frozen dataclass that checks itself, so :class:`~robustxai.manipulate._attack.Manipulate`
takes five objects instead of two dozen flags, and a named preset
(:data:`~robustxai.manipulate._presets.PRESETS`) is a set of these objects' settings.

- :class:`Objective` — the loss: the map term (the paper's MSE of sum-normalised maps, or 1 − SSIM of the
  min-max normalised map against the target), the logit term and the image term, with their weights.
- :class:`Optimiser` — Adam (the paper) or steepest descent whose largest pixel step is the learning rate.
- :class:`Selection` — which iterate is returned: the last with an unchanged prediction, or the one whose
  real ReLU map is closest to the target (optionally refined by a local search around it).
- :class:`Budget` — the L∞ bound, the image-SSIM floor every step is shrunk back to, and the blur of δ.
- :class:`BetaSchedule` — the Softplus β of the surrogate from step to step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustxai._arrays import minmax
from robustxai._errors import RobustXAIError
from robustxai._validate import check_epsilon, check_int, check_number
from robustxai.manipulate._softplus import beta_schedule
from robustxai.metrics._similarity import SsimReference, ssim_per_image

#: The paper's weights and image size (α₁, α₂ at 512 × 512 px).
PAPER_ALPHA_MAP = 1e14
PAPER_ALPHA_PRED = 1e3
PAPER_PIXELS = 512 * 512
#: Multipliers on the resolution-scaled paper weights (see the attack's docstring on why 1 is kept).
MAP_GAIN = 1.0
PRED_GAIN = 1.0
#: Loss weights of the SSIM objective: the map term is 1 − SSIM per image (weight 1), the logit term
#: ‖f(x') − f(x)‖² and the image term 1 − SSIM(x', x).
SSIM_ALPHA_PRED = 0.01
SSIM_ALPHA_IMAGE = 0.3

MAP_LOSSES = ("mse", "ssim")
IMAGE_LOSSES = ("mse", "ssim")
OPTIMIZERS = ("adam", "sgd")
SELECTIONS = ("last", "real", "peak")
#: Temperature of the soft maximum in the peak term (maps are min-max normalised to [0, 1]).
PEAK_TEMPERATURE = 0.05
#: How far the maximum inside the target should exceed the one outside before the peak term stops pushing.
PEAK_MARGIN = 0.1


def _choice(option: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise RobustXAIError(f"{option} must be one of {', '.join(known)}, got {value!r}")


def _sigma(option: str, value: float) -> None:
    check_number(value, f"{option} (Gaussian σ in pixels)", minimum=0.0)


def image_ssim(adv: torch.Tensor, clean: torch.Tensor | SsimReference) -> torch.Tensor:
    """SSIM of attacked vs clean images ``[B, C, H, W]`` on the channel mean (as the audit scores it).

    ``clean`` may be a :class:`~robustxai.metrics._similarity.SsimReference` of the clean images' channel
    mean (the same numbers, computed once for a descent's many calls).
    """
    if isinstance(clean, SsimReference):
        return ssim_per_image(adv.mean(dim=1), clean)
    return ssim_per_image(adv.mean(dim=1), clean.mean(dim=1))


@dataclass(frozen=True)
class Objective:
    """The loss α₁·map term + α₂‖f(x') − f(x)‖² + α₃·image term (one value per batch).

    Attributes:
        map_loss: ``"mse"`` (the paper: squared error of sum-normalised maps, weight α₁) or ``"ssim"``
            (1 − SSIM of the min-max normalised map against the target, weight 1).
        image_loss: ``"mse"`` (the paper: ‖x' − x‖², weight 1) or ``"ssim"`` (1 − image SSIM on the
            channel mean, weight :data:`SSIM_ALPHA_IMAGE`).
        alpha_map: α₁; ``None``: the paper's value scaled to the image size (``"mse"``) or 1 (``"ssim"``).
        alpha_pred: α₂; ``None``: the paper's value scaled to the image size (``"mse"``) or
            :data:`SSIM_ALPHA_PRED` (``"ssim"``).
        alpha_image: α₃; ``None``: 1 for ``"mse"``, :data:`SSIM_ALPHA_IMAGE` for ``"ssim"``.
        target_sigma: Gaussian blur (px) of the target the SSIM map loss aims at (0: the sharp target).
        alpha_peak: Weight of the peak term (0: off): ≈ relu(smax(map outside) − smax(map inside) + margin)
            of the min-max map, smax a soft maximum (:data:`PEAK_TEMPERATURE`, :data:`PEAK_MARGIN`). SSIM
            against a small target is dominated by the area outside it, so a sparse map scores well
            wherever its few bright pixels lie; this term pushes the brightest pixel into the target.
    """

    map_loss: str = "mse"
    image_loss: str = "mse"
    alpha_map: float | None = None
    alpha_pred: float | None = None
    alpha_image: float | None = None
    target_sigma: float = 0.0
    alpha_peak: float = 0.0

    def __post_init__(self) -> None:
        _choice("map_loss", self.map_loss, MAP_LOSSES)
        check_epsilon(self.alpha_peak, "alpha_peak")
        _choice("image_loss", self.image_loss, IMAGE_LOSSES)
        for label, value in (
            ("alpha_map", self.alpha_map),
            ("alpha_pred", self.alpha_pred),
            ("alpha_image", self.alpha_image),
        ):
            if value is not None:
                check_epsilon(value, label)
        _sigma("target_sigma", self.target_sigma)

    def alphas(self, shape: tuple[int, int]) -> tuple[float, float]:
        """(α₁, α₂) of the paper's loss for images of ``shape``: explicit values, or the paper's scaled.

        With sum-normalised maps the map term shrinks like 1/N in the pixel count N while the image term
        grows like N, so the balance of the three terms needs α₁ ∝ N² and α₂ ∝ N.
        """
        ratio = (int(shape[0]) * int(shape[1])) / PAPER_PIXELS
        a_map = PAPER_ALPHA_MAP * ratio**2 * MAP_GAIN if self.alpha_map is None else float(self.alpha_map)
        a_pred = PAPER_ALPHA_PRED * ratio * PRED_GAIN if self.alpha_pred is None else float(self.alpha_pred)
        return a_map, a_pred

    def weights(self, shape: tuple[int, int]) -> tuple[float, float, float]:
        """(α₁, α₂, α₃): weights of the map, logit and image terms for images of ``shape``."""
        a_map, a_pred = self.alphas(shape)
        if self.map_loss == "ssim":
            a_map = 1.0 if self.alpha_map is None else float(self.alpha_map)
            a_pred = SSIM_ALPHA_PRED if self.alpha_pred is None else float(self.alpha_pred)
        a_img = 1.0 if self.image_loss == "mse" else SSIM_ALPHA_IMAGE
        if self.alpha_image is not None:
            a_img = float(self.alpha_image)
        return a_map, a_pred, a_img

    def map_term(
        self, maps: torch.Tensor, target_sum: torch.Tensor, target_loss: torch.Tensor | SsimReference
    ) -> torch.Tensor:
        """The map term summed over the batch (``target_sum``: sum-normalised, ``target_loss``: [0, 1]).

        ``target_loss`` is only compared by SSIM, so it may be an
        :class:`~robustxai.metrics._similarity.SsimReference` of it.
        """
        if self.map_loss == "mse":  # the paper: sum-normalised maps
            norm = maps / (maps.sum(dim=(1, 2), keepdim=True) + 1e-12)
            return ((norm - target_sum) ** 2).sum()
        # SSIM of the min-max normalised map, as success is measured
        return (1 - ssim_per_image(minmax(maps), target_loss)).sum()

    def peak_term(self, maps: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Soft "the map's maximum lies outside the target", summed over the batch (``inside``: bool mask)."""
        m = minmax(maps).flatten(1) / PEAK_TEMPERATURE
        mask = inside.flatten(1)
        low = torch.finfo(m.dtype).min
        out_max = torch.logsumexp(m.masked_fill(mask, low), dim=1)
        in_max = torch.logsumexp(m.masked_fill(~mask, low), dim=1)
        # ≈ relu(max outside − max inside + margin), in map units, smooth over one temperature
        gap = (out_max - in_max) + PEAK_MARGIN / PEAK_TEMPERATURE
        return (PEAK_TEMPERATURE * torch.nn.functional.softplus(gap)).sum()

    def image_term(
        self, adv: torch.Tensor, images: torch.Tensor, reference: SsimReference | None = None
    ) -> torch.Tensor:
        """The image term summed over the batch (``reference``: the clean images' SSIM side, if made)."""
        if self.image_loss == "mse":
            return ((adv - images) ** 2).sum()
        return (1 - image_ssim(adv, images if reference is None else reference)).sum()


class Stepper:
    """One descent's optimiser state: updates δ in place from its gradient."""

    def __init__(self, kind: str, delta: torch.Tensor, lr: float) -> None:
        self.delta = delta
        self.lr = lr
        self.adam = torch.optim.Adam([delta], lr=lr) if kind == "adam" else None

    def step(self, grad: torch.Tensor) -> None:
        """Adam's step, or steepest descent whose largest pixel step per image is ``lr``."""
        if self.adam is not None:
            self.delta.grad = grad
            self.adam.step()
            return
        with torch.no_grad():  # small gradients give small steps
            scale = grad.flatten(1).abs().amax(dim=1).clamp(min=1e-30).view(-1, 1, 1, 1)
            self.delta.sub_(self.lr * grad / scale)


@dataclass(frozen=True)
class Optimiser:
    """How δ moves: ``"adam"`` (the paper) or ``"sgd"`` (steps of lr × gradient / its largest entry).

    Adam moves every pixel by ≈ lr, which ruins the SSIM of flat regions; the normalised gradient step
    moves pixels in proportion to their gradient.
    """

    kind: str = "adam"

    def __post_init__(self) -> None:
        _choice("optimizer", self.kind, OPTIMIZERS)

    def start(self, delta: torch.Tensor, lr: float) -> Stepper:
        """A fresh optimiser state for one descent of ``delta`` (a leaf that requires grad)."""
        return Stepper(self.kind, delta, lr)


@dataclass(frozen=True)
class Selection:
    """Which iterate the attack returns.

    Attributes:
        rule: ``"last"``: the last iterate with an unchanged prediction (see ``keep_prediction``);
            ``"real"``: the iterate whose real-model map is closest to the target (SSIM), among those with
            an unchanged prediction and image SSIM ≥ the budget's floor; ``"peak"``: as ``"real"``, but an
            iterate whose real map peaks inside the target beats every one whose map does not (score
            SSIM + 1 where the peak is inside).
        keep_prediction: With ``"last"``, fall back per image to the last iterate whose prediction equals
            the clean one (``False``: the final iterate).
        refine_iterations: After the main descent, this many more steps from the best iterate found, at
            β = the schedule's end and step ``lr × refine_lr`` (needs ``"real"``; 0: off).
        refine_lr: Step of the refinement as a fraction of ``lr``.
    """

    rule: str = "last"
    keep_prediction: bool = True
    refine_iterations: int = 0
    refine_lr: float = 0.25

    def __post_init__(self) -> None:
        _choice("select", self.rule, SELECTIONS)
        check_int(self.refine_iterations, "refine_iterations", minimum=0)
        check_number(self.refine_lr, "refine_lr (a fraction of lr)", above=0.0, maximum=1.0)
        if self.refine_iterations and not self.real:
            raise RobustXAIError(
                'refine_iterations needs select="real" (it refines the best real-map iterate)'
            )

    @property
    def real(self) -> bool:
        """Whether iterates are scored by the real model's map."""
        return self.rule in ("real", "peak")


@dataclass(frozen=True)
class Budget:
    """How far the image may move.

    Attributes:
        eps: L∞ bound of the perturbation; ``None``: unbounded (only clipped to [0, 1]).
        ssim_floor: Shrink the perturbation after every step until image SSIM ≥ this (``None``: off).
        smooth: Blur δ with a Gaussian of this σ in pixels (0: the paper's free pixels). Smooth
            perturbations change an image's local structure, and so its SSIM, far less at the same L∞ size.
    """

    eps: float | None = None
    ssim_floor: float | None = None
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.eps is not None:
            check_epsilon(self.eps)
        if self.ssim_floor is not None:
            check_number(self.ssim_floor, "ssim_floor", above=0.0, maximum=1.0)
        _sigma("smooth", self.smooth)

    @property
    def radius(self) -> float:
        """The L∞ radius used for projection (1 in [0, 1] pixel space = unbounded)."""
        return 1.0 if self.eps is None else float(self.eps)


@dataclass(frozen=True)
class BetaSchedule:
    """Softplus β of the surrogate, from ``start`` to ``end`` (``"geometric"`` or ``"linear"``)."""

    start: float = 10.0
    end: float = 100.0
    rule: str = "geometric"

    def __post_init__(self) -> None:
        beta_schedule(self.start, self.end, 1, self.rule)  # validates the β settings

    def betas(self, steps: int) -> list[float]:
        """β for each of ``steps`` iterations."""
        return beta_schedule(self.start, self.end, steps, self.rule)
