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
output, and cost ≈ 3× the passes on CPU). The hooks are removed and the ``inplace`` flags of in-place
activations, which are switched off while it runs, restored in a ``finally``: the model is never changed.
The rules are in :mod:`robustxai.explain._deeplift_rules`.

Threads: DeepLIFT calls hold one process-wide lock while their hooks are on the model, so concurrent calls
run one at a time; another thread's ordinary forward pass of the same model meanwhile is not touched by the
hooks (they act only for the calling thread and on tensors of its pass), but sees its in-place activations
run out of place (same numbers).

Hooked modules on tensors that are not the pass's batch — a learned gate ``sigmoid(self.gate)`` of shape
``[1, C, 1, 1]``, a 0-dim tensor, anything that does not require grad — act as ordinary modules (as in
Captum, whose rules leave such a module's gradient alone when its input carries no image difference).

Summation to delta is checked on every call (f(x) and f(x₀) come with the pass): a miss larger than
``DELTA_TOLERANCE`` of the gap on some image logs one warning, naming it — the model has a non-linearity
the rules do not know (``nn.GELU``, ``nn.SiLU``, a functional ``F.relu``), which was differentiated
instead. Captum's softmax rule does not keep summation to delta, so for models with an ``nn.Softmax``
module a miss is not logged. Either way the call's :attr:`~robustxai.explain._base.Explanation.approximate`
says so, and an audit reports it once per model.

Speed: the rules keep more intermediate tensors than a plain backward pass, so in a process whose ``malloc``
returns freed memory to the kernel each call starts on fresh pages; with :func:`robustxai.keep_freed_memory`
(the CLI's default) DeepLIFT costs ≈ 1.1× its two passes on a 2-core CPU, without it up to ≈ 1.7×
(BENCHMARKS.md).

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
would (``batch_size`` does not split it; :meth:`DeepLift.pass_rows` with the model says so), and its maps
depend on which images are explained together — an image's map changes with the rest of its batch. That is
inherited from Captum's rule, which the numbers follow.
"""

from __future__ import annotations

import logging
import weakref

import torch
from torch import nn

from robustxai._validate import check_number
from robustxai.explain._base import (
    EXPLAINERS,
    Attribution,
    Explainer,
    balanced_rows,
    check_batch_size,
    rows_per_pass,
)
from robustxai.explain._deeplift_rules import rescale_rules
from robustxai.explain._references import check_reference, reference_images
from robustxai.models._wrapper import forward_dtype

logger = logging.getLogger(__name__)

# Models whose summation-to-delta miss was already logged at WARNING (weak: never keeps a model alive).
_WARNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()

# Summation-to-delta is checked on every call: a gap off by more than this fraction is logged.
DELTA_TOLERANCE = 1e-3

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
            (:func:`~robustxai.explain._base.rows_per_pass`). Bounds memory; never the numbers. A model with
            a softmax module runs in one pass, and its maps depend on the batch's composition (module
            docstring).
        reduction: Channel reduction of the map.

    A call whose attributions do not add up to f_c(x) − f_c(x₀) (to ``DELTA_TOLERANCE`` of it) on every image
    returns an :class:`~robustxai.explain._base.Explanation` with ``approximate=True``: the model has a
    non-linearity the rules do not all cover (an attention product, a softmax, GELU, …), so its maps are not
    a decomposition of the output difference, which the audit's report says.
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
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.eps = check_number(eps, "eps", above=0)
        self.batch_size = check_batch_size(batch_size)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """Images and references go forward and backward together: 2 × ``batch`` each way."""
        return 2 * batch, 2 * batch

    def pass_rows(
        self, batch: int, device: torch.device | str = "cpu", model: nn.Module | None = None
    ) -> int:
        """Rows per pass: images and their references, twice the images per (balanced) pass.

        With ``model`` given and holding an ``nn.Softmax`` module, the whole batch in one pass (``2 × batch``,
        whatever ``batch_size``): Captum's softmax rule couples the rows of a pass.
        """
        if model is not None and _has_softmax(model):
            return 2 * batch
        return 2 * balanced_rows(batch, max(1, rows_per_pass(self.batch_size, device) // 2))

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The reference x₀ for each input."""
        return reference_images(images, self.baseline, self.blur_sigma)

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Attribution:
        """Signed DeepLIFT attributions ``[B, C, H, W]``; approximate when summation to delta missed."""
        images = images.detach()
        reference = self.baselines(images)  # outside the graph: x₀ is a constant
        per_pass = self.pass_rows(images.shape[0], images.device, model) // 2
        out, gaps = [], []
        with rescale_rules(model, self.eps) as rules:
            for start in range(0, images.shape[0], per_pass):
                x = images[start : start + per_pass].requires_grad_(True)
                x0 = reference[start : start + per_pass]
                t = targets[start : start + per_pass]
                rules.rows = 2 * x.shape[0]
                logits = model(torch.cat([x, x0]))
                picked = logits.gather(1, torch.cat([t, t])[:, None].to(logits.device))
                (grad,) = torch.autograd.grad(picked.sum(), x)
                out.append((x.detach() - x0) * grad)
                gaps.append(picked.detach().view(2, -1))
            attr = torch.cat(out) if len(out) > 1 else out[0]
            # Captum's softmax rule misses summation to delta by design: checked, but not logged.
            held = check_delta(attr, torch.cat(gaps, dim=1), model, log=not _has_softmax(model))
        return Attribution(attr, approximate=not held)


def _has_softmax(model: nn.Module) -> bool:
    """Whether the model holds an ``nn.Softmax`` module, whose rule couples the rows of a pass."""
    return any(type(m) is nn.Softmax for m in model.modules())


def check_delta(
    attr: torch.Tensor, values: torch.Tensor, model: nn.Module | None = None, log: bool = True
) -> bool:
    """Whether Σ attributions equal f_c(x) − f_c(x₀) to ``DELTA_TOLERANCE`` of it on every image; logs misses.

    Args:
        attr: DeepLIFT attributions ``[B, C, H, W]``.
        values: The target logits ``[2, B]`` of the images (row 0) and of their references (row 1).
        model: The explained model: the warning is logged once per model at WARNING (an audit calls
            DeepLIFT on one model many times, and the cause is the model's), later misses at DEBUG.
        log: Log a miss at all (models with an ``nn.Softmax`` miss by design: not logged).

    A miss means a non-linearity the rules do not know (``nn.GELU``, ``nn.SiLU``, a functional ``F.relu``,
    a product of two input-dependent terms such as an attention gate): it was differentiated instead, and
    the map is not DeepLIFT's — or a large ``eps``. Rounding is allowed for with a small term relative to
    the logits themselves, in the precision the model's forward passes run in: a model set to bfloat16 or
    float16 (:meth:`~robustxai.models.ModelWrapper.set_precision`) rounds its logits to that type's
    epsilon, not float32's, so the allowance is that type's (the check is correspondingly coarser there).
    """
    values = values.to(attr)
    gap = values[0] - values[1]
    miss = (attr.sum(dim=tuple(range(1, attr.ndim))) - gap).abs()
    reduced = forward_dtype(model) if model is not None else None
    eps = torch.finfo(reduced if reduced is not None else attr.dtype).eps
    allowed = DELTA_TOLERANCE * gap.abs() + 16 * eps * values.abs().sum(dim=0)
    worst = int((miss - allowed).argmax())  # the one host synchronisation of a call that passes
    if not bool(miss[worst] > allowed[worst]):
        return True
    if log:
        first = model is None or model not in _WARNED
        if model is not None:
            _WARNED.add(model)
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "DeepLIFT: the attributions of image %d add up to %.4g, not to f(x) − f(x₀) = %.4g (%d of %d "
            "images miss by more than %g of the gap): the model has a non-linearity DeepLIFT's rules do not "
            "cover, e.g. GELU, SiLU, a functional F.relu or an attention product, which was differentiated "
            "instead (or eps is so large that the ordinary derivative replaced real differences)%s",
            worst,
            float(attr[worst].sum()),
            float(gap[worst]),
            int((miss > allowed).sum()),
            attr.shape[0],
            DELTA_TOLERANCE,
            "" if reduced is None else f"; the model runs in {reduced}, whose rounding was allowed for",
        )
    return False
