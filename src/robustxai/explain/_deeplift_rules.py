"""DeepLIFT's rescale rules as forward hooks and custom autograd functions (see :mod:`.deeplift`).

While :func:`rescale_rules` is active, each non-linearity module Captum's DeepLift knows carries a forward
hook that replaces its output by the same values through an autograd function whose backward applies
Captum's rule instead of the derivative.

Threads. The hooks live on the model's modules, which every thread shares, so :func:`rescale_rules` holds
one process-wide lock for its whole duration: DeepLIFT calls (on any models: a wrapper and its network share
modules) run one at a time, and each restores exactly the flags it switched. The hooks act only for the
thread that installed them and only on tensors of its pass (``rows``); a forward pass of the same model in
another thread meanwhile gets the ordinary outputs (its ``inplace`` ReLUs run out of place, with the same
numbers). Max-pools are not switched to ``return_indices``: each gets an instance ``forward`` that returns
the argmax for the calling thread's pass alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from robustxai._errors import RobustXAIError

ELEMENTWISE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
#: Per max-pool module type, its functional form (called with ``return_indices=True``: values and argmax).
MAX_POOLS: dict[type[nn.Module], Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    nn.MaxPool1d: F.max_pool1d,
    nn.MaxPool2d: F.max_pool2d,
    nn.MaxPool3d: F.max_pool3d,
}
_LOCK = threading.RLock()  # one DeepLIFT hook context at a time, process-wide (module docstring)


# ------------------------------------------------------------------------------------- own rescale rules

# The rules' forward returns the module's output values, handed over in a tuple: a tensor argument returned
# as-is would become an autograd view, which a later in-place operation of the model (``h += …``) may not
# modify; a tensor that is no argument is a plain output of the rule.
_Held = tuple[torch.Tensor]
_MaxPool = nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d
_Inplace = nn.ReLU | nn.ELU | nn.LeakyReLU  # the element-wise modules with an ``inplace`` flag
_INPLACE = (nn.ReLU, nn.ELU, nn.LeakyReLU)
_PoolOut = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # a max-pool's output, with or without argmax


class _Ctx(Protocol):
    """What the rules use of autograd's context object: saved tensors and their own fields."""

    saved_tensors: tuple[torch.Tensor, ...]
    in_shape: torch.Size  # _MaxPoolRule: the input's shape
    module: nn.Module  # _SoftmaxRule: the softmax module

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        """Keep ``tensors`` for :meth:`backward` (autograd's own method)."""


class _Rescale(torch.autograd.Function):
    """Identity on the module's output values; backward: gradient × multiplier (per element).

    The multiplier is ``[B, …]``, shared by each image row and its reference row, or ``[2, B, …]``.
    """

    @staticmethod
    def forward(ctx: _Ctx, h: torch.Tensor, out: _Held, mult: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mult)
        return out[0]

    @staticmethod
    def backward(ctx: _Ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mult,) = ctx.saved_tensors
        halves = grad.view(2, grad.shape[0] // 2, *grad.shape[1:])
        return (halves * mult).view(grad.shape), None, None


class _MaxPoolRule(torch.autograd.Function):
    """Identity on the pooled values; backward: Captum's max-pool rule, from coefficients per window.

    With g the output gradient, the input gradient of the image rows is
    ``scatter(idx_x, g_x · (a_x + s_x)) + scatter(idx_r, g_r · a_r)`` and of the reference rows
    ``scatter(idx_x, g_x · a_x) + scatter(idx_r, g_r · (a_r + s_r))``, where a = Δout / Δin at the window's
    argmax (0 where |Δin| < eps) and s = 1 where |Δin| < eps (the ordinary gradient) else 0.
    """

    @staticmethod
    def forward(
        ctx: _Ctx,
        h: torch.Tensor,
        out: _Held,
        idx: torch.Tensor,
        coef: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(idx, coef, own)
        ctx.in_shape = h.shape
        return out[0]

    @staticmethod
    def backward(ctx: _Ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        idx, coef, own = ctx.saved_tensors  # [2, B, C, L_out] each: indices, a, a + s
        b2, c = ctx.in_shape[:2]
        g = grad.reshape(2, b2 // 2, c, -1)
        to_other, to_own = g * coef, g * own
        out = torch.zeros(2, b2 // 2, c, ctx.in_shape[2:].numel(), dtype=grad.dtype, device=grad.device)
        out[0].scatter_add_(2, idx[0], to_own[0]).scatter_add_(2, idx[1], to_other[1])
        out[1].scatter_add_(2, idx[0], to_other[0]).scatter_add_(2, idx[1], to_own[1])
        return out.view(ctx.in_shape), None, None, None, None


class _SoftmaxRule(torch.autograd.Function):
    """Identity on the softmax output; backward: Captum's softmax rule.

    The rescale rule (gradient × Δout / Δin, the ordinary softmax gradient where |Δin| < eps), then the mean
    of that whole input gradient — over every row of the pass, as Captum computes it — subtracted.
    """

    @staticmethod
    def forward(
        ctx: _Ctx,
        h: torch.Tensor,
        out: _Held,
        mult: torch.Tensor,
        small: torch.Tensor,
        module: nn.Module,
    ) -> torch.Tensor:
        ctx.module = module
        ctx.save_for_backward(mult, small, h.detach())
        return out[0]

    @staticmethod
    def backward(ctx: _Ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        half = grad.shape[0] // 2
        g = grad.view(2, half, *grad.shape[1:])
        mult, small, h = ctx.saved_tensors
        with torch.enable_grad():  # the ordinary gradient, as autograd gives it
            leaf = h.requires_grad_(True)
            (regular,) = torch.autograd.grad(ctx.module.forward(leaf), leaf, grad)
        scaled = torch.where(small, regular.view_as(g), g * mult).view(grad.shape)
        return scaled - scaled.sum() / scaled.numel(), None, None, None, None


def _halves(t: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    if t.shape[0] % 2:
        raise RobustXAIError(
            f"DeepLIFT: {type(module).__name__} saw {t.shape[0]} rows; the model must keep the batch "
            "dimension (images and references go through it as one batch)"
        )
    x, r = t.detach().chunk(2)
    return x, r


def _slope(module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The module's ordinary derivative at ``h`` (element-wise modules)."""
    if isinstance(module, nn.ReLU):
        return (h > 0).to(h.dtype)
    with torch.enable_grad():
        leaf = h.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(module.forward(leaf).sum(), leaf)
    return d


class _Rules:
    """The forward hooks of one :func:`rescale_rules` context.

    A hook applies its rule only in the installing thread and only to an input that requires grad and has
    the pass's ``rows`` (images and references, set by the caller before each forward pass) as its first
    dimension; anything else — another thread's forward, a learned gate ``[1, C, 1, 1]`` through a sigmoid
    module, a 0-dim tensor — gets the module's ordinary output and gradient.

    An element-wise module's output difference Δout is kept with its output, so a max-pool right after it
    (ReLU → MaxPool in every conv block) takes its Δin from there instead of subtracting again — unless the
    model changed that output in place in between (``h *= 2``: its version tells).
    """

    def __init__(self, eps: float) -> None:
        self.eps = eps
        self.rows = 0  # rows of the current pass: 2 × its images
        self.thread = threading.get_ident()
        # (output, Δout, the output's version) of the last element-wise module
        self.last: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def applies(self, h: object) -> TypeGuard[torch.Tensor]:
        """Whether ``h`` is an input of this context's pass (see the class docstring)."""
        return (
            threading.get_ident() == self.thread
            and isinstance(h, torch.Tensor)
            and h.requires_grad
            and h.ndim > 0
            and h.shape[0] == self.rows
        )

    def _split(
        self, module: nn.Module, args: tuple[object, ...], out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """A hooked module's input ``h`` and its input and output halves ``(h, h_x, h_r, o_x, o_r)``.

        Image rows first, reference rows second; ``None`` when the call is not this context's pass (the
        module then behaves normally).
        """
        h = args[0] if args else None
        if not self.applies(h):
            return None
        return (h, *_halves(h, module), *_halves(out, module))

    def elementwise(
        self, module: nn.Module, args: tuple[object, ...], out: torch.Tensor
    ) -> torch.Tensor | None:
        split = self._split(module, args, out)
        if split is None:
            return None
        h, hx, hr, ox, orf = split
        d_in = hx - hr
        d_out = ox - orf
        if h.is_cuda and isinstance(module, nn.ReLU):  # a cheap derivative: no host synchronisation
            small = d_in.abs() < self.eps  # the ordinary derivative where |Δin| < eps
            slopes = torch.stack([hx > 0, hr > 0]).to(h.dtype)
            mult = torch.where(small, slopes, d_out / d_in)
        else:  # only where some |Δin| < eps (free on CPU; elsewhere the derivative is a pass of its own)
            mult = d_out / d_in
            if float(d_in.abs_().amin()) < self.eps:
                small = d_in.lt_(self.eps)
                px, pr = _slope(module, hx).mul_(small), _slope(module, hr).mul_(small)
                mult = torch.nan_to_num_(mult, nan=0.0, posinf=0.0, neginf=0.0).addcmul_(
                    mult, small, value=-1
                )
                mult = mult.add_(px) if torch.equal(px, pr) else torch.stack([mult + px, mult + pr])
        result: torch.Tensor = _Rescale.apply(h, (out.detach(),), mult)
        self.last = (result, d_out, result._version)
        return result

    def softmax(self, module: nn.Module, args: tuple[object, ...], out: torch.Tensor) -> torch.Tensor | None:
        split = self._split(module, args, out)
        if split is None:
            return None
        h, hx, hr, ox, orf = split
        d_in = hx - hr
        small = d_in.abs() < self.eps
        result: torch.Tensor = _SoftmaxRule.apply(h, (out.detach(),), (ox - orf).div_(d_in), small, module)
        return result

    def pool_forward(self, module: _MaxPool) -> Callable[[torch.Tensor], _PoolOut]:
        """A max-pool's forward that also returns the argmax for this context's pass, and only for it.

        Installed as the module instance's ``forward`` instead of switching its ``return_indices`` flag,
        which every thread would see; other threads and other tensors get the module's own forward.
        """
        own = module.forward  # before the instance forward is set: the class's, or an existing override
        pool = MAX_POOLS[type(module)]
        m = module

        def forward(h: torch.Tensor) -> _PoolOut:
            if not self.applies(h):
                return own(h)
            return pool(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)

        return forward

    def max_pool(
        self, module: nn.Module, args: tuple[object, ...], output: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        h = args[0] if args else None
        if not self.applies(h):  # the same test as pool_forward's: the module's own output
            return None
        out, indices = output
        ox, orf = _halves(out, module)
        b, c = ox.shape[:2]
        if self.last is not None and self.last[0] is h and h._version == self.last[2]:  # not changed in place
            d_in = self.last[1].reshape(b, c, -1)
        else:
            hx, hr = _halves(h, module)
            d_in = (hx - hr).reshape(b, c, -1)
        self.last = None
        top = torch.maximum(ox, orf)
        d_out = torch.empty((2, *ox.shape), dtype=ox.dtype, device=ox.device)
        torch.sub(top, orf, out=d_out[0])
        torch.sub(ox, top, out=d_out[1])
        d_out = d_out.view(2, b, c, -1)
        idx = indices.reshape(2, b, c, -1)
        d_at = torch.empty(d_out.shape, dtype=d_in.dtype, device=d_in.device)
        torch.gather(d_in, 2, idx[0], out=d_at[0])
        torch.gather(d_in, 2, idx[1], out=d_at[1])
        small = d_at.abs().lt_(self.eps)  # 1.0 where |Δin| < eps, else 0.0
        coef = d_out.addcmul_(d_out, small, value=-1).div_(d_at.add_(small))
        pooled = _MaxPoolRule.apply(h, (out.detach(),), idx, coef, coef + small)
        return (pooled, indices) if module.return_indices else pooled


@contextmanager
def rescale_rules(model: nn.Module, eps: float) -> Iterator[_Rules]:
    """While active, the model's non-linearity modules back-propagate DeepLIFT multipliers.

    Yields the hooks' state: set its ``rows`` to the rows of each forward pass, which must be the batch
    ``[x; x₀]`` (images, then their references). Holds the process-wide lock (module docstring). On exit —
    normal or by an exception — every hook is removed, every switched ``inplace`` flag restored and every
    max-pool's instance ``forward`` (:meth:`_Rules.pool_forward`) taken away.
    """
    with _LOCK:
        rules = _Rules(eps)
        handles: list[RemovableHandle] = []
        flags: list[tuple[_Inplace, bool]] = []  # (in-place activation, its flag)
        forwards: list[tuple[nn.Module, object]] = []  # (max-pool, its own instance forward or None)
        try:
            for module in model.modules():
                if type(module) in ELEMENTWISE:
                    handles.append(module.register_forward_hook(rules.elementwise))
                    if isinstance(module, _INPLACE) and module.inplace:  # the hook needs input, output apart
                        flags.append((module, True))
                        module.inplace = False
                elif type(module) is nn.Softmax:
                    handles.append(module.register_forward_hook(rules.softmax))
                elif type(module) in MAX_POOLS and isinstance(module, _MaxPool):
                    handles.append(module.register_forward_hook(rules.max_pool))
                    forwards.append((module, module.__dict__.get("forward")))
                    module.__dict__["forward"] = rules.pool_forward(module)  # this instance only
            yield rules
        finally:
            for act, value in reversed(flags):
                act.inplace = value
            for module, forward in reversed(forwards):
                if forward is None:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = forward
            for handle in handles:
                handle.remove()
