"""The random-map baseline: what an alignment metric scores when the map carries no information."""

from __future__ import annotations

import zlib

import torch
from torch import nn

from robustxai._validate import check_int
from robustxai.explain._base import EXPLAINERS, Explainer


@EXPLAINERS.register("random")
class RandomMap(Explainer):
    """Uniform random attributions, independent of the model; the chance level of every alignment metric.

    Args:
        seed: Seed, so the baseline is reproducible.
        reduction: Channel reduction of the map.
    """

    name = "random"

    def __init__(self, seed: int = 0, reduction: str = "max_abs") -> None:
        super().__init__(reduction)
        self.seed = check_int(seed, "seed")

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """No gradients: at most the forward pass that finds the predicted classes."""
        return batch, 0

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Uniform noise of the images' shape, seeded per image by its content.

        The same image always gets the same map (reproducible, independent of batching), and a changed
        image — e.g. an attacked one — gets an unrelated map, which is what a map without information does.
        """
        out = torch.empty(images.shape, dtype=images.dtype)
        for i, image in enumerate(images.detach().cpu()):
            digest = zlib.crc32(image.contiguous().numpy().tobytes())
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 4_294_967_311 + digest)
            out[i] = torch.rand(image.shape, generator=gen, dtype=images.dtype)
        return out.to(images.device)
