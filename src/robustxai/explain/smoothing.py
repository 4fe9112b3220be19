"""SmoothGrad (Smilkov et al. 2017): the saliency map averaged over noisy copies of the image (METHODS.md).

Captum's ``NoiseTunnel`` draws its noise from torch's global random generator, one block per sample chunk,
so its numbers depend on global state and on the chunk size. Here the noise for the whole call is drawn
first from a local generator seeded by ``seed``, in Captum's layout (``repeat_interleave``: image-major), and
the gradients are then taken in passes of ``batch_size`` rows with Captum's ``Saliency``. So the same seed
gives Captum's ``NoiseTunnel(Saliency)`` numbers under ``torch.manual_seed(seed)``, whatever the batch size,
and the global generator is left untouched.
"""

from __future__ import annotations

import math

import torch
from captum.attr import Saliency as CaptumSaliency
from torch import nn

from robustxai.errors import RobustXAIError
from robustxai.explain.base import EXPLAINERS, Explainer, check_batch_size

# Images are in [0, 1] (DESIGN.md), so the input range that scales the noise is 1.
INPUT_RANGE = 1.0


@EXPLAINERS.register("smoothgrad")
class SmoothGrad(Explainer):
    """SmoothGrad: mean over samples of |∂f_c/∂x| at x + n, n ~ N(0, σ²), max over channels by default.

    Args:
        noise: σ as a fraction of the input range; images are in [0, 1], so σ = ``noise`` (0.10–0.15 in the
            paper; default 0.15). The noisy copies are not clipped to [0, 1], as in the paper and Captum.
        n_samples: Noisy copies per image (default 25).
        seed: Seed of the noise. The noise of a call is drawn for the whole batch at once, so an image's map
            depends on the seed and on its position in the batch, not on ``batch_size``.
        batch_size: Images × samples evaluated per forward/backward pass (``None``: all ``B × n_samples``
            at once). The default 64 keeps a pass near the image batch, where CPU throughput peaks.
        reduction: Channel reduction of the map.
    """

    name = "smoothgrad"

    def __init__(
        self,
        noise: float = 0.15,
        n_samples: int = 25,
        seed: int = 0,
        batch_size: int | None = 64,
        reduction: str = "max_abs",
    ) -> None:
        super().__init__(reduction)
        if (
            isinstance(noise, bool)
            or not isinstance(noise, int | float)
            or not math.isfinite(noise)
            or noise < 0
        ):
            raise RobustXAIError(
                f"noise must be a finite number ≥ 0 (fraction of the input range), got {noise!r}"
            )
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise RobustXAIError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise RobustXAIError(f"seed must be an integer, got {seed!r}")
        self.noise = float(noise)
        self.n_samples = n_samples
        self.seed = seed
        self.batch_size = check_batch_size(batch_size)

    def draw_noise(self, images: torch.Tensor) -> torch.Tensor:
        """The noise of one call ``[B · n_samples, C, H, W]``: row ``b · n_samples + s`` is image b, sample s.

        Drawn exactly as Captum's ``NoiseTunnel`` draws it (``torch.normal`` with a float32 σ tensor), from a
        local generator on the images' device.
        """
        gen = torch.Generator(device=images.device).manual_seed(self.seed)
        shape = (images.shape[0] * self.n_samples, *images.shape[1:])
        sigma = torch.tensor(self.noise * INPUT_RANGE, device=images.device).repeat(shape)
        return torch.normal(0.0, sigma, generator=gen).to(images.dtype)

    def attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean of |∇f_c| over the noisy copies ``[B, C, H, W]``."""
        noise = self.draw_noise(images)
        rows = noise.shape[0]
        owner = torch.arange(images.shape[0], device=images.device).repeat_interleave(self.n_samples)
        step = rows if self.batch_size is None else self.batch_size
        saliency = CaptumSaliency(model)
        total = torch.zeros_like(images)
        for start in range(0, rows, step):
            idx = owner[start : start + step]
            noisy = (images[idx] + noise[start : start + step]).requires_grad_(True)
            grads = saliency.attribute(noisy, target=targets[idx], abs=True).detach()
            total.index_add_(0, idx, grads)
        return total / self.n_samples
