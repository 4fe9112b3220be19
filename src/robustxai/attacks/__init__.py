"""Attacks: FGSM, BIM, PGD (L∞/L2), APGD, ε sweeps, sanity checks and the explanation manipulation.

The manipulation attack has its own registry: it keeps the prediction instead of changing it.
"""

from robustxai.attacks import apgd, gradient_sign  # noqa: F401  (registers the attacks)
from robustxai.attacks.base import ATTACKS, Attack, create_attack, is_correct, list_attacks, project
from robustxai.attacks.manipulate import MANIPULATIONS, Manipulate, create_manipulation, list_manipulations
from robustxai.attacks.sanity import SanityWarning, gradient_masking_check, sanity_checks
from robustxai.attacks.sweep import cascade, robust_accuracy, sweep

__all__ = [
    "ATTACKS",
    "MANIPULATIONS",
    "Attack",
    "Manipulate",
    "SanityWarning",
    "cascade",
    "create_attack",
    "create_manipulation",
    "gradient_masking_check",
    "is_correct",
    "list_attacks",
    "list_manipulations",
    "project",
    "robust_accuracy",
    "sanity_checks",
    "sweep",
]
