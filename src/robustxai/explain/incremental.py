"""Exact incremental occlusion.

After Nakandala et al., "Incremental and Approximate Inference for Faster Occlusion-based Deep CNN
Explanations" (SIGMOD 2019), without their approximations. Occluding a window changes only the activations
inside the window's receptive-field box, which grows by the kernel's halo at every convolution or pooling.
So the clean images are run once with every activation kept, and for a batch of windows each layer is
evaluated only on its box: the box's input (with halo) is cut from the clean activation — padded first as
the layer pads, so the operation itself runs unpadded — the changed box of the layer before is pasted into
it, and the layer is applied. All windows share one box size per layer (the largest any window reaches,
moved inside the map at the borders), so any rows batch together. Once a box covers most of its map
(``FULL_AT``), or at an operation that is not local (global pooling, flatten, linear, ...), the box is
pasted into the clean activation and the rest of the network runs on whole tensors.

The logits, and so the attributions, are those of the ordinary computation up to floating-point rounding.
On ``smallcnn`` at 64 px with 8-px windows a window costs about a tenth of a forward pass. Unsupported
models make :func:`occlusion` return ``None`` (the caller falls back to Captum).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from robustxai.explain.fxgraph import WindowOp, call, is_inplace, is_pointwise, trace, traceable, window_op

logger = logging.getLogger(__name__)

FULL_AT = 0.6  # a box covering this fraction of its map or more is computed as the whole map
CHUNK_ELEMENTS = 1 << 21  # rows per pass: the largest activation of a pass holds about this many numbers


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


def _index(values: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(values.reshape(-1), dtype=torch.long, device=device)


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
        rows = t.reshape(t.shape[0], -1).index_select(0, _index(b, t.device))
    else:
        rows = t.reshape(-1, c).index_select(0, _index(_pixels(b, y, x, h, w, height, width), t.device))
    return rows.view(len(b), h, w, c).permute(0, 3, 1, 2)


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
        pixels = pixels.index_select(0, _index(np.flatnonzero(inside), src.device))
    target = _index(((rows[:, None, None] * height + yy) * width + xx)[inside], dst.device)
    dst.permute(0, 2, 3, 1).view(-1, c).index_copy_(0, target, pixels)
    return dst


def _slide(
    start: np.ndarray, size: int, n_out: int, extent: int, stride: int, pad: int
) -> tuple[np.ndarray, int]:
    """Output box (corners, size) of a window op whose input changed on ``[start, start + size)``."""
    first = np.maximum(-((extent - 1 - start - pad) // stride), 0)  # ceil((start + pad − extent + 1) / s)
    last = np.minimum((start + size - 1 + pad) // stride, n_out - 1)
    count = int((last - first).max()) + 1
    return np.clip(first, 0, n_out - count), count


def _union(boxes: list[Box], height: int, width: int) -> Box:
    if all(b.same(boxes[0]) for b in boxes):
        return boxes[0]
    y0, x0 = np.minimum.reduce([b.y for b in boxes]), np.minimum.reduce([b.x for b in boxes])
    y1 = np.maximum.reduce([b.y + b.h for b in boxes])
    x1 = np.maximum.reduce([b.x + b.w for b in boxes])
    h, w = int((y1 - y0).max()), int((x1 - x0).max())
    return Box(h, w, np.clip(y0, 0, height - h), np.clip(x0, 0, width - w))


def _node_args(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _is_map(value: Any, like: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[0] == like.shape[0]


def _spatially_constant(value: Any) -> bool:
    """A constant operand that broadcasts over rows and pixels (a scalar, a per-channel vector)."""
    if isinstance(value, list | tuple):
        return all(_spatially_constant(v) for v in value)
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return True
    s = value.shape
    return value.ndim <= 4 and s[-1] == 1 and (value.ndim < 2 or s[-2] == 1) and (value.ndim < 4 or s[0] == 1)


class Engine:
    """The traced model, its clean activations on ``images`` and the box plan of a window geometry."""

    def __init__(self, model: nn.Module, images: torch.Tensor) -> None:
        self.root = traceable(model, images.dtype)
        self.graph = trace(self.root)
        self.modules = dict(self.root.named_modules())
        self.nodes = list(self.graph.nodes)
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ValueError(f"the traced forward takes {len(inputs)} inputs, not one")
        self.input = inputs[0]
        self.var: set[fx.Node] = set()
        self.clean: dict[fx.Node, Any] = {}
        for node in self.nodes:
            if node is self.input:
                self.var.add(node)
                self.clean[node] = images
            elif node.op != "output":
                if any(a in self.var for a in _node_args(node)):
                    self.var.add(node)
                self.clean[node] = self._run(node, self.clean)
        output = next(n for n in self.nodes if n.op == "output").args[0]
        if not isinstance(output, fx.Node):
            raise ValueError("the model returns more than one value")
        self.output = output
        self.last_use = {a: i for i, n in enumerate(self.nodes) for a in _node_args(n)}
        self.window: dict[fx.Node, WindowOp | None] = {
            n: window_op(self.modules[str(n.target)]) if n.op == "call_module" else None for n in self.var
        }
        self._nhwc: dict[tuple[fx.Node, tuple[int, int], float], torch.Tensor] = {}

    def _run(self, node: fx.Node, values: dict[fx.Node, Any]) -> Any:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
        if is_inplace(node, self.modules):
            clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            args, kwargs = torch.utils._pytree.tree_map(clone, (args, kwargs))
        return call(node, args, kwargs, self.root, self.modules)

    def plan(self, box: Box) -> dict[fx.Node, Box | None]:
        """Per changing node, the box evaluated for each window, or ``None``: whole tensors.

        The input's box is ``box``; it grows through window operations and unites at multi-input ones.
        """
        plan: dict[fx.Node, Box | None] = {self.input: box}
        for node in self.nodes:
            if node not in self.var or node is self.input or node.op == "output":
                continue
            plan[node] = None
            out, args = self.clean[node], [a for a in _node_args(node) if a in self.var]
            if not _is_map(out, self.clean[self.input]) or any(plan[a] is None for a in args):
                continue
            height, width = out.shape[-2:]
            op = self.window[node]
            if op is not None and len(args) == 1 and not node.kwargs:
                src = plan[args[0]]
                assert src is not None
                y, h = _slide(src.y, src.h, height, op.extent[0], op.stride[0], op.pad[0])
                x, w = _slide(src.x, src.w, width, op.extent[1], op.stride[1], op.pad[1])
                new: Box | None = Box(h, w, y, x)
            elif is_pointwise(node, self.modules) and all(
                _is_map(self.clean[a], out) and self.clean[a].shape[-2:] == out.shape[-2:] for a in args
            ):
                ok = _spatially_constant([self.clean[a] for a in _node_args(node) if a not in self.var])
                new = (
                    _union([b for b in (plan[a] for a in args) if b is not None], height, width)
                    if ok
                    else None
                )
            else:
                new = None
            if new is not None and new.h * new.w < FULL_AT * height * width:
                plan[node] = new
        return plan

    def clean_nhwc(self, node: fx.Node, pad: tuple[int, int] = (0, 0), fill: float = 0.0) -> torch.Tensor:
        """The clean activation of ``node``, padded by ``pad`` with ``fill``, as ``[B, H, W, C]``."""
        key = (node, pad, fill)
        if key not in self._nhwc:
            (ph, pw), t = pad, self.clean[node]
            self._nhwc[key] = nhwc(F.pad(t, (pw, pw, ph, ph), value=fill) if ph or pw else t)
        return self._nhwc[key]

    def run(
        self, plan: dict[fx.Node, Box | None], windows: np.ndarray, b: np.ndarray, first: torch.Tensor
    ) -> torch.Tensor:
        """The model's output for rows ``n`` = image ``b[n]`` with window ``windows[n]`` occluded.

        ``first`` ``[N, C, h, w]`` is the occluded input over the input's box.
        """
        state: dict[fx.Node, Any] = {self.input: first}
        whole: dict[fx.Node, torch.Tensor] = {}

        def full(a: fx.Node) -> Any:
            if a not in self.var:
                return self.clean[a]
            box = plan[a]
            if box is None:
                return state[a]
            if a not in whole:
                h, w = self.clean[a].shape[-2:]
                whole[a] = paste(
                    gather(self.clean_nhwc(a), b, box.y, box.x, h, w),
                    state[a],
                    box.y[windows],
                    box.x[windows],
                )
            return whole[a]

        def crop(a: fx.Node, to: Box) -> Any:
            if a not in self.var:
                return self.clean[a]
            box = plan[a]
            assert box is not None
            if box.same(to):
                return state[a]
            base = gather(self.clean_nhwc(a), b, to.y[windows], to.x[windows], to.h, to.w)
            return paste(base, state[a], (box.y - to.y)[windows], (box.x - to.x)[windows])

        for i, node in enumerate(self.nodes):
            if node.op == "output":
                return full(self.output)
            if node not in self.var or node is self.input:
                continue
            box = plan[node]
            if box is None:
                state[node] = self._run(node, {a: full(a) for a in _node_args(node)})
            elif (op := self.window[node]) is not None:
                (src,) = _node_args(node)
                in_box = plan[src]
                assert in_box is not None
                ys, xs = box.y[windows] * op.stride[0], box.x[windows] * op.stride[1]
                hh, ww = (box.h - 1) * op.stride[0] + op.extent[0], (box.w - 1) * op.stride[1] + op.extent[1]
                region = gather(self.clean_nhwc(src, op.pad, op.fill), b, ys, xs, hh, ww)
                region = paste(
                    region, state[src], in_box.y[windows] + op.pad[0] - ys, in_box.x[windows] + op.pad[1] - xs
                )
                state[node] = op.fn(region)
            else:
                state[node] = self._run(node, {a: crop(a, box) for a in _node_args(node)})
            for a in _node_args(node):
                if self.last_use.get(a) == i and a is not self.output:
                    state.pop(a, None)
                    whole.pop(a, None)
        raise ValueError("the traced graph has no output")

    def row_size(self, plan: dict[fx.Node, Box | None]) -> int:
        """Numbers held by the largest activation of one row (one image with one window occluded)."""
        sizes = [1]
        for node, box in plan.items():
            value = self.clean[node]
            if isinstance(value, torch.Tensor):
                rows = max(1, value.shape[0]) if value.ndim else 1
                sizes.append(value.numel() // rows if box is None else value.shape[1] * box.h * box.w)
        return max(sizes)


def occlusion(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    window: int,
    stride: int,
    reference: float | torch.Tensor,
    rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Captum's ``Occlusion`` computed incrementally; ``None`` where the model is not supported.

    The window is a square over all channels, moved by ``stride`` and cut at the border, as in Captum.

    Args:
        model: The model, in eval mode.
        images: ``[B, C, H, W]``.
        targets: Class index per image ``[B]``; ``None``: each image's arg-max logit.
        window: Side of the window; ``stride``: step between windows.
        reference: What a window is set to: a number, or one value per image ``[B, 1, 1, 1]``.
        rows: Rows (image × window) per pass; ``None``: sized so one pass stays in cache.

    Returns:
        Attributions ``[B, C, H, W]`` in float32 (Captum divides its float sums by float32 window counts),
        and the targets.
    """
    if any(m.training for m in model.modules()):
        logger.debug("incremental occlusion needs a model in eval mode; using Captum's")
        return None
    try:
        with torch.no_grad():
            return _occlusion(model, images, targets, window, stride, reference, rows)
    except Exception as exc:  # noqa: BLE001 - anything unsupported: the caller's full computation
        logger.debug("incremental occlusion unavailable (%s: %s); using Captum's", type(exc).__name__, exc)
        return None


def _occlusion(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    window: int,
    stride: int,
    reference: float | torch.Tensor,
    rows: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    b_all, c, height, width = images.shape
    engine = Engine(model, images)
    initial = engine.clean[engine.output]  # the same operations as model(images)
    if not isinstance(initial, torch.Tensor) or initial.ndim != 2 or initial.shape[0] != b_all:
        raise ValueError("the model's output is not [B, K]")
    if not torch.allclose(model(images[:1]), initial[:1], rtol=1e-4, atol=1e-5):  # a trace gone wrong
        raise ValueError("the traced model does not reproduce the model's output")
    targets = initial.argmax(dim=1) if targets is None else targets
    n_h, n_w = -(-(height - window) // stride) + 1, -(-(width - window) // stride) + 1
    wy, wx = np.repeat(np.arange(n_h), n_w) * stride, np.tile(np.arange(n_w), n_h) * stride
    box = Box(window, window, np.minimum(wy, height - window), np.minimum(wx, width - window))
    plan = engine.plan(box)
    n_rows, n_windows = b_all * n_h * n_w, n_h * n_w
    chunk = rows if rows is not None else max(1, CHUNK_ELEMENTS // engine.row_size(plan))
    picked = initial.gather(1, targets[:, None])[:, 0]
    modified = torch.empty(n_rows, dtype=initial.dtype, device=images.device)
    ar = np.arange(window)
    for start in range(0, n_rows, chunk):
        r = np.arange(start, min(start + chunk, n_rows))
        win, bi = r // b_all, r % b_all
        b = _index(bi, images.device)
        first = gather(engine.clean_nhwc(engine.input), bi, box.y[win], box.x[win], window, window)
        my = ar >= (wy[win] - box.y[win])[:, None]  # the window's rows inside its (possibly shifted) box
        mx = ar >= (wx[win] - box.x[win])[:, None]
        mask = torch.as_tensor(my[:, :, None] & mx[:, None, :], device=images.device)[:, None]
        ref = reference[b] if isinstance(reference, torch.Tensor) else reference
        first = torch.where(mask, ref, first)
        out = engine.run(plan, win, bi, first)
        modified[start : start + len(r)] = out.gather(1, targets[b][:, None])[:, 0]
    diff = picked[:, None] - modified.view(n_windows, b_all).T  # [B, windows], row-major over positions
    size = ((n_h - 1) * stride + window, (n_w - 1) * stride + window)
    cols = window * window
    total = F.fold(diff[:, None, :].expand(b_all, cols, n_windows), size, window, stride=stride)
    ones = torch.ones(1, cols, n_windows, device=images.device)
    counts = F.fold(ones, size, window, stride=stride)
    attr = total[:, :, :height, :width].float() / counts[:, :, :height, :width]
    return attr.expand(b_all, c, height, width).contiguous(), targets
