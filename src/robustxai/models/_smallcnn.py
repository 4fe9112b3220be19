"""Built-in small CNNs for the synthetic benchmark: fast enough to train on a laptop CPU in minutes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustxai.models._attention import SoftAttentionHead
from robustxai.models._pool import fast_max_pools


def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3×3 conv, batch norm, ReLU and an optional 2×2 max-pool."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """A 4-block CNN: conv blocks with pooling after all but the last, then a head.

    The last conv block (``features.<n-1>``) is where Grad-CAM looks; its feature map is 1/8 of the input.

    Args:
        in_channels: Image channels.
        num_classes: Output logits.
        widths: Channels of the conv blocks.
        attention: Use the soft-attention head instead of global-average-pool + linear.
        dropout: Dropout before the final linear layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        widths: Sequence[int] = (32, 64, 128, 128),
        attention: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        widths = list(widths)
        blocks: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(widths):
            blocks.append(conv_block(c_in, c_out, pool=i < len(widths) - 1))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head: nn.Module
        if attention:
            self.head = SoftAttentionHead(c_in, num_classes, dropout=dropout)
        else:
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
            )
        fast_max_pools(self)  # the same numbers as nn.MaxPool2d(2), several times faster (models/_pool.py)

    @property
    def cam_layer(self) -> str:
        """Dotted path of the last conv block, relative to this network."""
        return f"features.{len(self.features) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits for normalised images."""
        return self.head(self.features(x))
