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
Where Captum's score is exactly 0 (a window equal to the reference, or a change that a ReLU or a max removes
before the whole-tensor part) it is exactly 0 here too: rows whose inputs to a box operation equal the clean
ones take the clean box, not its recomputation (which can differ in the last bits). On ``smallcnn`` at 64 px
with 8-px windows a window costs about a tenth of a forward pass. Unsupported models make :func:`occlusion`
return ``None`` (the caller falls back to Captum).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import Argument

from robustxai.explain._boxes import (
    Box,
    chunk_elements,
    gather,
    index,
    nhwc,
    paste,
    settle,
    slide,
    spread,
    tensor,
    union,
)
from robustxai.explain._fxgraph import (
    GATE,
    UnsupportedError,
    WindowOp,
    cached_trace,
    call,
    can_saturate,
    decline,
    first_decline,
    global_hooks,
    has_hooks,
    is_inplace,
    is_map,
    is_pointwise,
    needs_contiguous,
    node_args,
    spatially_constant,
    window_op,
)
from robustxai.models._wrapper import full_precision

logger = logging.getLogger(__name__)

FULL_AT = 0.6  # a box covering this fraction of its map or more is computed as the whole map
CLEAN_BYTES = 1 << 30  # images are explained in groups whose kept clean activations take about this much


class Engine:
    """The traced model, its clean activations on ``images`` and the box plan of a window geometry."""

    def __init__(self, model: nn.Module, images: torch.Tensor, root: nn.Module, graph: fx.Graph) -> None:
        self.root, self.graph = root, graph
        self.modules = dict(self.root.named_modules())
        self.nodes = list(self.graph.nodes)
        called = {id(self.modules[str(n.target)]) for n in self.nodes if n.op == "call_module"}
        hooked = [
            name or "the model" for name, m in model.named_modules() if has_hooks(m) and id(m) not in called
        ]
        if hooked:  # hooks of a module whose forward was traced through would not run
            raise UnsupportedError(f"forward hooks on {hooked[0]}, whose forward is traced")
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise decline(model, images.dtype, f"the traced forward takes {len(inputs)} inputs, not one")
        self.input = inputs[0]
        self.var: set[fx.Node] = set()
        self.images = images
        self.clean: dict[fx.Node, Argument] = {}
        for node in self.nodes:
            if node is self.input:
                self.var.add(node)
                self.clean[node] = images
            elif node.op != "output":
                if any(a in self.var for a in node_args(node)):
                    self.var.add(node)
                self.clean[node] = self._run(node, self.clean)
        output = next(n for n in self.nodes if n.op == "output").args[0]
        if not isinstance(output, fx.Node):
            raise decline(model, images.dtype, "the model returns more than one value")
        self.output = output
        self.last_use = {a: i for i, n in enumerate(self.nodes) for a in node_args(n)}
        self.window: dict[fx.Node, WindowOp | None] = {
            n: window_op(self.modules[str(n.target)]) if n.op == "call_module" else None for n in self.var
        }
        self._nhwc: dict[tuple[fx.Node, tuple[int, int], float], torch.Tensor] = {}

    def _run(self, node: fx.Node, values: dict[fx.Node, Argument]) -> Argument:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
        if is_inplace(node, self.modules):
            clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            args, kwargs = torch.utils._pytree.tree_map(clone, (args, kwargs))
        elif needs_contiguous(node, self.modules):
            dense = lambda v: v.contiguous() if isinstance(v, torch.Tensor) else v  # noqa: E731
            args, kwargs = torch.utils._pytree.tree_map(dense, (args, kwargs))
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
            out, args = self.clean[node], [a for a in node_args(node) if a in self.var]
            if not is_map(out, self.images) or any(plan[a] is None for a in args):
                continue
            height, width = out.shape[-2:]
            op = self.window[node]
            if op is not None and len(args) == 1 and not node.kwargs:
                src = plan[args[0]]
                assert src is not None
                y, h = slide(src.y, src.h, height, op.extent[0], op.stride[0], op.pad[0])
                x, w = slide(src.x, src.w, width, op.extent[1], op.stride[1], op.pad[1])
                new: Box | None = Box(h, w, y, x)
            elif is_pointwise(node, self.modules) and all(
                is_map(v := self.clean[a], out) and v.shape[-2:] == out.shape[-2:] for a in args
            ):
                ok = spatially_constant([self.clean[a] for a in node_args(node) if a not in self.var])
                new = (
                    union([b for b in (plan[a] for a in args) if b is not None], height, width)
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
            (ph, pw), t = pad, tensor(self.clean[node])
            self._nhwc[key] = nhwc(F.pad(t, (pw, pw, ph, ph), value=fill) if ph or pw else t)
        return self._nhwc[key]

    def run(
        self, plan: dict[fx.Node, Box | None], windows: np.ndarray, b: np.ndarray, first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output for rows ``n`` = image ``b[n]`` with window ``windows[n]`` occluded.

        ``first`` ``[N, C, h, w]`` is the occluded input over the input's box. Also returns, per row, whether
        any box entering the whole-tensor part of the network differs from the clean activation: where none
        does, the row's output is the clean output exactly (the caller scores it 0, as Captum does).
        """
        state: dict[fx.Node, Argument] = {}  # outputs of the nodes evaluated on whole tensors
        boxed: dict[fx.Node, torch.Tensor] = {self.input: first}  # outputs of the nodes evaluated on a box
        whole: dict[fx.Node, torch.Tensor] = {}
        moved = torch.zeros(len(b), dtype=torch.bool, device=first.device)
        same = {self.input: moved.clone()}  # per box node: rows equal to the clean activation

        def full(a: fx.Node) -> Argument:
            if a not in self.var:
                return self.clean[a]
            box = plan[a]
            if box is None:
                return state[a]
            if a not in whole:
                h, w = tensor(self.clean[a]).shape[-2:]
                moved.logical_or_(~same[a])
                whole[a] = paste(
                    gather(self.clean_nhwc(a), b, box.y, box.x, h, w),
                    boxed[a],
                    box.y[windows],
                    box.x[windows],
                )
            return whole[a]

        def crop(a: fx.Node, to: Box) -> Argument:
            if a not in self.var:
                return self.clean[a]
            box = plan[a]
            assert box is not None
            if box.same(to):
                return boxed[a]
            base = gather(self.clean_nhwc(a), b, to.y[windows], to.x[windows], to.h, to.w)
            return paste(base, boxed[a], (box.y - to.y)[windows], (box.x - to.x)[windows])

        for i, node in enumerate(self.nodes):
            if node.op == "output":
                return tensor(full(self.output)), moved
            if node not in self.var or node is self.input:
                continue
            box = plan[node]
            if box is None:
                state[node] = self._run(node, {a: full(a) for a in node_args(node)})
            elif (op := self.window[node]) is not None:
                (src,) = node_args(node)
                in_box = plan[src]
                assert in_box is not None
                ys, xs = box.y[windows] * op.stride[0], box.x[windows] * op.stride[1]
                hh, ww = (box.h - 1) * op.stride[0] + op.extent[0], (box.w - 1) * op.stride[1] + op.extent[1]
                region = gather(self.clean_nhwc(src, op.pad, op.fill), b, ys, xs, hh, ww)
                region = paste(
                    region, boxed[src], in_box.y[windows] + op.pad[0] - ys, in_box.x[windows] + op.pad[1] - xs
                )
                boxed[node] = op.fn(region)
            else:
                boxed[node] = tensor(self._run(node, {a: crop(a, box) for a in node_args(node)}))
            if box is not None:
                # a box from clean inputs can differ from the clean map in its last bits: use the clean one,
                # so that a change a ReLU or a max removes stays exactly removed, as in Captum's passes
                keep = torch.stack([same[a] for a in node_args(node) if a in self.var]).all(0)
                if (check := can_saturate(node, self.modules)) or bool(keep.any()):
                    t, ys, xs = self.clean_nhwc(node), box.y[windows], box.x[windows]
                    boxed[node], keep = settle(boxed[node], keep, t, b, ys, xs, check)
                same[node] = keep
            for a in node_args(node):
                if self.last_use.get(a) == i and a is not self.output:
                    state.pop(a, None)
                    boxed.pop(a, None)
                    whole.pop(a, None)
        raise ValueError("the traced graph has no output")

    def bytes_per_image(self) -> int:
        """Memory one image's clean activations take here, counting the channels-last copies."""
        tensors = [v for v in self.clean.values() if isinstance(v, torch.Tensor)]
        held = sum(v.nbytes for v in tensors) + sum(v.nbytes for v in self._nhwc.values())
        return max(1, held // max(1, len(self.images)))

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

    The window is a square over all channels, moved by ``stride`` and cut at the border, as in Captum. A
    window that changes no input value (it already equals the reference) scores exactly 0, as in Captum.
    The model is traced once per module tree and dtype (:func:`~robustxai.explain._fxgraph.cached_trace`);
    the first call on a model must not overlap models running in other threads (``torch.fx`` patches
    ``nn.Module.__call__`` process-wide while tracing). Declines are logged at INFO once per model and
    structural ones remembered; an unexpected error in the engine is logged at WARNING with its traceback.

    Args:
        model: The model, in eval mode.
        images: ``[B, C, H, W]``.
        targets: Class index per image ``[B]``; ``None``: each image's arg-max logit.
        window: Side of the window.
        stride: Step between windows.
        reference: What a window is set to: a number, or one value per image ``[B, 1, 1, 1]``.
        rows: Rows (image × window) per pass; ``None``: sized so one pass stays in cache.

    Returns:
        Attributions ``[B, C, H, W]`` in float32 (Captum divides its float sums by float32 window counts),
        and the targets; ``None`` where the model is not supported.
    """
    batch_statistics = (
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None for m in model.modules()
    )
    if any(m.training for m in model.modules()) or any(batch_statistics):
        # an image's logits would depend on the rows passed with it: only Captum's own passes give its numbers
        reason = "the model is in training mode or has batch norm without running statistics"
        if first_decline(model, reason):
            logger.info("occlusion: %s; using Captum's full passes", reason)
        return None
    try:
        if global_hooks():
            raise UnsupportedError("global forward hooks are registered")
        traced = cached_trace(model, images.dtype)
        with torch.no_grad(), GATE.run():
            return _occlusion(model, traced, images, targets, window, stride, reference, rows)
    except UnsupportedError as exc:
        if first_decline(model, str(exc)):
            logger.info("occlusion: %s; using Captum's full passes", exc)
        return None
    except Exception:  # an engine bug: loud, but the explanation still comes (from Captum)
        logger.warning("occlusion: the incremental engine failed; using Captum's full passes", exc_info=True)
        return None


def _occlusion(
    model: nn.Module,
    traced: tuple[nn.Module, fx.Graph],
    images: torch.Tensor,
    targets: torch.Tensor | None,
    window: int,
    stride: int,
    reference: float | torch.Tensor,
    rows: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    b_all, c, height, width = images.shape
    n_h, n_w = -(-(height - window) // stride) + 1, -(-(width - window) // stride) + 1
    wy, wx = np.repeat(np.arange(n_h), n_w) * stride, np.tile(np.arange(n_w), n_h) * stride
    box = Box(window, window, np.minimum(wy, height - window), np.minimum(wx, width - window))
    diffs, chosen = [], []
    start, group = 0, 1  # the first image alone, to learn what one image's activations take
    while start < b_all:
        part = slice(start, start + group)
        engine = Engine(model, images[part], *traced)
        initial = engine.clean[engine.output]  # the same operations as model(images)
        if not isinstance(initial, torch.Tensor) or initial.shape != (len(images[part]), initial.shape[-1]):
            raise decline(model, images.dtype, "the model's output is not [B, K]")
        # The trace runs float32 whatever the model's precision (bfloat16 would lose the digits of the
        # differences of nearly equal logits), so it is checked against a float32 forward pass.
        with full_precision(model):
            reproduced = start > 0 or torch.allclose(model(images[:1]), initial[:1], rtol=1e-4, atol=1e-5)
        if not reproduced:
            raise UnsupportedError("the traced model does not reproduce the model's float32 output")
        t = initial.argmax(dim=1) if targets is None else targets[part].to(images.device)
        ref = reference[part] if isinstance(reference, torch.Tensor) else reference
        diffs.append(_differences(engine, box, wy, wx, t, ref, rows))
        chosen.append(t)
        start += group
        group = max(1, CLEAN_BYTES // engine.bytes_per_image())
    diff = torch.cat(diffs).view(b_all, 1, n_h, n_w)  # row-major over positions
    if diff.dtype not in (torch.float32, torch.float64):
        diff = diff.float()
    total = spread(diff, window, stride)[:, :, :height, :width]
    counts = spread(torch.ones(1, 1, n_h, n_w, device=images.device), window, stride)[:, :, :height, :width]
    attr = total.float() / counts
    return attr.expand(b_all, c, height, width).contiguous(), torch.cat(chosen)


def _differences(
    engine: Engine,
    box: Box,
    wy: np.ndarray,
    wx: np.ndarray,
    targets: torch.Tensor,
    reference: float | torch.Tensor,
    rows: int | None,
) -> torch.Tensor:
    """Target logit of the clean image minus that with each window occluded, ``[B, windows]``.

    A row whose occluded input equals the clean input is not evaluated, and a row whose change dies out before
    the whole-tensor part of the network (:meth:`Engine.run`) is not read: their difference is exactly 0, as
    in Captum (whose perturbed passes then repeat the clean pass), not the rounding of the box computation.
    """
    images = engine.images
    b_all, window, n_windows = images.shape[0], box.h, len(box.y)
    plan = engine.plan(box)
    budget = chunk_elements(images.dtype, images.device)
    chunk = rows if rows is not None else max(1, budget // engine.row_size(plan))
    picked = tensor(engine.clean[engine.output]).gather(1, targets[:, None])[:, 0]
    diff = torch.zeros(b_all * n_windows, dtype=picked.dtype, device=images.device)
    ar = np.arange(window)
    for start in range(0, len(diff), chunk):
        r = np.arange(start, min(start + chunk, len(diff)))
        win, bi = r // b_all, r % b_all
        b = index(bi, images.device)
        clean = gather(engine.clean_nhwc(engine.input), bi, box.y[win], box.x[win], window, window)
        my = ar >= (wy[win] - box.y[win])[:, None]  # the window's rows inside its (possibly shifted) box
        mx = ar >= (wx[win] - box.x[win])[:, None]
        mask = torch.as_tensor(my[:, :, None] & mx[:, None, :], device=images.device)[:, None]
        ref = reference[b] if isinstance(reference, torch.Tensor) else reference
        first = torch.where(mask, ref, clean)
        changed = (first != clean).flatten(1).any(1).cpu().numpy()
        if not changed.any():
            continue
        if not changed.all():
            r, win, bi, first = r[changed], win[changed], bi[changed], first[torch.as_tensor(changed)]
            b = index(bi, images.device)
        out, moved = engine.run(plan, win, bi, first)
        scores = picked[b] - out.gather(1, targets[b][:, None])[:, 0]
        diff[index(r, images.device)] = torch.where(moved, scores, torch.zeros_like(scores))
    return diff.view(n_windows, b_all).T
