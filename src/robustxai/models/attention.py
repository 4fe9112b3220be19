"""Soft-attention head (Datta et al., as used in the attentive-CNN paper; see METHODS.md).

On the last convolutional feature map F (C×h×w): Conv2d(C→heads, 3×3, same) + ReLU → softmax over the h·w
positions of each head → sum of heads A → U = A ⊙ F; 2×2 max-pool of F and of U, concatenate, ReLU,
dropout, global average pool, linear. It lets the classifier weight spatial positions explicitly, which the
paper links to better robustness.

Every non-linearity is its own module, used once per forward pass (no functional ``F.relu``/``F.max_pool2d``):
DeepLIFT and Guided Backprop (Captum) replace the backward pass of ReLU, max-pool and softmax *modules*, and
a functional call or a reused module would silently fall back to the plain gradient. The modules hold no
parameters, so state-dict keys are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class SoftAttentionHead(nn.Module):
    """Classifier head with spatial soft attention over a feature map.

    Args:
        in_channels: Channels C of the feature map.
        num_classes: Number of output logits.
        heads: Number of attention maps (16 in the paper).
        dropout: Dropout probability before the linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, heads: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        self.attn_conv = nn.Conv2d(in_channels, heads, kernel_size=3, padding=1)
        self.attn_relu = nn.ReLU()
        self.attn_softmax = nn.Softmax(dim=-1)
        self.pool_f = nn.MaxPool2d(2)
        self.pool_u = nn.MaxPool2d(2)
        self.out_relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_channels, num_classes)
        self.last_attention: torch.Tensor | None = None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Return logits ``[B, K]`` from features ``[B, C, h, w]``."""
        b, _, h, w = feats.shape
        scores = self.attn_relu(self.attn_conv(feats))  # [B, heads, h, w]
        attn = self.attn_softmax(scores.flatten(2)).view(b, -1, h, w).sum(dim=1, keepdim=True)
        self.last_attention = attn.detach()
        weighted = attn * feats
        if h >= 2 and w >= 2:
            pooled_f = self.pool_f(feats)
            pooled_u = self.pool_u(weighted)
        else:
            pooled_f, pooled_u = feats, weighted
        z = self.out_relu(torch.cat([pooled_f, pooled_u], dim=1))
        z = self.dropout(z).mean(dim=(2, 3))
        return self.fc(z)
