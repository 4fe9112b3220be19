"""A 2 × 2 max-pool with exactly ``nn.MaxPool2d(2)``'s numbers, faster on the CPU where no gradient is kept.

Why: PyTorch's CPU max-pool in the default (channels-first) layout walks each window element by element;
on the built-in 64-px CNNs it was over a third of a forward pass (LIME's perturbations, predictions,
occlusion, the attacks' checks). A 2 × 2 window with stride 2 is the element-wise maximum of four strided
views of the input, which vectorises: a forward pass of the default model at batch 64 took ≈ 0.5–0.65 of
its time (``benchmarks/`` and BENCHMARKS.md).

Why the numbers are the same: a maximum is exact, so every pooled value equals the kernel's (``==``, and a
window with a NaN gives NaN in both). Two bit patterns can differ where nothing downstream sees them: a tie
between +0.0 and −0.0 (``torch.maximum``'s vectorised loop may return the other zero than the kernel,
which keeps the first; the next convolution adds the products to +0.0, which erases the sign) and a NaN's
payload. Making them match too (``torch.where`` with the kernel's rule) cost more than the kernel itself,
so it was not done. Where autograd records the pass, the kernel itself runs: its backward sends each
window's gradient to the first maximal element, and an index computed here to mimic that was measured no
faster in a forward+backward pass. A GPU, odd sides, a channels-last or non-float input also take the
kernel. The default audit's tables were byte-identical with and without it (BENCHMARKS.md).

The fast forward is installed on a module *instance* (:func:`fast_max_pools`), so the module stays an
``nn.MaxPool2d`` for everything that dispatches on its type (DeepLIFT's rules, the incremental occlusion
engine, Captum), and anything that installs its own instance forward (DeepLIFT) and restores it later
keeps working.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fits(x: torch.Tensor) -> bool:
    return (
        x.ndim == 4
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
        and x.shape[-2] % 2 == 0
        and x.shape[-1] % 2 == 0
        and x.is_contiguous()
    )


def _pooled(x: torch.Tensor) -> torch.Tensor:
    rows = torch.maximum(x[:, :, :, 0::2], x[:, :, :, 1::2])
    return torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2]).contiguous()


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``; without a gradient to record, computed as element-wise maxima (same values)."""
    if (torch.is_grad_enabled() and x.requires_grad) or not _fits(x):
        return F.max_pool2d(x, 2)
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
