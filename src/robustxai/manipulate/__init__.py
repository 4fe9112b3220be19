"""The explanation-manipulation attack, built on the explainers' differentiable maps (DESIGN.md).

It has its own registry, ``MANIPULATIONS``: an evasion attack (``robustxai.attacks``) maximises the task
loss and is scored by the accuracy it destroys, whereas this attack keeps the prediction on purpose and is
scored by where the map goes. It differentiates through any explainer that offers
:meth:`~robustxai.explain._differentiable.DifferentiableMap.map_for_attack`, on a Softplus surrogate of the
model (:mod:`robustxai.manipulate._softplus`).
"""

from robustxai.manipulate import _presets  # noqa: F401  (registers "manipulate")
from robustxai.manipulate._attack import (
    MANIPULATIONS,
    Manipulate,
    ManipulationResult,
    create_manipulation,
    explained_class,
    list_manipulations,
)
from robustxai.manipulate._presets import PRESETS, manipulation_from_settings
from robustxai.manipulate._softplus import SoftplusSurrogate, beta_schedule
from robustxai.manipulate._strategies import BetaSchedule, Budget, Objective, Optimiser, Selection
from robustxai.manipulate._targets import MaskOrPoints, default_target

__all__ = [
    "MANIPULATIONS",
    "PRESETS",
    "BetaSchedule",
    "Budget",
    "Manipulate",
    "ManipulationResult",
    "MaskOrPoints",
    "Objective",
    "Optimiser",
    "Selection",
    "SoftplusSurrogate",
    "beta_schedule",
    "create_manipulation",
    "default_target",
    "explained_class",
    "list_manipulations",
    "manipulation_from_settings",
]
