"""Sanity checks before a robust accuracy is trusted.

The checks AutoAttack runs, and a few from Carlini et al., "On Evaluating Adversarial Robustness" (2019).

A gradient attack can only be as good as the gradients it gets. It is silently weakened when the model
returns probabilities (the softmax saturates and the cross-entropy gradient vanishes), when its output is
random (each step sees another function), when input gradients are zero or NaN (a non-differentiable step
such as quantisation: "gradient masking"), or when the model is left in training mode (dropout is random,
batch norm uses batch statistics). :func:`sanity_checks` looks for those on a batch;
:func:`gradient_masking_check` reads the tell-tale signs in robust accuracies that were already measured.
Both return warnings rather than raising: the caller decides what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_images
from robustxai.models._losses import check_task_labels, is_multilabel, task_loss

#: Largest PGD − APGD robust-accuracy gap (as a fraction) that is not flagged.
PGD_APGD_GAP = 0.10
#: Sampling noise allowed when comparing accuracies measured on the same samples.
NOISE = 0.02

_PROB_TOL = 1e-5


@dataclass(frozen=True)
class SanityWarning:
    """One finding: a stable ``code`` (for tests and reports) and a sentence for people."""

    code: str
    message: str


#: Passes per image of :func:`sanity_checks`: (forward, backward): two plain forwards, one with a gradient.
SANITY_PASSES = (3, 1)


def sanity_checks(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[SanityWarning]:
    """Check that gradient attacks on ``model`` will measure what they claim.

    The model is run as it is (its train/eval mode is what an attack would see) and left exactly as it was:
    mode, buffers (batch-norm running statistics) and the global random state are restored.

    Codes: ``train_mode`` (some module is in training mode), ``randomness`` (two forward passes on the same
    input differ), ``probabilities`` (outputs look like softmax rows, or all lie in [0, 1] for a multilabel
    model: pass logits), ``nonfinite_gradients`` and ``zero_gradients`` (input gradients of the task loss are
    NaN/infinite, or exactly zero for some samples: gradient masking).

    Args:
        model: Model taking [0, 1] images and returning logits.
        images: A small batch ``[B, C, H, W]`` in [0, 1].
        labels: Their labels in the model's task format.
    """
    check_images(images)
    labels = check_task_labels(model, labels, images.shape[0]).to(images.device)
    found: list[SanityWarning] = []
    training = [name or "(model)" for name, m in model.named_modules() if m.training]
    if training:
        found.append(
            SanityWarning(
                "train_mode",
                f"{len(training)} module(s) are in training mode (e.g. {training[0]}): dropout and batch "
                "norm then change the function between attack steps; call model.eval() before attacking",
            )
        )
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    devices = [images.device] if images.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            with torch.no_grad():
                out1, out2 = model(images), model(images)
            x = images.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                loss = task_loss(model, model(x), labels, reduction="sum")
                grad = None
                if loss.requires_grad:
                    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])
    found += _output_checks(model, out1, out2)
    found += _gradient_checks(grad, images)
    return found


def _output_checks(model: nn.Module, out1: torch.Tensor, out2: torch.Tensor) -> list[SanityWarning]:
    found: list[SanityWarning] = []
    scale = max(1.0, float(out1.abs().max()))
    diff = float((out1 - out2).abs().max())
    if diff > 1e-6 * scale or diff != diff:
        found.append(
            SanityWarning(
                "randomness",
                f"two forward passes on the same images differ (max |Δ| = {diff:.3g}): a randomised model "
                "defeats plain gradient attacks; use eval mode, or expectation over transformation",
            )
        )
    in_unit = bool(out1.min() >= -_PROB_TOL) and bool(out1.max() <= 1 + _PROB_TOL)
    if is_multilabel(model):
        looks_prob = in_unit
        what = "all outputs lie in [0, 1] (sigmoid probabilities?)"
    else:
        looks_prob = in_unit and bool(((out1.sum(dim=1) - 1).abs() < 1e-4).all())
        what = "every output row lies in [0, 1] and sums to 1 (softmax probabilities?)"
    if looks_prob:
        found.append(
            SanityWarning(
                "probabilities",
                f"{what}: the model must return logits, otherwise the loss saturates and gradient "
                "attacks underestimate the risk",
            )
        )
    return found


def _gradient_checks(grad: torch.Tensor | None, images: torch.Tensor) -> list[SanityWarning]:
    b = images.shape[0]
    if grad is None:
        return [
            SanityWarning(
                "zero_gradients",
                f"the loss does not depend on the input through autograd for all {b} samples "
                "(detached or non-differentiable input path): gradient attacks cannot work",
            )
        ]
    flat = grad.reshape(b, -1)
    if not bool(torch.isfinite(flat).all()):
        bad = int((~torch.isfinite(flat)).any(dim=1).sum())
        return [
            SanityWarning(
                "nonfinite_gradients",
                f"input gradients are NaN or infinite for {bad} of {b} samples: gradient attacks are "
                "unreliable on this model",
            )
        ]
    zero = int((flat.abs().sum(dim=1) == 0).sum())
    if zero:
        return [
            SanityWarning(
                "zero_gradients",
                f"input gradients are exactly zero for {zero} of {b} samples (gradient masking, e.g. a "
                "quantisation or other non-differentiable step, or a saturated loss): gradient attacks "
                "will overestimate robustness",
            )
        ]
    return []


def _check_acc(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not 0 <= v <= 1:
        raise RobustXAIError(f"{name} must be an accuracy in [0, 1], got {value!r}")
    return v


def gradient_masking_check(
    pgd_acc: float | None = None,
    apgd_acc: float | None = None,
    *,
    clean_acc: float | None = None,
    large_eps_acc: float | None = None,
    large_eps: float = 0.3,
    chance: float | None = None,
    step_accs: Mapping[int, float] | None = None,
    gap: float = PGD_APGD_GAP,
    noise: float = NOISE,
) -> list[SanityWarning]:
    """Flag robust accuracies (fractions in [0, 1], same samples) that suggest gradient masking.

    Codes:

    - ``pgd_apgd_gap``: PGD robust accuracy exceeds APGD's by more than ``gap`` (10 points). APGD needs no
      step tuning, so PGD is then either badly tuned or fooled by masked gradients; report APGD's figure.
    - ``large_eps``: accuracy at a large L∞ budget stays high. At ε ≥ 0.5 every [0, 1] image can be moved to
      the same mid-grey image, so no classifier can beat ``chance`` (the share of the most frequent class)
      plus ``noise``: an accuracy above that proves the attack failed. Below 0.5, or without ``chance``, the
      heuristic bound is half the clean accuracy (Carlini et al. suggest ε = 0.3 on [0, 1] images).
    - ``steps_increase``: accuracy rises when the attack gets more steps (``step_accs``: steps → accuracy),
      by more than ``noise``. More steps of a sound attack cannot help the model, so this points at
      randomness or gradients that mislead. An unchanged accuracy is *not* flagged: a converged attack
      looks the same.

    Args:
        pgd_acc: Robust accuracy under PGD.
        apgd_acc: Robust accuracy under APGD at the same budget.
        clean_acc: Clean accuracy (needed by the heuristic ``large_eps`` bound).
        large_eps_acc: Robust accuracy at the budget ``large_eps``.
        large_eps: The L∞ budget of ``large_eps_acc``.
        chance: Share of the most frequent class in the evaluated samples.
        step_accs: Robust accuracy by number of attack steps, same attack and budget.
        gap: Largest PGD − APGD gap that is not flagged.
        noise: Slack for sampling noise in the other comparisons.
    """
    pgd_acc, apgd_acc = _check_acc(pgd_acc, "pgd_acc"), _check_acc(apgd_acc, "apgd_acc")
    clean_acc, chance = _check_acc(clean_acc, "clean_acc"), _check_acc(chance, "chance")
    large_eps_acc = _check_acc(large_eps_acc, "large_eps_acc")
    if not 0 <= gap <= 1 or not 0 <= noise <= 1:
        raise RobustXAIError(f"gap and noise must lie in [0, 1], got {gap!r} and {noise!r}")
    found: list[SanityWarning] = []
    if pgd_acc is not None and apgd_acc is not None and pgd_acc - apgd_acc > gap:
        found.append(
            SanityWarning(
                "pgd_apgd_gap",
                f"PGD robust accuracy {pgd_acc:.1%} is {100 * (pgd_acc - apgd_acc):.1f} points above APGD's "
                f"{apgd_acc:.1%}: PGD is untuned or the gradients are masked; trust the APGD figure",
            )
        )
    if large_eps_acc is not None:
        found += _large_eps_warning(large_eps_acc, large_eps, clean_acc, chance, noise)
    if step_accs:
        found += _steps_warning(step_accs, noise)
    return found


def _large_eps_warning(
    large_eps_acc: float, large_eps: float, clean_acc: float | None, chance: float | None, noise: float
) -> list[SanityWarning]:
    """The ``large_eps`` check of :func:`gradient_masking_check`."""
    if float(large_eps) >= 0.5 and chance is not None:
        bound, why = chance + noise, f"chance ({chance:.1%}): every image can be turned mid-grey"
    elif clean_acc is not None:
        bound, why = 0.5 * clean_acc, f"half the clean accuracy ({clean_acc:.1%})"
    else:
        raise RobustXAIError("large_eps_acc needs clean_acc (or chance when large_eps ≥ 0.5)")
    if not large_eps_acc > bound:
        return []
    return [
        SanityWarning(
            "large_eps",
            f"robust accuracy {large_eps_acc:.1%} at ε = {large_eps:g} is above {why}: "
            "the attack is failing, a sign of gradient masking",
        )
    ]


def _steps_warning(step_accs: Mapping[int, float], noise: float) -> list[SanityWarning]:
    """The ``steps_increase`` check of :func:`gradient_masking_check`."""
    ordered = sorted((int(s), float(_check_acc(a, "step_accs") or 0.0)) for s, a in step_accs.items())
    best_s, best_a = ordered[0]
    for s, a in ordered[1:]:
        if a > best_a + noise:
            return [
                SanityWarning(
                    "steps_increase",
                    f"robust accuracy rose from {best_a:.1%} at {best_s} steps to {a:.1%} at {s} steps: "
                    "more steps cannot help a model against a sound attack (randomness or masking)",
                )
            ]
        if a < best_a:
            best_s, best_a = s, a
    return []
