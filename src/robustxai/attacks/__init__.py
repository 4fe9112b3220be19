"""Attacks: registry and the L∞ sign-gradient family (FGSM, BIM, PGD)."""

from robustxai.attacks import gradient_sign  # noqa: F401  (registers the attacks)
from robustxai.attacks.base import ATTACKS, Attack, create_attack, list_attacks, project

__all__ = ["ATTACKS", "Attack", "create_attack", "list_attacks", "project"]
