"""Entry checks for the tensor conventions every layer keeps (see DESIGN.md).

Images are float tensors ``[B, C, H, W]`` in [0, 1]; maps are ``[B, H, W]``. Public functions call these at
their entry and raise a clear error rather than clamping or reshaping silently. Hyper-parameters of every
plug-in (counts, seeds, sizes, rates) go through :func:`check_int`, :func:`check_optional_int` and
:func:`check_number`, so a bad value is refused the same way, with its name, whichever plug-in takes it.
"""

from __future__ import annotations

import math
import numbers

import torch

from robustxai._errors import RobustXAIError

_RANGE_TOL = 1e-6


def check_images(x: object, name: str = "images") -> torch.Tensor:
    """Check that ``x`` is a float image batch ``[B, C, H, W]`` with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise RobustXAIError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise RobustXAIError(f"{name} must have shape [B, C, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise RobustXAIError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.numel() == 0:
        raise RobustXAIError(f"{name} is empty: shape {tuple(x.shape)}")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass over the data
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL or lo != lo or hi != hi:
        raise RobustXAIError(
            f"{name} must lie in [0, 1] (normalisation belongs inside the model), "
            f"got range [{lo:.4g}, {hi:.4g}]"
        )
    return x


def check_labels(y: object, batch: int, name: str = "labels") -> torch.Tensor:
    """Check that ``y`` is an integer label vector of length ``batch``."""
    if not isinstance(y, torch.Tensor):
        raise RobustXAIError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != batch:
        raise RobustXAIError(f"{name} must have shape [{batch}], got {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise RobustXAIError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.numel() and int(y.min()) < 0:
        raise RobustXAIError(f"{name} must be ≥ 0, got {int(y.min())}")
    return y.long()


def check_maps(m: object, name: str = "maps") -> torch.Tensor:
    """Check that ``m`` is a finite float map batch ``[B, H, W]``."""
    if not isinstance(m, torch.Tensor):
        raise RobustXAIError(f"{name} must be a torch.Tensor, got {type(m).__name__}")
    if m.ndim != 3:
        raise RobustXAIError(f"{name} must have shape [B, H, W], got {tuple(m.shape)}")
    if not m.is_floating_point():
        raise RobustXAIError(f"{name} must be floating point, got dtype {m.dtype}")
    if not torch.isfinite(m).all():
        raise RobustXAIError(f"{name} contains NaN or infinite values")
    return m


def check_epsilon(eps: float, name: str = "eps") -> float:
    """Check that a perturbation budget is a finite non-negative number."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise RobustXAIError(f"{name} must be a number, got {eps!r}") from None
    if not value >= 0 or value == float("inf"):
        raise RobustXAIError(f"{name} must be a finite number ≥ 0, got {eps!r}")
    return value


def check_multilabel(
    y: object, batch: int, num_labels: int | None = None, name: str = "labels"
) -> torch.Tensor:
    """Check that ``y`` is a multi-label target ``[B, K]`` of 0/1 values; return it as float.

    Multi-label tasks (CheXpert-style, one sigmoid per finding) carry one 0/1 column per label instead of a
    class index, so they get their own check rather than a silent reinterpretation of ``check_labels``.
    """
    if not isinstance(y, torch.Tensor):
        raise RobustXAIError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim != 2 or y.shape[0] != batch:
        raise RobustXAIError(
            f"{name} of a multi-label task must have shape [{batch}, K], got {tuple(y.shape)}"
        )
    if num_labels is not None and y.shape[1] != num_labels:
        raise RobustXAIError(f"{name} must have {num_labels} columns (one per label), got {y.shape[1]}")
    yf = y.float()
    if yf.numel() and not bool(((yf == 0) | (yf == 1)).all()):
        raise RobustXAIError(f"{name} of a multi-label task must hold only 0 and 1")
    return yf


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """Check an integer hyper-parameter (``steps``, ``n_samples``, ``seed`` …) and return it as ``int``.

    Only integers pass (Python or NumPy integers): a float such as 2.7 is refused rather than truncated
    to 2, and ``True`` is refused rather than read as 1 — both are a caller's mistake, not a count.

    Args:
        value: The value given.
        name: The parameter's name, for the message.
        minimum: The smallest value allowed (inclusive), or ``None`` for no bound.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        bound = "" if minimum is None else f" ≥ {minimum}"
        raise RobustXAIError(f"{name} must be an integer{bound}, got {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise RobustXAIError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return number


def check_optional_int(value: object, name: str, minimum: int | None = None) -> int | None:
    """:func:`check_int`, with ``None`` allowed (meaning "the default" to the caller)."""
    if value is None:
        return None
    try:
        return check_int(value, name, minimum)
    except RobustXAIError:
        bound = "" if minimum is None else f" ≥ {minimum}"
        raise RobustXAIError(f"{name} must be None or an integer{bound}, got {value!r}") from None


def check_number(
    value: object,
    name: str,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> float:
    """Check a real-valued hyper-parameter and return it as ``float``.

    Finite real numbers pass (``int``, ``float``, NumPy scalars); ``True``, strings, NaN and ±∞ are
    refused with an error naming the parameter instead of failing later inside the method.

    Args:
        value: The value given.
        name: The parameter's name, for the message.
        minimum: The smallest value allowed (inclusive).
        above: A value the number must exceed (exclusive lower bound).
        maximum: The largest value allowed (inclusive).
    """
    bounds = [
        text
        for text, bound in ((f"≥ {minimum}", minimum), (f"> {above}", above), (f"≤ {maximum}", maximum))
        if bound is not None
    ]
    wanted = f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RobustXAIError(wanted)
    number = float(value)
    if not math.isfinite(number):
        raise RobustXAIError(wanted)
    if (minimum is not None and number < minimum) or (above is not None and not number > above):
        raise RobustXAIError(wanted)
    if maximum is not None and number > maximum:
        raise RobustXAIError(wanted)
    return number
