"""DeepLIFT with the rescale rule (Shrikumar et al. 2017), as Captum's ``DeepLift`` defines it (METHODS.md).

DeepLIFT explains the difference f_c(x) − f_c(x₀) to a reference x₀ and, through a network of linear layers
and supported non-linearities, its attributions add up to exactly that difference (summation-to-delta).

How it is computed here. The images and their references go through the model as one batch ``[x; x₀]``
(Captum does the same), so every non-linearity sees both of its inputs, h and h₀, in the forward pass and
its DeepLIFT multiplier is known there. While the explainer runs, each non-linearity *module* Captum's
DeepLift knows gets a forward hook that replaces its output by the same values carried by a small autograd
function whose backward applies Captum's rule instead of the derivative:

- element-wise (ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus): the gradient times Δout / Δin, or the
  ordinary derivative where |Δin| < ``eps``;
- max-pool (1-, 2-, 3-d): Δout = max(o, o₀) − o₀ routed to the argmax of the image and o − max(o, o₀) to
  the argmax of the reference, both halves summed and divided by Δin; the ordinary max-pool gradient where
  |Δin| < ``eps``;
- softmax: the element-wise rule, then the mean of the whole input gradient of the pass subtracted.

So one call costs one forward and one backward pass of the 2B rows ``[x; x₀]`` plus a few element-wise
operations per non-linearity, with no per-module copies (Captum's hooks clone every hooked module's input and
output, and cost ≈ 3× the passes on CPU). The hooks are removed and the modules' ``inplace`` /
``return_indices`` flags, which are switched while it runs, restored in a ``finally``: the model is never
changed.

The numbers are Captum 0.9's where Captum's are right (the tests compare them to 1e-10), and differ where
they are not:

- Captum 0.9 mis-handles two hooked modules in a row (ReLU → MaxPool in every conv block here): the first
  records its output gradient before the second replaces it with DeepLIFT multipliers, so summation-to-delta
  fails by a few per cent (captum issue #1104, fixed upstream in PR #1843 after 0.9). Here each rule acts on
  the gradient that actually flows, as in the fixed Captum.
- Captum's max-pool rule takes ``grad_input[0]`` — the first *image's* ordinary gradient — where |Δin| <
  ``eps``; here each row keeps its own. Such positions carry no Δ, so the sums are unaffected either way,
  and on the built-in models the ReLU below zeroes them (the tests find no difference there).
- Captum un-pools with ``max_unpool``, so with overlapping max-pool windows some terms overwrite others;
  here they are added, which keeps summation-to-delta.
- A module called twice in one forward pass (torchvision ResNet blocks reuse one ReLU) gets its own rule per
  call; Captum keeps only its last input (and was refused on such models).

A functional call (``F.relu``) is invisible to module hooks here as in Captum, and is differentiated
ordinarily; the built-in models use modules. Captum's softmax rule subtracts a mean over every row it
processes, so a model with an ``nn.Softmax`` module runs in one pass of the whole batch, as one Captum call
would (``batch_size`` does not split it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer, balanced_rows, check_batch_size, rows_per_pass
from robustxai.explain.references import check_reference, reference_images

ELEMENTWISE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
MAX_POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


# ------------------------------------------------------------------------------------- own rescale rules


class _Rescale(torch.autograd.Function):
    """Identity on the module's output values; backward: gradient × multiplier (per element).

    The multiplier is ``[B, …]``, shared by each image row and its reference row, or ``[2, B, …]``.
    """

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, out: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mult)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
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
        ctx: Any,
        h: torch.Tensor,
        out: torch.Tensor,
        idx: torch.Tensor,
        coef: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(idx, coef, own)
        ctx.in_shape = h.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
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
        ctx: Any,
        h: torch.Tensor,
        out: torch.Tensor,
        mult: torch.Tensor,
        small: torch.Tensor | None,
        module: nn.Module,
    ) -> torch.Tensor:
        ctx.module = module
        ctx.has_small = small is not None
        if small is not None:
            ctx.save_for_backward(mult, small, h.detach())
        else:
            ctx.save_for_backward(mult)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        half = grad.shape[0] // 2
        g = grad.view(2, half, *grad.shape[1:])
        if ctx.has_small:
            mult, small, h = ctx.saved_tensors
            with torch.enable_grad():  # the ordinary gradient, as autograd gives it
                leaf = h.requires_grad_(True)
                (regular,) = torch.autograd.grad(ctx.module.forward(leaf), leaf, grad)
            scaled = torch.addcmul(g * mult, regular.view_as(g), small)
        else:
            (mult,) = ctx.saved_tensors
            scaled = g * mult
        scaled = scaled.view(grad.shape)
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

    An element-wise module's output difference Δout is kept with its output, so a max-pool right after it
    (ReLU → MaxPool in every conv block) takes its Δin from there instead of subtracting again.
    """

    def __init__(self, eps: float) -> None:
        self.eps = eps
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (output, Δout) of the last element-wise
        self.returns_indices: dict[nn.Module, bool] = {}  # each max-pool's own return_indices

    def elementwise(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        h = args[0]
        hx, hr = _halves(h, module)
        ox, orf = _halves(out, module)
        d_in = hx - hr
        d_out = ox - orf
        mult = d_out / d_in
        if float(d_in.abs_().amin()) < self.eps:  # the ordinary derivative where |Δin| < eps
            small = d_in.lt_(self.eps)
            px, pr = _slope(module, hx).mul_(small), _slope(module, hr).mul_(small)
            mult = torch.nan_to_num_(mult, nan=0.0, posinf=0.0, neginf=0.0).addcmul_(mult, small, value=-1)
            mult = mult.add_(px) if torch.equal(px, pr) else torch.stack([mult + px, mult + pr])
        result: torch.Tensor = _Rescale.apply(h, out.detach(), mult)
        self.last = (result, d_out)
        return result

    def softmax(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        h = args[0]
        hx, hr = _halves(h, module)
        ox, orf = _halves(out, module)
        d_in = hx - hr
        mult = (ox - orf).div_(d_in)
        small = None
        if float(d_in.abs_().amin()) < self.eps:
            small = d_in.lt_(self.eps)
            mult = torch.nan_to_num_(mult, nan=0.0, posinf=0.0, neginf=0.0).addcmul_(mult, small, value=-1)
        result: torch.Tensor = _SoftmaxRule.apply(h, out.detach(), mult, small, module)
        return result

    def max_pool(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        h = args[0]
        out, indices = output
        ox, orf = _halves(out, module)
        b, c = ox.shape[:2]
        if self.last is not None and self.last[0] is h:
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
        pooled = _MaxPoolRule.apply(h, out.detach(), idx, coef, coef + small)
        return (pooled, indices) if self.returns_indices[module] else pooled


@contextmanager
def rescale_rules(model: nn.Module, eps: float) -> Iterator[None]:
    """While active, the model's non-linearity modules back-propagate DeepLIFT multipliers.

    Forward passes must be of the batch ``[x; x₀]`` (images, then their references). On exit — normal or by
    an exception — every hook is removed and every switched flag restored.
    """
    rules = _Rules(eps)
    handles: list[RemovableHandle] = []
    flags: list[tuple[nn.Module, str, Any]] = []

    def switch(module: nn.Module, name: str, value: bool) -> None:
        flags.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    try:
        for module in model.modules():
            if type(module) in ELEMENTWISE:
                if getattr(module, "inplace", False):  # the hook needs the input and output apart
                    switch(module, "inplace", False)
                handles.append(module.register_forward_hook(rules.elementwise))
            elif type(module) is nn.Softmax:
                handles.append(module.register_forward_hook(rules.softmax))
            elif type(module) in MAX_POOLS:
                rules.returns_indices[module] = bool(module.return_indices)
                switch(module, "return_indices", True)
                handles.append(module.register_forward_hook(rules.max_pool))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, name, value in reversed(flags):
            setattr(module, name, value)


# ---------------------------------------------------------------------------------------------- explainer


@EXPLAINERS.register("deeplift")
class DeepLift(Explainer):
    """DeepLIFT, rescale rule: (x − x₀) · multipliers, with Σ attributions = f_c(x) − f_c(x₀).

    Non-linearities must be modules (``nn.ReLU``, ``nn.MaxPool2d``, …), not functional calls; see the module
    docstring. Run it on a model in eval mode: the images and references go through the network as one
    batch, so batch-norm in training mode would mix them. One call costs one forward and one backward pass
    of the images and their references (:meth:`passes`).

    Args:
        baseline: The reference x₀: ``"zero"`` (black image, the default), ``"mean"`` (each image's mean
            intensity) or ``"blurred"`` (Gaussian blur of ``blur_sigma`` pixels).
        blur_sigma: Standard deviation in pixels of the blur for ``baseline="blurred"``.
        eps: Below this |Δin| a non-linearity passes its ordinary gradient instead of Δout / Δin (Captum's).
        batch_size: Rows (images + their references) per forward/backward pass; ``None``: the device's
            default, 32 rows on CPU (16 images) and 256 on a GPU
            (:func:`~robustxai.explain.base.rows_per_pass`). Bounds memory; never the numbers. A model with
            a softmax module runs in one pass (module docstring).
        reduction: Channel reduction of the map.
    """

    name = "deeplift"

    def __init__(
        self,
        baseline: str = "zero",
        blur_sigma: float = 5.0,
        eps: float = 1e-10,
        batch_size: int | None = None,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        check_reference(baseline, blur_sigma)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
            raise RobustXAIError(f"eps must be a number > 0, got {eps!r}")
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.eps = float(eps)
        self.batch_size = check_batch_size(batch_size)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Images and references go forward and backward together: 2 × ``batch`` each way."""
        return 2 * batch, 2 * batch

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Rows per pass: images and their references, twice the images per (balanced) pass."""
        return 2 * balanced_rows(batch, max(1, rows_per_pass(self.batch_size, device) // 2))

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The reference x₀ for each input."""
        return reference_images(images, self.baseline, self.blur_sigma)

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed DeepLIFT attributions ``[B, C, H, W]``."""
        images = images.detach()
        reference = self.baselines(images)  # outside the graph: x₀ is a constant
        per_pass = self.pass_rows(images.shape[0], images.device) // 2
        if any(type(m) is nn.Softmax for m in model.modules()):
            per_pass = images.shape[0]  # Captum's softmax rule couples the rows of a pass: one pass
        out = []
        with rescale_rules(model, self.eps):
            for start in range(0, images.shape[0], per_pass):
                x = images[start : start + per_pass].requires_grad_(True)
                x0 = reference[start : start + per_pass]
                t = targets[start : start + per_pass]
                logits = model(torch.cat([x, x0]))
                picked = logits.gather(1, torch.cat([t, t])[:, None].to(logits.device))
                (grad,) = torch.autograd.grad(picked.sum(), x)
                out.append((x.detach() - x0) * grad)
        return torch.cat(out) if len(out) > 1 else out[0]
