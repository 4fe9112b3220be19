"""Gradient explainers: Saliency, Input × Gradient, Integrated Gradients (METHODS.md).

They compute what Captum's ``Saliency``, ``InputXGradient`` and ``IntegratedGradients`` compute (the tests
compare them to 1e-5), with the model's own forward and backward passes and nothing else: Captum's wrappers
add per-call bookkeeping, and its IG builds every interpolated image of the call at once and chunks them by
whole steps (``internal_batch_size`` must hold a step of every image). Here IG's image × step rows are built
a pass at a time, in passes of any size (:func:`integrated_gradients`).
"""

from __future__ import annotations

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai._validate import check_int
from robustxai.explain._base import (
    EXPLAINERS,
    Explainer,
    balanced_rows,
    check_batch_size,
    reduce_channels,
    row_chunks,
    rows_per_pass,
)
from robustxai.explain._differentiable import DifferentiableMap, Forward, target_gradients
from robustxai.explain._references import check_reference, reference_images

IG_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def input_gradients(
    model: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """∂f_t/∂x of each image's target logit: one forward and one backward pass of the batch.

    The same numbers as Captum's ``compute_gradients`` (the sum of the selected logits, differentiated
    with respect to the input only: no parameter gradients are formed). The result may be a view with
    overlapping memory (a model whose first operation is ``x.sum((2, 3))`` gets an expanded gradient back),
    so callers use out-of-place operations on it. ``create_graph`` keeps it on the autograd graph
    (:func:`~robustxai.explain._differentiable.target_gradients`).
    """
    return target_gradients(model, images, targets, create_graph)[0]


def predicted_gradients(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`input_gradients` and the targets.

    ``targets=None`` takes each image's arg-max logit of the same forward pass: the predicted class, as
    :func:`~robustxai.explain._base.resolve_targets` defines it.
    """
    return target_gradients(model, images, targets)


@EXPLAINERS.register("saliency")
class Saliency(Explainer, DifferentiableMap):
    """Vanilla gradient (Simonyan et al.): |∂f_c/∂x|, max over channels by default.

    One forward and one backward pass of the images, as Captum's ``Saliency(abs=True)``; the predicted class
    (the default target) is read from that same forward pass.

    Args:
        reduction: Channel reduction of the map.
    """

    name = "saliency"

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Absolute input gradient of the target logit."""
        return input_gradients(model, images, targets).abs()

    def _attribute_predicted(
        self, model: nn.Module, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted class is read from the gradient's own forward pass."""
        grad, targets = predicted_gradients(model, images)
        return grad.abs(), targets

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """The saliency map on the autograd graph (see ``DifferentiableMap``)."""
        return reduce_channels(input_gradients(net, images, targets, create_graph).abs(), self.reduction)


@EXPLAINERS.register("input_x_gradient")
class InputXGradient(Explainer, DifferentiableMap):
    """Gradient × Input (Shrikumar et al.): x ⊙ ∂f_c/∂x; the map is max over channels of |·| by default.

    It is the first-order (Taylor) share of each pixel in the logit, relative to a black image: one
    forward and one backward pass, like Saliency (Captum's ``InputXGradient``).

    Args:
        reduction: Channel reduction of the map.
    """

    name = "input_x_gradient"

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed x ⊙ ∇f_c(x)."""
        return input_gradients(model, images, targets) * images

    def _attribute_predicted(
        self, model: nn.Module, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted class is read from the gradient's own forward pass."""
        grad, targets = predicted_gradients(model, images)
        return grad * images, targets

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """The Grad × Input map on the autograd graph."""
        return reduce_channels(input_gradients(net, images, targets, create_graph) * images, self.reduction)


def integrated_gradients(
    model: Forward,
    images: torch.Tensor,
    baselines: torch.Tensor,
    targets: torch.Tensor,
    n_steps: int,
    method: str,
    rows: int,
    create_graph: bool = False,
) -> torch.Tensor:
    """Integrated Gradients with Captum's quadrature, in passes of at most ``rows`` image × step rows.

    Row ``r`` of the call is step ``r // B`` of image ``r % B`` (Captum's layout), the point
    x₀ + α_s (x − x₀); its input gradient is weighted by the step size w_s and added to its image. The α_s
    and w_s are Captum's for ``method`` (its step sizes rounded to float32, as Captum does), so the result is
    ``IntegratedGradients(model).attribute(images, baselines, target, n_steps=n_steps, method=method)``
    up to the order of the sum. With ``create_graph`` the result stays on the autograd graph of
    ``images`` (the manipulation attack differentiates through it).
    """
    step_sizes_fn, alphas_fn = approximation_parameters(method)
    dtype, device = images.dtype, images.device
    weights = torch.tensor(step_sizes_fn(n_steps)).float().to(dtype=dtype, device=device)
    alphas = torch.tensor(alphas_fn(n_steps), dtype=torch.float64).to(dtype=dtype, device=device)
    b = images.shape[0]
    delta = images - baselines
    total = torch.zeros_like(images)
    spatial = (1,) * (images.ndim - 1)
    for chunk in row_chunks(b * n_steps, rows):
        row = torch.arange(chunk.start, chunk.stop, device=device)
        step, image = row // b, row % b
        points = baselines[image] + alphas[step].view(-1, *spatial) * delta[image]
        grads = input_gradients(model, points, targets[image], create_graph)
        total = total.index_add(0, image, grads * weights[step].view(-1, *spatial))
    return total * delta


@EXPLAINERS.register("integrated_gradients")
class IntegratedGradients(Explainer, DifferentiableMap):
    """Integrated Gradients (Sundararajan et al.): (x − x₀)·∫ ∇f(x₀ + α(x − x₀)) dα.

    Args:
        n_steps: Points of the Riemann sum along the path (20 in the papers).
        baseline: The reference x₀: ``"zero"`` (black image), ``"mean"`` (each image's mean intensity) or
            ``"blurred"`` (the image under a Gaussian blur of ``blur_sigma`` pixels).
        blur_sigma: Standard deviation in pixels of the blur for ``baseline="blurred"``.
        method: Captum integration rule.
        batch_size: Image × step rows evaluated per forward/backward pass (any number ≥ 1; a pass may mix
            steps and images); ``None``: the device's default, 32 rows on CPU and 256 on a GPU
            (:func:`~robustxai.explain._base.rows_per_pass` gives the measurements behind it).
        reduction: Channel reduction of the map.
    """

    name = "integrated_gradients"

    def __init__(
        self,
        n_steps: int = 20,
        baseline: str = "zero",
        blur_sigma: float = 5.0,
        method: str = "riemann_middle",
        batch_size: int | None = None,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        check_reference(baseline, blur_sigma)
        if method not in IG_METHODS:
            raise RobustXAIError(f"unknown IG method {method!r}; known: {', '.join(IG_METHODS)}")
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.method = method
        self.batch_size = check_batch_size(batch_size)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """One forward and one backward pass per image and step: ``n_steps × batch`` each."""
        return self.n_steps * batch, self.n_steps * batch

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Image × step rows per pass (balanced passes, :func:`~robustxai.explain._base.row_chunks`)."""
        return balanced_rows(self.n_steps * batch, rows_per_pass(self.batch_size, device))

    def baselines(self, images: torch.Tensor) -> torch.Tensor:
        """The path's starting image x₀ for each input."""
        return reference_images(images, self.baseline, self.blur_sigma)

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Signed IG attributions (completeness: their sum ≈ f_c(x) − f_c(x₀))."""
        images = images.detach()
        return integrated_gradients(
            model,
            images,
            self.baselines(images),
            targets,
            self.n_steps,
            self.method,
            self.pass_rows(images.shape[0], images.device),
        )

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """The IG map on the autograd graph (the same passes as :meth:`attribute`)."""
        attr = integrated_gradients(
            net,
            images,
            self.baselines(images),
            targets,
            self.n_steps,
            self.method,
            self.pass_rows(images.shape[0], images.device),
            create_graph,
        )
        return reduce_channels(attr, self.reduction)
