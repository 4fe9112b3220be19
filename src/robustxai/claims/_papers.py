"""The four papers the built-in claims come from (``papers/`` of the design notes), named once."""

from __future__ import annotations

SECURE = "Secure Diagnostics: Adversarial Robustness Meets Clinical Interpretability (Najafi et al.)"
ATTENTIVE = (
    "Adversarially Robust Medical Classification via Attentive Convolutional Neural Networks (Wasserman)"
)
IMPACT = "Impact of Adversarial Attacks on Deep Learning Model Explainability (Nur & Sadat)"
TRUST = "Trustworthiness of medical XAI: saliency maps manipulated without changing predictions (DIAL-RPI)"
