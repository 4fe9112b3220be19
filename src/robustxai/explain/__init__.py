"""Explainers: registry, target rule, map reduction, and the methods built on Captum."""

from robustxai.explain import (  # noqa: F401  (registers the explainers)
    _baseline,
    _cam,
    _deeplift,
    _gradients,
    _lime,  # noqa: F401  (registers "lime")
    _perturbation,
    _rollout,
    _smoothing,
    _xrai,  # noqa: F401  (registers "xrai")
)
from robustxai.explain._base import (
    EXPLAINERS,
    Attribution,
    Explainer,
    Explanation,
    create_explainer,
    explain_targets,
    list_explainers,
    reduce_channels,
    resolve_targets,
)

__all__ = [
    "EXPLAINERS",
    "Attribution",
    "Explainer",
    "Explanation",
    "create_explainer",
    "explain_targets",
    "list_explainers",
    "reduce_channels",
    "resolve_targets",
]
