"""A smooth stand-in for a ReLU network, for attacks that differentiate through an explanation map.

Gradient-based maps of a ReLU network are piecewise constant in the input, so their gradient (a second
derivative of the model) is zero almost everywhere and an optimiser gets no signal. The manipulation attack
(METHODS.md, "Manipulation attack") therefore works on a *surrogate*: a deep copy of the model in which
every ReLU computes Softplus(β)(x) = log(1 + exp(βx)) / β instead, with β raised during the attack so the
surrogate approaches the real network. The user's model is never modified: final maps and predictions are
always taken from the original ReLU model.

Two kinds of ReLU are replaced:

- every ``nn.ReLU`` module of the copy becomes a :class:`SmoothReLU` module;
- functional calls (``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place ``relu_`` forms, as
  used by e.g. torchvision's DenseNet) are intercepted while the surrogate runs, through a
  ``TorchFunctionMode`` active only during the surrogate's forward pass. Nothing global is patched.
  In-place calls return a new tensor instead of writing into their argument, which is what every caller
  that uses the return value (the usual style) needs. The mode sees every torch call, which cost ≈ 4 % of a
  saliency attack on the built-in CNN, so a model built only of modules known to call no functional ReLU
  (:data:`NO_FUNCTIONAL_RELU`, no hooks, no replaced forward but the built-in fast max-pool) runs
  without it: the same operations, so the same numbers.

Guided backpropagation (for Guided Grad-CAM) changes the backward rule of the ReLU *modules* only — as
Captum's ``GuidedBackprop`` does, which hooks ``nn.ReLU`` modules — to ``relu(grad_out) · σ(βx)``, the
smooth counterpart of ``relu(grad_out) · 1[x > 0]``. That backward is written with differentiable
operations, so the attack can differentiate through it (double backward).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from robustxai._errors import RobustXAIError
from robustxai._validate import check_int, check_number
from robustxai.models import ModelWrapper
from robustxai.models._attention import SoftAttentionHead
from robustxai.models._pool import max_pool_2x2
from robustxai.models._smallcnn import SmallCNN

_FUNCTIONAL_RELUS: tuple[Callable[..., Any], ...] = (
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
)


class _GuidedSoftplus(torch.autograd.Function):
    """Softplus(β) forward; guided-backprop backward ``relu(g) · σ(βx)``, itself differentiable."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return F.softplus(x, beta=beta)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * torch.sigmoid(ctx.beta * x), None


class SmoothReLU(nn.Module):
    """Softplus(β), the replacement of ``nn.ReLU`` in a surrogate; ``guided`` switches the backward rule.

    Args:
        beta: Sharpness β (Softplus(β) → ReLU as β → ∞).
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)
        self.guided = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Softplus(β)(x), with the guided backward rule when ``guided`` is set."""
        if self.guided:
            out: torch.Tensor = _GuidedSoftplus.apply(x, self.beta)
            return out
        return F.softplus(x, beta=self.beta)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"beta={self.beta:g}, guided={self.guided}"


class _SoftplusMode(TorchFunctionMode):
    """Turns functional ReLU calls into Softplus(β) while active."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in _FUNCTIONAL_RELUS:
            return F.softplus(args[0], beta=self.beta)
        return func(*args, **(kwargs or {}))


#: Module types whose own ``forward`` calls no functional ReLU (torch's layers, robustxai's built-in CNN
#: parts, whose non-linearities are modules): a surrogate made only of these needs no function mode.
NO_FUNCTIONAL_RELU: frozenset[type[nn.Module]] = frozenset(
    {
        nn.Sequential,
        nn.Conv1d,
        nn.Conv2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.Linear,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Flatten,
        nn.Dropout,
        nn.Identity,
        nn.Softmax,
        ModelWrapper,
        SmallCNN,
        SoftAttentionHead,
    }
)


def _needs_mode(model: nn.Module) -> bool:
    """Whether a functional ReLU may run in the forward pass of ``model`` (then the mode must catch it)."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    for module in model.modules():
        if type(module) is SmoothReLU:
            continue
        if type(module) not in NO_FUNCTIONAL_RELU or module._forward_hooks or module._forward_pre_hooks:
            return True
        own = module.__dict__.get("forward")
        if own is not None and own is not max_pool_2x2:
            return True
    return False


class SoftplusSurrogate:
    """A deep copy of ``model`` with every ReLU computing Softplus(β); the original stays untouched.

    The copy keeps the original's attributes (task, cam layer, train/eval mode); its parameters do not
    require gradients. Call it like the model; set :attr:`beta` to sharpen it.

    Args:
        model: The ReLU model to imitate.
        beta: Initial sharpness β (> 0).

    Raises:
        RobustXAIError: If ``beta`` is not positive.
    """

    def __init__(self, model: nn.Module, beta: float) -> None:
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.relus: list[SmoothReLU] = []
        self._replace(self.model)
        self._mode = _needs_mode(self.model)  # decided once: the copy is the surrogate's own
        self._beta = 0.0
        self.beta = beta

    def _replace(self, module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                smooth = SmoothReLU(1.0)
                setattr(module, name, smooth)
                self.relus.append(smooth)
            else:
                self._replace(child)

    @property
    def beta(self) -> float:
        """The current sharpness β of every replaced ReLU."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        if not float(value) > 0:
            raise RobustXAIError(f"softplus beta must be > 0, got {value!r}")
        self._beta = float(value)
        for relu in self.relus:
            relu.beta = self._beta

    @contextmanager
    def guided(self) -> Iterator[None]:
        """Use the guided-backprop backward rule in the ReLU modules while the context is open."""
        for relu in self.relus:
            relu.guided = True
        try:
            yield
        finally:
            for relu in self.relus:
                relu.guided = False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the surrogate (functional ReLUs are smoothed during this call only)."""
        if not self._mode:
            plain: torch.Tensor = self.model(images)
            return plain
        with _SoftplusMode(self._beta):
            out: torch.Tensor = self.model(images)
        return out


def beta_schedule(start: float, end: float, steps: int, rule: str = "geometric") -> list[float]:
    """β for each of ``steps`` iterations, from ``start`` to ``end`` (geometric or linear).

    Args:
        start: β of the first iteration (> 0).
        end: β of the last iteration (≥ ``start``).
        steps: Number of iterations (≥ 1).
        rule: ``"geometric"`` (constant ratio, the default: the surrogate sharpens evenly on a log scale)
            or ``"linear"``.

    Raises:
        RobustXAIError: On a non-positive β, ``end < start``, ``steps < 1`` or an unknown rule.
    """
    check_number(start, "beta_start", above=0.0)
    if not check_number(end, "beta_end", above=0.0) >= float(start):
        raise RobustXAIError(f"beta_start must be ≤ beta_end, got {start!r} and {end!r}")
    check_int(steps, "steps", minimum=1)
    if rule not in ("geometric", "linear"):
        raise RobustXAIError(f"beta schedule must be 'geometric' or 'linear', got {rule!r}")
    if steps == 1:
        return [float(start)]
    fracs = [k / (steps - 1) for k in range(steps)]
    if rule == "linear":
        return [start + (end - start) * f for f in fracs]
    return [start * (end / start) ** f for f in fracs]
