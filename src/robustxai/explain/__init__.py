"""Explainers: registry, target rule, map reduction, and the methods built on Captum."""

from robustxai.explain import baseline, cam, deeplift, gradients, perturbation, rollout, smoothing  # noqa: F401  (registers the explainers)
from robustxai.explain import lime as _lime  # noqa: F401  (registers "lime")
from robustxai.explain import xrai as _xrai  # noqa: F401  (registers "xrai")
from robustxai.explain.base import (
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
