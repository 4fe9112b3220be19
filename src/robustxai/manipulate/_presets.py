"""Named presets and the flat keywords of the manipulation attack (what configs and the CLI pass).

A TOML table cannot hold strategy objects, so ``create_manipulation("manipulate", **keywords)`` takes flat
keywords, starts from a named preset and lets every keyword given override it:

- ``"paper"`` (the default, and :class:`~robustxai.manipulate._attack.Manipulate`'s class defaults): the
  paper's loss α₁‖m̂ − m̂_t‖² + α₂‖Δf‖² + ‖x' − x‖², Adam, the last iterate with the prediction kept.
- ``"ssim"`` (the default profile's): 1 − SSIM(target blurred by 2 px, min-max map) + 0.01‖Δf‖² +
  0.1(1 − image SSIM), steepest descent, image SSIM held ≥ 0.981, the iterate whose real map is closest
  to the target, then 100 refinement steps around it. Why: :mod:`robustxai.manipulate._attack`.
- ``"peak"`` (the paper profile's, issue 15): ``"ssim"`` plus the peak term (``alpha_peak`` = 1: the map's
  maximum pushed into the target, :meth:`~robustxai.manipulate._strategies.Objective.peak_term`), the
  ``"peak"`` selection (an iterate whose real map peaks inside the target beats any that does not) and
  50 refinement steps. SSIM ≥ 0.6 against a small square is reached by any sparse map; this preset also
  moves the map's maximum.

A keyword left at ``None`` takes the preset's value, so ``alpha_map=None`` means "the preset's α₁" (for
both presets: the paper's value scaled to the image size).
"""

from __future__ import annotations

from typing import Any

from robustxai._errors import RobustXAIError
from robustxai._validate import check_int, check_number
from robustxai.manipulate._attack import MANIPULATIONS, Manipulate
from robustxai.manipulate._strategies import BetaSchedule, Budget, Objective, Optimiser, Selection

#: The settings of each preset, as flat keywords of :func:`manipulate`.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "map_loss": "mse",
        "image_loss": "mse",
        "optimizer": "adam",
        "select": "last",
        "target_sigma": 0.0,
        "refine_iterations": 0,
    },
    "ssim": {
        "map_loss": "ssim",
        "image_loss": "ssim",
        "alpha_image": 0.1,
        "optimizer": "sgd",
        "ssim_floor": 0.981,
        "select": "real",
        "target_sigma": 2.0,
        "refine_iterations": 100,
    },
    "peak": {
        "map_loss": "ssim",
        "image_loss": "ssim",
        "alpha_image": 0.1,
        "optimizer": "sgd",
        "ssim_floor": 0.981,
        "select": "peak",
        "target_sigma": 2.0,
        "refine_iterations": 50,
        "alpha_peak": 1.0,
    },
}

#: Values of the keywords no preset sets.
_BASE: dict[str, Any] = {
    "method": "saliency",
    "iterations": 300,
    "lr": 2e-4,
    "beta_start": 10.0,
    "beta_end": 100.0,
    "beta_rule": "geometric",
    "target_size": 0.25,
    "keep_prediction": True,
    "smooth": 0.0,
    "ig_steps": 8,
    "sg_samples": 8,
    "sg_sigma": 0.15,
    "seed": 0,
    "refine_lr": 0.25,
    "alpha_peak": 0.0,
}


def _integer(name: str, value: Any, least: int) -> int:
    return check_int(value, name, minimum=least)


def _number(name: str, value: Any) -> float:
    return check_number(value, name)


def _optional(name: str, value: Any) -> float | None:
    return None if value is None else _number(name, value)


def _explainer_params(method: str, s: dict[str, Any]) -> dict[str, Any]:
    """The attacked explainer's keywords from the flat ones (only those the method takes)."""
    ig_steps = _integer("ig_steps", s["ig_steps"], 1)
    sg_samples = _integer("sg_samples", s["sg_samples"], 1)
    if not _number("sg_sigma", s["sg_sigma"]) >= 0:
        raise RobustXAIError(f"sg_sigma must be ≥ 0, got {s['sg_sigma']!r}")
    if method in ("integrated_gradients", "xrai"):  # XRAI is steered through the IG map it segments
        return {"n_steps": ig_steps}
    if method == "smoothgrad":
        seed = _integer("seed", s["seed"], 0)
        return {"n_samples": sg_samples, "noise": float(s["sg_sigma"]), "seed": seed}
    layer = s.get("cam_layer")
    if layer is not None and not isinstance(layer, str):
        raise RobustXAIError(f"cam_layer must be a dotted layer path, got {layer!r}")
    if method in ("gradcam", "guided_gradcam") and layer is not None:
        return {"layer": layer}
    return {}


def manipulation_from_settings(settings: dict[str, Any], preset: str = "paper") -> Manipulate:
    """Build :class:`Manipulate` from flat keywords on top of ``preset`` (``None`` values: the preset's)."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise RobustXAIError(f"unknown manipulation preset {preset!r}; known: {', '.join(PRESETS)}")
    s = {**_BASE, **PRESETS[preset], **{k: v for k, v in settings.items() if v is not None}}
    for name in ("method", "map_loss", "image_loss", "optimizer", "select", "beta_rule"):
        if not isinstance(s[name], str):
            raise RobustXAIError(f"{name} must be a name, got {s[name]!r}")
    if not isinstance(s["keep_prediction"], bool):
        raise RobustXAIError(f"keep_prediction must be true or false, got {s['keep_prediction']!r}")
    method = s["method"]
    return Manipulate(
        method=method,
        iterations=_integer("iterations", s["iterations"], 1),
        lr=_number("lr", s["lr"]),
        objective=Objective(
            map_loss=s["map_loss"],
            image_loss=s["image_loss"],
            alpha_map=_optional("alpha_map", s.get("alpha_map")),
            alpha_pred=_optional("alpha_pred", s.get("alpha_pred")),
            alpha_image=_optional("alpha_image", s.get("alpha_image")),
            target_sigma=_number("target_sigma", s["target_sigma"]),
            alpha_peak=_number("alpha_peak", s["alpha_peak"]),
        ),
        optimiser=Optimiser(s["optimizer"]),
        selection=Selection(
            rule=s["select"],
            keep_prediction=s["keep_prediction"],
            refine_iterations=_integer("refine_iterations", s["refine_iterations"], 0),
            refine_lr=_number("refine_lr", s["refine_lr"]),
        ),
        budget=Budget(
            eps=_optional("eps", s.get("eps")),
            ssim_floor=_optional("ssim_floor", s.get("ssim_floor")),
            smooth=_number("smooth", s["smooth"]),
        ),
        schedule=BetaSchedule(
            _number("beta_start", s["beta_start"]), _number("beta_end", s["beta_end"]), s["beta_rule"]
        ),
        target_size=_number("target_size", s["target_size"]),
        explainer_params=_explainer_params(method, s),
    )


@MANIPULATIONS.register("manipulate")
def manipulate(
    preset: str = "paper",
    eps: float | None = None,
    method: str | None = None,
    iterations: int | None = None,
    lr: float | None = None,
    alpha_map: float | None = None,
    alpha_pred: float | None = None,
    beta_start: float | None = None,
    beta_end: float | None = None,
    beta_rule: str | None = None,
    target_size: float | None = None,
    keep_prediction: bool | None = None,
    smooth: float | None = None,
    ig_steps: int | None = None,
    sg_samples: int | None = None,
    sg_sigma: float | None = None,
    seed: int | None = None,
    cam_layer: str | None = None,
    map_loss: str | None = None,
    image_loss: str | None = None,
    alpha_image: float | None = None,
    ssim_floor: float | None = None,
    optimizer: str | None = None,
    select: str | None = None,
    target_sigma: float | None = None,
    refine_iterations: int | None = None,
    refine_lr: float | None = None,
    alpha_peak: float | None = None,
) -> Manipulate:
    """The manipulation attack from flat keywords on top of a named preset (see the module docstring).

    Every keyword is a setting of one strategy (:mod:`robustxai.manipulate._strategies`): ``eps``,
    ``ssim_floor``, ``smooth`` → :class:`Budget`; ``map_loss``, ``image_loss``, ``alpha_*``,
    ``target_sigma``, ``alpha_peak`` → :class:`Objective`; ``optimizer`` → :class:`Optimiser`; ``select``,
    ``keep_prediction``, ``refine_*`` → :class:`Selection`; ``beta_*`` → :class:`BetaSchedule`;
    ``ig_steps``, ``sg_samples``, ``sg_sigma``, ``seed``, ``cam_layer`` → the attacked explainer's keywords.
    """
    settings = {k: v for k, v in locals().items() if k != "preset"}
    return manipulation_from_settings(settings, preset)
