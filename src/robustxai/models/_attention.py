"""Soft-attention head (Datta et al., as used in the attentive-CNN paper; see METHODS.md).

On the last convolutional feature map F (C×h×w): Conv2d(C→heads, 3×3, same) + ReLU → softmax over the h·w
positions of each head → sum of heads A → U = A ⊙ F; 2×2 max-pool of F and of U, concatenate, ReLU,
dropout, global average pool, linear. It lets the classifier weight spatial positions explicitly, which the
paper links to better robustness.

Every non-linearity is its own module, used once per forward pass (no functional ``F.relu``/``F.max_pool2d``):
DeepLIFT and Guided Backprop (Captum) replace the backward pass of ReLU, max-pool and softmax *modules*, and
a functional call or a reused module would silently fall back to the plain gradient. The modules hold no
parameters, so state-dict keys are unchanged. The head keeps nothing from a call: :func:`attention_maps`
reads a model's attention map on some images.
"""

from __future__ import annotations

import torch
from torch import nn

from robustxai._errors import RobustXAIError


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

    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        """The attention map A ``[B, 1, h, w]`` of features ``[B, C, h, w]`` (each head's map sums to 1)."""
        b, _, h, w = feats.shape
        scores = self.attn_relu(self.attn_conv(feats))  # [B, heads, h, w]
        return self.attn_softmax(scores.flatten(2)).view(b, -1, h, w).sum(dim=1, keepdim=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Return logits ``[B, K]`` from features ``[B, C, h, w]``."""
        h, w = feats.shape[-2:]
        attn = self.attention(feats)
        weighted = attn * feats
        if h >= 2 and w >= 2:
            pooled_f = self.pool_f(feats)
            pooled_u = self.pool_u(weighted)
        else:
            pooled_f, pooled_u = feats, weighted
        z = self.out_relu(torch.cat([pooled_f, pooled_u], dim=1))
        z = self.dropout(z).mean(dim=(2, 3))
        return self.fc(z)


def attention_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The soft-attention map ``[B, 1, h, w]`` of ``model``'s (first) attention head on ``images``.

    The head keeps no per-call state: a forward pre-hook catches the features the head receives during
    one forward pass without gradients, and :meth:`SoftAttentionHead.attention` maps them after it, so the
    model's own pass is the ordinary one (each module called once).
    """
    head = next((m for m in model.modules() if isinstance(m, SoftAttentionHead)), None)
    if head is None:
        raise RobustXAIError(f"{type(model).__name__} has no soft-attention head")
    caught: list[torch.Tensor] = []

    def catch(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        caught.append(args[0].detach())

    handle = head.register_forward_pre_hook(catch)
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    with torch.no_grad():
        return head.attention(caught[0])
