"""SmoothGrad (Smilkov et al. 2017): the saliency map averaged over noisy copies of the image (METHODS.md).

Captum's ``NoiseTunnel`` draws its noise from torch's global random generator, one block per sample chunk,
so its numbers depend on global state and on the chunk size. Here the noise for the whole call is drawn
first from a local generator seeded by ``seed``, in Captum's layout (``repeat_interleave``: image-major), and
the gradients are then taken in passes of ``batch_size`` rows (one forward and one backward pass each, as
Captum's ``Saliency`` computes them). So the same seed gives Captum's ``NoiseTunnel(Saliency)`` numbers under
``torch.manual_seed(seed)``, whatever the batch size, and the global generator is left untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from robustxai._validate import check_int, check_number
from robustxai.explain._base import (
    EXPLAINERS,
    Explainer,
    balanced_rows,
    check_batch_size,
    reduce_channels,
    row_chunks,
    rows_per_pass,
)
from robustxai.explain._differentiable import DifferentiableMap, Forward
from robustxai.explain._gradients import input_gradients

# Images are in [0, 1] (DESIGN.md), so the input range that scales the noise is 1.
INPUT_RANGE = 1.0


@EXPLAINERS.register("smoothgrad")
class SmoothGrad(Explainer, DifferentiableMap):
    """SmoothGrad: mean over samples of |∂f_c/∂x| at x + n, n ~ N(0, σ²), max over channels by default.

    Args:
        noise: σ as a fraction of the input range; images are in [0, 1], so σ = ``noise`` (0.10–0.15 in the
            paper; default 0.15). The noisy copies are not clipped to [0, 1], as in the paper and Captum.
        n_samples: Noisy copies per image (default 25).
        seed: Seed of the noise. The noise of a call is drawn for the whole batch at once, so an image's map
            depends on the seed and on its position in the batch, not on ``batch_size``.
        batch_size: Image × sample rows evaluated per forward/backward pass; ``None``: the device's
            default, 32 rows on CPU and 256 on a GPU (:func:`~robustxai.explain._base.rows_per_pass`).
        reduction: Channel reduction of the map.
    """

    name = "smoothgrad"

    def __init__(
        self,
        noise: float = 0.15,
        n_samples: int = 25,
        seed: int = 0,
        batch_size: int | None = None,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        self.noise = check_number(noise, "noise", minimum=0)
        self.n_samples = check_int(n_samples, "n_samples", minimum=1)
        self.seed = check_int(seed, "seed")
        self.batch_size = check_batch_size(batch_size)

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """One forward and one backward pass per image and sample: ``n_samples × batch`` each."""
        return self.n_samples * batch, self.n_samples * batch

    def pass_rows(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Image × sample rows per pass (balanced passes, :func:`~robustxai.explain._base.row_chunks`)."""
        return balanced_rows(self.n_samples * batch, rows_per_pass(self.batch_size, device))

    def draw_noise(self, images: torch.Tensor) -> torch.Tensor:
        """The noise of one call ``[B · n_samples, C, H, W]``: row ``b · n_samples + s`` is image b, sample s.

        Drawn as Captum's ``NoiseTunnel`` draws it — ``torch.normal(0, σ)`` with a float32 σ, which fills the
        tensor with standard normals and scales them by σ — from a local CPU generator, then moved to the
        images' device: a CUDA generator draws another stream, and the maps of a seed must not depend on
        the device (a run resumed on another device mixes shards).
        """
        gen = torch.Generator().manual_seed(self.seed)
        shape = (images.shape[0] * self.n_samples, *images.shape[1:])
        noise = torch.empty(shape).normal_(generator=gen)
        noise = noise.mul_(torch.tensor(self.noise * INPUT_RANGE))
        return noise.to(device=images.device, dtype=images.dtype)

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean of |∇f_c| over the noisy copies ``[B, C, H, W]``."""
        return self.mean_abs_gradient(model, images.detach(), targets)

    def mean_abs_gradient(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """Mean of |∇f_c| over the noisy copies; on the autograd graph of ``images`` with ``create_graph``."""
        noise = self.draw_noise(images.detach())
        total = torch.zeros_like(images)
        for chunk in row_chunks(noise.shape[0], self.pass_rows(images.shape[0], images.device)):
            owner = torch.arange(chunk.start, chunk.stop, device=images.device) // self.n_samples
            noisy = noise[chunk] + images[owner]
            grads = input_gradients(net, noisy, targets[owner], create_graph)
            total = total.index_add(0, owner, grads.abs())
        return total / self.n_samples

    def map_for_attack(
        self, net: Forward, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = True
    ) -> torch.Tensor:
        """The SmoothGrad map on the autograd graph (the same noise and passes as :meth:`attribute`)."""
        return reduce_channels(self.mean_abs_gradient(net, images, targets, create_graph), self.reduction)
