"""Attention rollout (Abnar & Zuidema 2020) and its gradient-weighted variant (Chefer et al. 2021).

Both read the attention probabilities of every self-attention block of a ViT-style model (timm's ViT and
DeiT ``Attention``: ``[B, heads, N, N]`` over all N tokens) and propagate them from the input patches to the
token the classifier reads:

- ``attention_rollout``: per block, the heads are fused (mean by default) into A, the residual connection is
  accounted for as Â = 0.5·A + 0.5·I (rows renormalised), and R = Â_L ⋯ Â_1. Class-agnostic: the target
  only names the explained class in the result.
- ``gradient_rollout``: per block, Ā = mean over heads of (∇A ⊙ A)⁺, the gradient of the target logit times
  the attention, negative values clipped; R = (I + Ā_L) ⋯ (I + Ā_1) (Chefer et al.'s rule R ← R + Ā·R with
  R₀ = I). Class-specific.

The map is the row of R of the token the head reads (the class token; the mean of the class and
distillation tokens for a distilled DeiT; the mean of the patch rows for an average-pooled model), over the
patch columns, laid out on the patch grid ``[B, 1, h, w]`` and upsampled bilinearly like a CAM.

How the attention is captured. timm computes attention with fused ``scaled_dot_product_attention`` when it
can, which never materialises the probabilities. While an explainer runs, fused attention is switched off
(:func:`~robustxai.models._tokens.explicit_attention`), so each attention module takes its explicit path
``softmax(q·kᵀ) → attn_drop → @ v`` — the same numbers — and a forward hook on ``attn_drop`` keeps its
output, the probabilities that multiply the values (after dropout, which is the identity in eval mode), for
the calling thread's pass only.

Swin's windowed attention and XCiT's cross-covariance attention (channels × channels) have no token-to-token
matrix over the whole image: these explainers declare them (and CNNs) not applicable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai.explain._base import EXPLAINERS, Explainer
from robustxai.models._tokens import explicit_attention, grid_shape

HEAD_FUSIONS = ("mean", "max", "min")
NO_ATTENTION = (
    "no global self-attention blocks: attention rollout needs ViT/DeiT-style attention over all tokens "
    "(windowed Swin and cross-covariance XCiT attention, and CNNs, have no token-to-token matrix)"
)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The model's timm ViT-style attention modules, in module order (empty without timm or without any)."""
    try:
        from timm.models.vision_transformer import Attention
    except ImportError:  # timm is an optional extra; without it no model has such blocks
        return []
    return [m for m in model.modules() if isinstance(m, Attention)]


def readout_rows(model: nn.Module) -> tuple[list[int] | None, int]:
    """Rows of the rollout the classifier reads and the number of prefix tokens.

    ``([0], p)`` for a class-token model, ``([0, 1], p)`` for a distilled DeiT, ``(None, p)`` (the mean of the
    patch rows) for an average-pooled one; ``p`` is the network's ``num_prefix_tokens``.
    """
    net = next((m for m in model.modules() if isinstance(getattr(m, "num_prefix_tokens", None), int)), None)
    if net is None:
        raise RobustXAIError("attention rollout needs a ViT-style network with num_prefix_tokens")
    prefix = int(net.num_prefix_tokens)  # type: ignore[arg-type]
    pool = getattr(net, "global_pool", "token")
    if pool == "token" and prefix > 0:
        distilled = getattr(net, "dist_token", None) is not None and prefix > 1
        return ([0, 1] if distilled else [0]), prefix
    return None, prefix


@contextmanager
def captured_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Attention probabilities ``[B, heads, N, N]`` of every block of the forward passes run inside.

    Fused attention is switched off for the duration and restored after (module docstring).
    """
    modules = attention_modules(model)
    if not modules:
        raise RobustXAIError(f"attention rollout: {NO_ATTENTION}")
    kept: list[torch.Tensor] = []
    caller = threading.get_ident()

    def keep(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and threading.get_ident() == caller:  # not another thread's pass
            kept.append(out)

    with explicit_attention(model):
        handles = [m.get_submodule("attn_drop").register_forward_hook(keep) for m in modules]
        try:
            yield kept
        finally:
            for h in handles:
                h.remove()


def _rollout_map(
    model: nn.Module, rollout: torch.Tensor, prefix: int, image_hw: tuple[int, int]
) -> torch.Tensor:
    """The classifier's row(s) of a rollout ``[B, N, N]`` over the patch columns, as ``[B, 1, h, w]``."""
    rows, _ = readout_rows(model)
    patches = rollout[:, :, prefix:]
    read = patches[:, prefix:].mean(dim=1) if rows is None else patches[:, rows].mean(dim=1)
    h, w = grid_shape(int(read.shape[1]), *image_hw)
    return read.reshape(read.shape[0], 1, h, w)


def _check(attn: list[torch.Tensor], blocks: int) -> None:
    if len(attn) != blocks or any(a.ndim != 4 or a.shape[-1] != a.shape[-2] for a in attn):
        raise RobustXAIError(
            f"attention rollout expected one square attention map per block ({blocks}), got "
            f"{[tuple(a.shape) for a in attn]}"
        )


def fuse_heads(attn: torch.Tensor, rule: str) -> torch.Tensor:
    """Fuse the heads of ``[B, heads, N, N]`` attention into ``[B, N, N]``: mean, max or min."""
    if rule == "mean":
        return attn.mean(dim=1)
    return attn.amax(dim=1) if rule == "max" else attn.amin(dim=1)


@EXPLAINERS.register("attention_rollout")
class AttentionRollout(Explainer):
    """Attention rollout (Abnar & Zuidema 2020): R = Π (½·A_l + ½·I), rows renormalised; one forward pass.

    Args:
        head_fusion: How the heads of a block are fused: ``"mean"`` (the paper), ``"max"`` or ``"min"``.
        reduction: Channel reduction of the (single-channel) map.
    """

    name = "attention_rollout"

    def __init__(self, head_fusion: str = "mean", reduction: str = "max_abs") -> None:
        super().__init__(reduction)
        if head_fusion not in HEAD_FUSIONS:
            raise RobustXAIError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        self.head_fusion = head_fusion

    def applicable(self, model: nn.Module) -> str | None:
        """A reason when the model has no ViT-style attention blocks."""
        return None if attention_modules(model) else NO_ATTENTION

    def passes(self, batch: int, height: int, width: int) -> tuple[int, int]:
        """One forward pass of the batch, no backward."""
        return batch, 0

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Rollout maps ``[B, 1, h, w]`` on the patch grid (class-agnostic)."""
        with torch.no_grad(), captured_attention(model) as attn:
            model(images)
        _check(attn, len(attention_modules(model)))
        _, prefix = readout_rows(model)
        rollout: torch.Tensor | None = None
        for a in attn:
            fused = fuse_heads(a.detach(), self.head_fusion)
            eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
            step = 0.5 * fused + 0.5 * eye
            step = step / step.sum(dim=-1, keepdim=True)
            rollout = step if rollout is None else step @ rollout
        assert rollout is not None
        return _rollout_map(model, rollout, prefix, (int(images.shape[-2]), int(images.shape[-1])))


@EXPLAINERS.register("gradient_rollout")
class GradientRollout(Explainer):
    """Gradient-weighted attention rollout (Chefer et al. 2021): R = Π (I + mean_h (∇A ⊙ A)⁺).

    One forward and one backward pass; the gradient is of the target logit.

    Args:
        reduction: Channel reduction of the (single-channel) map.
    """

    name = "gradient_rollout"

    def applicable(self, model: nn.Module) -> str | None:
        """A reason when the model has no ViT-style attention blocks."""
        return None if attention_modules(model) else NO_ATTENTION

    def _attribute(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Gradient-weighted rollout maps ``[B, 1, h, w]`` on the patch grid."""
        images = images.detach().requires_grad_(True)
        with captured_attention(model) as attn:
            logits = model(images)
        _check(attn, len(attention_modules(model)))
        score = logits.gather(1, targets[:, None].to(logits.device)).sum()
        grads = torch.autograd.grad(score, attn)
        _, prefix = readout_rows(model)
        rollout: torch.Tensor | None = None
        for a, g in zip(attn, grads, strict=True):
            weighted = (g * a.detach()).clamp(min=0).mean(dim=1)
            if rollout is None:
                eye = torch.eye(weighted.shape[-1], dtype=weighted.dtype, device=weighted.device)
                rollout = eye.expand_as(weighted).clone()
            rollout = rollout + weighted @ rollout
        assert rollout is not None
        return _rollout_map(model, rollout, prefix, (int(images.shape[-2]), int(images.shape[-1])))
