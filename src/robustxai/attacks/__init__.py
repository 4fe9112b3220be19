"""Attacks: FGSM, BIM, PGD (L∞/L2), APGD, ε sweeps and sanity checks.

The explanation-manipulation attack lives in :mod:`robustxai.manipulate` (after ``explain/``): it is built
on the explainers' differentiable maps and keeps the prediction instead of changing it.
"""

from robustxai.attacks import _apgd, _gradient_sign  # noqa: F401  (registers the attacks)
from robustxai.attacks._base import ATTACKS, Attack, create_attack, is_correct, list_attacks, project
from robustxai.attacks._sanity import SanityWarning, gradient_masking_check, sanity_checks
from robustxai.attacks._sweep import cascade, robust_accuracy, sweep

__all__ = [
    "ATTACKS",
    "Attack",
    "SanityWarning",
    "cascade",
    "create_attack",
    "gradient_masking_check",
    "is_correct",
    "list_attacks",
    "project",
    "robust_accuracy",
    "sanity_checks",
    "sweep",
]
