"""Grad-CAM layers of transformers: find a token grid by probing, and reshape tokens to a feature map.

A CNN's Grad-CAM layer outputs a channels-first map ``[B, C, h, w]`` (found by
:func:`robustxai.models._heads.find_feature_layer`). A vision transformer's blocks output tokens instead:

- ``"tokens"``: ``[B, N, C]`` with ``N = prefix + h·w`` — ViT and DeiT (class token, DeiT's distillation
  token, register tokens first), XCiT (its class-attention blocks put one class token first);
- ``"nhwc"``: ``[B, h, w, C]`` — Swin's stages in timm.

:func:`to_grid` drops the prefix tokens and lays the rest out as ``[B, C, h, w]`` in row-major patch order,
so Grad-CAM's formula applies unchanged. :func:`find_token_layer` finds the layer the way the CNN probe
does, by one small forward (and here backward) pass of a random image: among the modules whose output is a
token grid of the model's final width, the last one *whose grid tokens reach the logits*. That last
condition matters: in a class-token model the patch tokens after the last block's attention never reach
the classifier (its gradient there is exactly zero, so Grad-CAM would be blank); the last layer whose patch
tokens still count is the normalised input of the last block's attention (``blocks[-1].norm1`` in ViT and
DeiT, the last class-attention block's ``norm1`` in XCiT) — the layer commonly used for ViT Grad-CAM. In an
average-pooled model (Swin) it is the final normalised feature map.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from robustxai._errors import NotApplicableError, RobustXAIError

log = logging.getLogger(__name__)

#: Layouts of a Grad-CAM layer's output: channels-first map, channels-last map, token sequence.
CAM_LAYOUTS = ("nchw", "nhwc", "tokens")
#: Most leading non-patch tokens searched for (class, distillation and register tokens).
MAX_PREFIX = 8
# Never the Grad-CAM layer: pass-through modules, and projections (an attention block's q/k/v, an MLP's
# layers), whose outputs are not the token stream between blocks.
_NOT_A_LAYER = (nn.Identity, nn.Dropout, nn.Linear)


_FUSED_LOCK = threading.RLock()


@contextmanager
def explicit_attention(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Switch off timm's fused attention in ``model`` for the duration; yield the switched modules.

    timm's attention modules carry a ``fused_attn`` flag read at every forward pass: on, they call
    ``scaled_dot_product_attention``, which never materialises the attention probabilities (attention
    rollout needs them) and has no second derivative on CPU (a map's gradient, as the manipulation attack
    takes, needs one). Off, they compute ``softmax(q·kᵀ) → attn_drop → @ v``: the same numbers. The flags are
    restored in a ``finally``, under a process-wide lock, so concurrent calls cannot restore each other's.
    """
    with _FUSED_LOCK:
        switched = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
        try:
            for m in switched:
                setattr(m, "fused_attn", False)  # noqa: B010  (an instance flag timm reads at forward time)
            yield switched
        finally:
            for m in switched:
                setattr(m, "fused_attn", True)  # noqa: B010


def native_hw(net: nn.Module, default: int = 64) -> tuple[int, int]:
    """``(H, W)`` a network with a fixed-size patch embedding needs, else ``(default, default)``."""
    size = getattr(getattr(net, "patch_embed", None), "img_size", None)
    if isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    return default, default


def _prefix_of(n_tokens: int) -> int | None:
    """The fewest leading tokens whose removal leaves a square grid of at least 2 × 2, or ``None``.

    Probe images are square, so their patch grids are.
    """
    for prefix in range(min(MAX_PREFIX, n_tokens) + 1):
        side = math.isqrt(n_tokens - prefix)
        if side >= 2 and side * side == n_tokens - prefix:
            return prefix
    return None


def num_prefix_tokens(net: nn.Module) -> int | None:
    """The network's own count of leading non-patch tokens (timm's ``num_prefix_tokens``), if it has one."""
    known = getattr(net, "num_prefix_tokens", None)
    return known if isinstance(known, int) and not isinstance(known, bool) and known >= 0 else None


def _grid_prefix(n: int, hw: tuple[int, int], known: int | None, min_tokens: int) -> int | None:
    """Leading tokens to drop from ``n`` so that ≥ ``min_tokens`` lie on a grid of ``hw``'s aspect ratio.

    ``known`` (the network's own count) where it does, else the fewest that do; ``None`` when none does.
    """
    for prefix in ([known] if known is not None else []) + list(range(MAX_PREFIX + 1)):
        if 0 <= prefix <= n - min_tokens:
            try:
                grid_shape(n - prefix, *hw)
            except RobustXAIError:
                continue
            return prefix
    return None


def channels_last_norm(module: nn.Module, out: torch.Tensor) -> bool:
    """Whether ``module`` is a LayerNorm over the last dimension of a 4-d output: a channels-last map.

    ``type(...) is nn.LayerNorm`` on purpose: timm's ``LayerNorm2d`` (ConvNeXt) subclasses it and normalises
    the channels of a channels-first map. This tells Swin's final norm from a CNN map even where its grid
    side equals its channel count, which the shape alone cannot.
    """
    shape = getattr(module, "normalized_shape", None)
    return type(module) is nn.LayerNorm and out.ndim == 4 and tuple(shape or ()) == (int(out.shape[-1]),)


def _grid_form(
    out: torch.Tensor,
    prefix_tokens: int | None = None,
    last_norm: bool = False,
    hw: tuple[int, int] | None = None,
) -> tuple[str, int, int] | None:
    """``(layout, prefix, channels)`` if a probe output (batch 1) is a token grid, else None.

    ``prefix_tokens``: the network's own count of leading non-patch tokens (timm's ``num_prefix_tokens``),
    used where it leaves a square grid; else the fewest that do (a count alone can mistake a class token
    and four registers on a 2 × 2 grid for a 3 × 3 grid). ``last_norm``: the output is that of a LayerNorm
    over its last dimension (:func:`channels_last_norm`). ``hw``: a non-square probe image's size, whose
    grids have its aspect ratio (:func:`_rect_grid_form`).
    """
    if out.shape[0] != 1:  # window-partitioned tensors (Swin's attention) carry windows in the batch
        return None
    if hw is not None and hw[0] != hw[1]:  # a probe image fixed to a non-square size
        return _rect_grid_form(out, prefix_tokens, last_norm, hw)
    if out.ndim == 3:
        n = int(out.shape[1])
        prefix = prefix_tokens if prefix_tokens is not None and _square(n - prefix_tokens) else _prefix_of(n)
        return None if prefix is None else ("tokens", prefix, int(out.shape[2]))
    if out.ndim == 4:
        _, a, b, c = (int(s) for s in out.shape)
        # channels-last square grid; a channels-first square map has its two last sides equal instead
        if a == b >= 2 and (c != b or last_norm):
            return ("nhwc", 0, c)
    return None


def _rect_grid_form(
    out: torch.Tensor, prefix_tokens: int | None, last_norm: bool, hw: tuple[int, int]
) -> tuple[str, int, int] | None:
    """:func:`_grid_form` for a non-square probe image of ``hw`` pixels: grids of its aspect ratio."""
    if out.ndim == 3:
        prefix = _grid_prefix(int(out.shape[1]), hw, prefix_tokens, min_tokens=4)
        return None if prefix is None else ("tokens", prefix, int(out.shape[2]))
    if out.ndim == 4:
        _, a, b, c = (int(s) for s in out.shape)
        if a * b >= 4 and _fits(a, b, hw) and (last_norm or not _fits(b, c, hw)):
            return ("nhwc", 0, c)
    return None


def _square(n: int) -> bool:
    side = math.isqrt(max(n, 0))
    return side >= 2 and side * side == n


def find_token_layer(
    net: nn.Module, in_channels: int = 3, size: int | tuple[int, int] = 64
) -> tuple[str, str, int] | None:
    """The Grad-CAM layer of a token model: ``(dotted path, layout, prefix tokens)``, or ``None``.

    One forward and backward pass of a random ``[1, in_channels, H, W]`` image (``size``: a side, or the
    network's fixed ``(H, W)``) records every module
    output that is a token grid (:func:`_grid_form`), projections (``nn.Linear``) and pass-through modules
    aside. The answer is the last such output (in the order
    modules finish) whose channel count is that of the last grid in the pass and whose grid tokens have a
    non-zero gradient of the summed logits (see the module docstring for why). ``None`` when no output
    qualifies or the network cannot run at this size.
    """
    hw = size if isinstance(size, tuple) else (size, size)
    names = {id(m): n for n, m in net.named_modules() if n}
    seen: dict[str, tuple[torch.Tensor, tuple[str, int, int]]] = {}
    prefix_tokens = num_prefix_tokens(net)

    def hook(module: nn.Module, _inp: object, out: object) -> None:
        if isinstance(module, _NOT_A_LAYER) or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        form = _grid_form(out, prefix_tokens, channels_last_norm(module, out), hw)
        if form is not None:
            name = names[id(module)]
            seen.pop(name, None)  # a module called twice counts where it last finished
            seen[name] = (out, form)

    handles = [m.register_forward_hook(hook) for n, m in net.named_modules() if n]
    was_training = net.training
    try:
        net.eval()
        with torch.enable_grad():
            logits = net(torch.rand(1, in_channels, *hw, requires_grad=True))
            if not isinstance(logits, torch.Tensor) or not seen:
                return None
            outs = [out for out, _ in seen.values()]
            grads = torch.autograd.grad(logits.sum(), outs, allow_unused=True)
    except Exception as err:  # an architecture-specific refusal (input size, in-place updates of outputs)
        log.info("token-layer probe failed at %s px: %s", hw, err)
        return None
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    width = list(seen.values())[-1][1][2]
    found = None
    for (name, (_, (layout, prefix, channels))), grad in zip(seen.items(), grads, strict=True):
        if channels != width or grad is None:
            continue
        grid = grad[:, prefix:] if layout == "tokens" else grad
        if bool(grid.abs().amax() > 0):
            found = (name, layout, prefix)
    return found


def spatial_layer(
    net: nn.Module, cam: str | None, size: int | tuple[int, int]
) -> tuple[str | None, str, int]:
    """Grad-CAM layer, layout and prefix: a CNN's ``cam`` map as found, else the token grid (or none)."""
    if cam is not None:
        return cam, "nchw", 0
    return find_token_layer(net, 3, size) or (None, "nchw", 0)


def grid_shape(n_tokens: int, height: int, width: int) -> tuple[int, int]:
    """The patch grid ``(h, w)`` of ``n_tokens`` patch tokens on an image of ``height × width`` pixels."""
    if n_tokens < 1:
        raise NotApplicableError("the Grad-CAM layer has no patch tokens left after the prefix tokens")
    h = max(1, round(math.sqrt(n_tokens * height / width)))
    w = n_tokens // h
    if h * w != n_tokens:
        raise NotApplicableError(
            f"cannot lay {n_tokens} patch tokens out on the grid of a {height}×{width} image; pass the "
            "Grad-CAM layer explicitly or check the model's prefix tokens"
        )
    return h, w


def to_grid(act: torch.Tensor, layout: str, prefix: int, image_hw: tuple[int, int]) -> torch.Tensor:
    """A Grad-CAM layer's output (or its gradient) as a channels-first map ``[B, C, h, w]``.

    Args:
        act: The layer's output: ``[B, C, h, w]`` (``"nchw"``), ``[B, h, w, C]`` (``"nhwc"``) or ``[B, N, C]``
            (``"tokens"``).
        layout: One of :data:`CAM_LAYOUTS`.
        prefix: Leading non-patch tokens (``"tokens"`` only), dropped.
        image_hw: The explained images' ``(H, W)``, which fixes the grid's aspect ratio.
    """
    if layout == "nchw" and act.ndim == 4:
        return act
    if layout == "nhwc" and act.ndim == 4:
        return act.permute(0, 3, 1, 2)
    if layout == "tokens" and act.ndim == 3:
        patches = act[:, prefix:]
        h, w = grid_shape(int(patches.shape[1]), *image_hw)
        return patches.transpose(1, 2).reshape(act.shape[0], act.shape[2], h, w)
    raise NotApplicableError(
        f"the Grad-CAM layer's output {tuple(act.shape)} does not have the {layout!r} layout"
    )


def infer_layout(
    act: torch.Tensor, image_hw: tuple[int, int], hint: str | None = None, prefix_tokens: int | None = None
) -> tuple[str, int]:
    """Layout and prefix of a layer named by the user (no probe).

    A 4-d output is read the way whose two spatial sides fit the image's aspect ratio within one cell
    (channels-first ``[B, C, h, w]`` or channels-last ``[B, h, w, C]``, Swin's); where both readings fit (a
    square grid whose side equals its channels), ``hint`` — the model's own Grad-CAM layout — decides, else
    channels-first. A 3-d output is tokens: ``prefix_tokens`` leading tokens (the network's own count) where
    they leave a grid of the image's aspect ratio, else the fewest that do.
    """
    if act.ndim == 4:
        first = _fits(int(act.shape[2]), int(act.shape[3]), image_hw)
        last = _fits(int(act.shape[1]), int(act.shape[2]), image_hw)
        if last and (not first or hint == "nhwc"):
            return "nhwc", 0
        return "nchw", 0
    if act.ndim == 3 and (prefix := _grid_prefix(int(act.shape[1]), image_hw, prefix_tokens, 1)) is not None:
        return "tokens", prefix
    raise NotApplicableError(
        f"the Grad-CAM layer's output {tuple(act.shape)} is neither a feature map nor tokens"
    )


def _fits(h: int, w: int, image_hw: tuple[int, int]) -> bool:
    """Whether an ``h × w`` grid can cover an image of ``image_hw`` pixels (aspect ratio within one cell)."""
    height, width = image_hw
    return 1 <= h <= height and 1 <= w <= width and abs(h * width - w * height) <= max(height, width)
