"""Training: standard and adversarial fitting with early stopping."""

from robustxai.training._fit import FitConfig, FitResult, fit

__all__ = ["FitConfig", "FitResult", "fit"]
