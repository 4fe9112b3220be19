"""A 2 × 2 max-pool with exactly ``nn.MaxPool2d(2)``'s numbers and gradients, faster on the CPU.

Why: PyTorch's CPU max-pool in the default (channels-first) layout walks each window element by element;
on the built-in 64-px CNNs it was over a third of a forward pass and a sixth of a forward+backward pass.
A 2 × 2 window with stride 2 is the element-wise maximum of four strided views of the input, which
vectorises (BENCHMARKS.md, "The default audit in three minutes").

Why the numbers are the same: a maximum is exact, so the pooled values are bit for bit the kernel's (a NaN
in a window gives NaN in both; even the sign of a zero agrees). The gradient must go where the kernel
sends it: to the window's *first* maximal element in row-major order (the kernel moves its running maximum
only to a strictly larger value). Where autograd records the pass, the forward also computes that element
by the same rule, and the backward is PyTorch's own ``max_pool2d_with_indices_backward`` with those
indices, so gradients, and gradients of gradients, are the kernel's too. A window with a NaN, odd sides,
a channels-last or non-float input take the kernel itself.

The fast forward is installed on a module *instance* (:func:`fast_max_pools`), so the module stays an
``nn.MaxPool2d`` for everything that dispatches on its type (DeepLIFT's rules, the incremental occlusion
engine, Captum), and anything that installs its own instance forward (DeepLIFT) and restores it later
keeps working.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _fits(x: torch.Tensor) -> bool:
    return (
        x.ndim == 4
        and x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
        and x.shape[-2] % 2 == 0
        and x.shape[-1] % 2 == 0
        and x.is_contiguous()
    )


def _pooled(x: torch.Tensor) -> torch.Tensor:
    rows = torch.maximum(x[:, :, :, 0::2], x[:, :, :, 1::2])
    return torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2]).contiguous()


_BASES: dict[tuple[int, int, str], torch.Tensor] = {}  # (H, W, device) → flat index of each window's corner


def _pooled_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled values and, per window, the flat ``H·W`` index of its first maximal element.

    The kernel scans a window row by row, left to right, and moves to an element only when it is strictly
    larger: so the right element of a row wins only if larger than the left, the bottom row only if its
    maximum is larger than the top row's.
    """
    h, w = x.shape[-2:]
    left, right = x[:, :, :, 0::2], x[:, :, :, 1::2]
    rows = torch.maximum(left, right)
    right_wins = right > left
    top, bottom = rows[:, :, 0::2], rows[:, :, 1::2]
    out = torch.maximum(top, bottom).contiguous()
    bottom_wins = bottom > top
    col = torch.where(bottom_wins, right_wins[:, :, 1::2], right_wins[:, :, 0::2])
    key = (h, w, str(x.device))
    base = _BASES.get(key)
    if base is None:
        base = torch.arange(0, h, 2, device=x.device).view(-1, 1) * w + torch.arange(0, w, 2, device=x.device)
        _BASES[key] = base
    indices = torch.add(base, bottom_wins, alpha=w)
    indices += col
    return out, indices


class _MaxPool2x2(torch.autograd.Function):
    """Forward: maxima and the kernel's argmax; backward: the kernel's own backward with those indices."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, indices = _pooled_with_indices(x)
            if bool(torch.isnan(out).any()):  # the kernel's NaN rule picks another element: ask the kernel
                out, indices = F.max_pool2d_with_indices(x, [2, 2])
        ctx.save_for_backward(x, indices)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices
        )


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``: the same values and gradients, computed as element-wise maxima."""
    if not _fits(x):
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        out: torch.Tensor = _MaxPool2x2.apply(x)
        return out
    return _pooled(x)


def _is_plain_2x2(module: nn.Module) -> bool:
    if type(module) is not nn.MaxPool2d:
        return False
    m: nn.MaxPool2d = module

    def pair(v: object) -> object:
        return tuple(v) if isinstance(v, tuple | list) else (v, v)

    return (
        pair(m.kernel_size) == (2, 2)
        and pair(m.stride) == (2, 2)
        and pair(m.padding) == (0, 0)
        and pair(m.dilation) == (1, 1)
        and not m.ceil_mode
        and not m.return_indices
    )


def fast_max_pools(model: nn.Module) -> int:
    """Give every plain ``nn.MaxPool2d(2)`` of ``model`` the fast forward; returns how many.

    Only modules with kernel 2, stride 2, no padding or dilation, floor mode and no indices are changed;
    each keeps its type, its hooks and its ``state_dict``.
    """
    count = 0
    for module in model.modules():
        if _is_plain_2x2(module) and "forward" not in module.__dict__:
            module.__dict__["forward"] = max_pool_2x2
            count += 1
    return count
