"""Boxes of a feature map, one per occlusion window, and the two tensor moves incremental occlusion needs.

A :class:`Box` holds one rectangle per window, all of the same size. :func:`gather` cuts each window's box out
of a clean activation (stored channels-last, so a box is a set of whole pixel rows and one ``index_select``
fetches them all); :func:`paste` writes each window's changed box into it. :func:`slide` grows a box through
a convolution or pooling, :func:`union` joins the boxes of a multi-input operation, :func:`spread` sums
per-window scores over the pixels each window covers, :func:`settle` keeps unchanged rows exactly clean,
:func:`chunk_elements` sizes the passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Box:
    """One box per window, all of size ``h × w``: top-left corners ``y``, ``x`` (one per window)."""

    h: int
    w: int
    y: np.ndarray
    x: np.ndarray

    def same(self, other: Box) -> bool:
        """Whether both are the same boxes for every window."""
        return (
            (self.h, self.w) == (other.h, other.w)
            and np.array_equal(self.y, other.y)
            and np.array_equal(self.x, other.x)
        )


def chunk_elements(dtype: torch.dtype, device: torch.device) -> int:
    """Rows per pass are chosen so that the largest activation of a pass holds about this many numbers.

    On CPU, oneDNN (float32) convolutions are fastest with large passes: smallcnn's 16 × 225 windows at 64 px
    took 0.35 s with 2^21, 0.53 s with 2^17; PyTorch's own float64 convolution unfolds its input (9× a 3 × 3
    layer's input) and is fastest near 2^17: 1.0 s, against 1.5 s with 2^21.
    """
    if device.type != "cpu":
        return 1 << 23
    return 1 << 21 if dtype in (torch.float32, torch.bfloat16, torch.float16) else 1 << 17


def index(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy index array as a flat ``long`` tensor on ``device``."""
    return torch.as_tensor(values.reshape(-1), dtype=torch.long, device=device)


def tensor(value: object) -> torch.Tensor:
    """``value``, which the engine's plan makes a tensor (a traced node's output on a box, the logits).

    Raises:
        TypeError: If it is not one (an engine bug: incremental occlusion then falls back to Captum).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"the incremental engine expected a tensor, got {type(value).__name__}")
    return value


def _pixels(
    b: np.ndarray, y: np.ndarray, x: np.ndarray, h: int, w: int, height: int, width: int
) -> np.ndarray:
    """Row numbers, in a ``[rows · height · width]`` pixel list, of each row's ``h × w`` box ``[N, h, w]``."""
    return (
        (b[:, None, None] * height + y[:, None, None] + np.arange(h)[:, None]) * width
        + x[:, None, None]
        + np.arange(w)
    )


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` as a contiguous ``[B, H, W, C]``: a box is then a set of whole pixel rows."""
    return t.permute(0, 2, 3, 1).contiguous()


def gather(t: torch.Tensor, b: np.ndarray, y: np.ndarray, x: np.ndarray, h: int, w: int) -> torch.Tensor:
    """Boxes ``t[b[n], y[n]:y[n]+h, x[n]:x[n]+w]`` of a ``[B, H, W, C]`` tensor, as ``[N, C, h, w]``.

    The result is channels-last in memory, so :func:`paste` writes whole pixels and convolutions run
    channels-last (twice as fast as channels-first on CPU for these sizes).
    """
    _, height, width, c = t.shape
    if (h, w) == (height, width):
        rows = t.reshape(t.shape[0], -1).index_select(0, index(b, t.device))
    else:
        rows = t.reshape(-1, c).index_select(0, index(_pixels(b, y, x, h, w, height, width), t.device))
    return rows.view(len(b), h, w, c).permute(0, 3, 1, 2)


def rows_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row ``n``, whether ``a[n]`` equals ``b[n]`` (``[N, C, h, w]``, best channels-last)."""
    flat_a, flat_b = (t.permute(0, 2, 3, 1).reshape(len(t), -1) for t in (a, b))
    return flat_a.eq(flat_b).all(1)


def settle(
    value: torch.Tensor,
    keep: torch.Tensor,
    clean: torch.Tensor,
    b: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    check: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``keep`` of boxes ``value`` set to the clean boxes; per row, whether it now equals the clean box.

    Args:
        value: The boxes ``[N, C, h, w]`` computed for rows ``n`` (image ``b[n]``, corner ``y[n]``, ``x[n]``).
        keep: Rows whose inputs were clean: their box is set to the clean one (:func:`gather` of ``clean``).
        clean: The clean activation ``[B, H, W, C]``.
        b: Image per row.
        y: Top row of each row's box.
        x: Left column of each row's box.
        check: Whether to compare the other rows too (an operation that can remove a change): first their
            middle line, then in full those whose middle line is clean.

    Returns:
        The boxes, and per row whether they equal the clean boxes (``keep`` where ``check`` is false).
    """
    h, w = value.shape[-2:]
    keep = keep.clone()
    if keep.any():
        value = torch.where(keep[:, None, None, None], gather(clean, b, y, x, h, w), value)
    if check:
        mid = h // 2
        maybe = rows_equal(value[:, :, mid : mid + 1], gather(clean, b, y + mid, x, 1, w)) & ~keep
        if maybe.any():
            idx = maybe.nonzero()[:, 0]
            n = idx.cpu().numpy()
            keep[idx] = rows_equal(value[idx], gather(clean, b[n], y[n], x[n], h, w))
    return value, keep


def paste(dst: torch.Tensor, src: torch.Tensor, y: np.ndarray, x: np.ndarray) -> torch.Tensor:
    """Write ``src[n]`` into ``dst[n]`` (from :func:`gather`) at ``(y[n], x[n])``; returns ``dst``.

    Parts of ``src`` that fall outside ``dst`` are dropped (no output of the layer reads them).
    """
    n, c, height, width = dst.shape
    h, w = src.shape[-2:]
    if (y == y[0]).all() and (x == x[0]).all():
        y0, x0 = int(y[0]), int(x[0])
        top, left, bottom, right = max(0, -y0), max(0, -x0), min(h, height - y0), min(w, width - x0)
        if top < bottom and left < right:
            dst[:, :, y0 + top : y0 + bottom, x0 + left : x0 + right] = src[:, :, top:bottom, left:right]
        return dst
    rows = np.arange(n)
    yy, xx = y[:, None, None] + np.arange(h)[:, None], x[:, None, None] + np.arange(w)
    inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
    pixels = src.permute(0, 2, 3, 1).reshape(-1, c)
    if not inside.all():
        pixels = pixels.index_select(0, index(np.flatnonzero(inside), src.device))
    target = index(((rows[:, None, None] * height + yy) * width + xx)[inside], dst.device)
    dst.permute(0, 2, 3, 1).view(-1, c).index_copy_(0, target, pixels)
    return dst


def slide(
    start: np.ndarray, size: int, n_out: int, extent: int, stride: int, pad: int
) -> tuple[np.ndarray, int]:
    """Output box (corners, size) of a window op whose input changed on ``[start, start + size)``."""
    first = np.maximum(-((extent - 1 - start - pad) // stride), 0)  # ceil((start + pad − extent + 1) / s)
    last = np.minimum((start + size - 1 + pad) // stride, n_out - 1)
    count = int((last - first).max()) + 1
    return np.clip(first, 0, n_out - count), count


def union(boxes: list[Box], height: int, width: int) -> Box:
    """The smallest common-size boxes (inside the ``height × width`` map) that contain all of ``boxes``."""
    if all(b.same(boxes[0]) for b in boxes):
        return boxes[0]
    y0, x0 = np.minimum.reduce([b.y for b in boxes]), np.minimum.reduce([b.x for b in boxes])
    y1 = np.maximum.reduce([b.y + b.h for b in boxes])
    x1 = np.maximum.reduce([b.x + b.w for b in boxes])
    h, w = int((y1 - y0).max()), int((x1 - x0).max())
    return Box(h, w, np.clip(y0, 0, height - h), np.clip(x0, 0, width - w))


def spread(values: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Per pixel, the sum of ``values`` ``[B, 1, n_h, n_w]`` over the windows that cover it.

    Window ``(i, j)`` covers ``[i·stride, i·stride + window)`` on each axis (the last ones reach past the
    image, which the caller cuts off). Two one-dimensional passes, so nothing of size windows × window² is
    ever held; a pixel whose windows all score exactly 0 gets exactly 0.
    """
    k = torch.ones(1, 1, window, 1, dtype=values.dtype, device=values.device)
    rows = F.conv_transpose2d(values, k, stride=(stride, 1))
    return F.conv_transpose2d(rows, k.transpose(2, 3), stride=(1, stride))
